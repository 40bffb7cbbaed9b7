"""Several senders sharing one send (PostgreSQL): who is running, and their claims.

Each sender has a row in ``senders`` that it beats every second with what it has sent. Rows of
the send log claimed by a sender whose beat is older than ``smtp.sender_timeout`` go back to the
queue at once, to be sent by the others; a sender that finishes removes its row. The send
log's 10-minute lease remains only for claims of a sender with no row at all.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError

from newsletter.core.clock import now
from newsletter.core.states import SendState
from newsletter.storage.db import Database, error_line, send_log, senders

log = logging.getLogger(__name__)


def register(conn: Connection, owner: str, issue: str) -> None:
    stamp = now()
    conn.execute(delete(senders).where(senders.c.owner == owner))
    conn.execute(
        insert(senders).values(
            owner=owner,
            issue=issue,
            host=socket.gethostname()[:255],
            pid=os.getpid(),
            started_at=stamp,
            beat_at=stamp,
            sent=0,
            rate=0.0,
        )
    )


def beat(conn: Connection, owner: str, sent: int, rate: float) -> bool:
    """Refresh this sender's row; False when it was gone (taken for dead by the others)."""
    changed = conn.execute(
        update(senders).where(senders.c.owner == owner).values(beat_at=now(), sent=sent, rate=rate)
    ).rowcount
    return bool(changed)


def unregister(conn: Connection, owner: str) -> int:
    """This sender is done: rows it still holds (cut off by a stop) go back to the queue at
    once, rather than after the 10-minute lease, and its row goes; returns how many went back.
    A database that refuses the update (the reason the send stopped, maybe) leaves them to the
    lease, with a warning: it never keeps the sender's end from being recorded."""
    moved = 0
    try:
        with conn.begin_nested():
            moved = conn.execute(
                update(send_log)
                .where(send_log.c.claimed_by == owner, send_log.c.state == SendState.SENDING)
                .values(state=SendState.QUEUED, claimed_by=None, claimed_at=None, updated_at=now())
            ).rowcount
    except SQLAlchemyError as exc:
        log.warning("the rows this sender held stay claimed: %s", error_line(exc))
    conn.execute(delete(senders).where(senders.c.owner == owner))
    return int(moved or 0)


def requeue_dead(conn: Connection, issue: str, timeout: float) -> int:
    """Put back the rows of this issue claimed by senders whose beat is older than ``timeout``
    seconds (and drop those senders' rows); returns how many rows went back."""
    stamp = now()
    dead = select(senders.c.owner).where(
        senders.c.issue == issue, senders.c.beat_at < stamp - timedelta(seconds=timeout)
    )
    owners = [str(o) for (o,) in conn.execute(dead)]
    if not owners:
        return 0
    moved = conn.execute(
        update(send_log)
        .where(
            send_log.c.issue == issue,
            send_log.c.state == SendState.SENDING,
            send_log.c.claimed_by.in_(owners),
        )
        .values(state=SendState.QUEUED, claimed_by=None, claimed_at=None, updated_at=stamp)
    ).rowcount
    conn.execute(delete(senders).where(senders.c.owner.in_(owners)))
    return int(moved or 0)


def others_sending(conn: Connection, issue: str, owner: str) -> int:
    """Rows of this issue in flight with other live senders (this one waits for them: if one
    dies, its rows come back to the queue for the survivors)."""
    live = select(senders.c.owner).where(senders.c.issue == issue)
    return int(
        conn.execute(
            select(func.count())
            .select_from(send_log)
            .where(
                send_log.c.issue == issue,
                send_log.c.state == SendState.SENDING,
                or_(send_log.c.claimed_by.is_(None), send_log.c.claimed_by != owner),
                send_log.c.claimed_by.in_(live),
            )
        ).scalar_one()
    )


def running(conn: Connection, issue: str) -> list[dict[str, Any]]:
    """The senders of an issue, for ``newsletter status``."""
    stamp = now()
    rows = conn.execute(
        select(senders).where(senders.c.issue == issue).order_by(senders.c.started_at)
    )
    return [
        {
            "host": r.host,
            "pid": r.pid,
            "owner": r.owner,
            "heartbeat_seconds_ago": round((stamp - r.beat_at).total_seconds(), 1),
            "sent": r.sent,
            "messages_per_second": round(r.rate, 1),
        }
        for r in rows
    ]


class Crew:
    """This sender among the others of one send (PostgreSQL): its heartbeat, which also puts
    back the claims of senders that stopped beating, and whether others still have rows."""

    def __init__(self, db: Database, owner: str, issue: str, timeout: float) -> None:
        self.db, self.owner, self.issue, self.timeout = db, owner, issue, timeout
        self.every = max(0.2, min(1.0, timeout / 4))  # seconds between beats
        self._last = (time.monotonic(), 0)

    def _beat(self, sent: int) -> tuple[bool, int]:
        moment = time.monotonic()
        then, before = self._last
        rate = (sent - before) / max(moment - then, 1e-3)
        self._last = (moment, sent)
        with self.db.connect() as conn, conn.begin():
            alive = beat(conn, self.owner, sent, rate)
            moved = requeue_dead(conn, self.issue, self.timeout)
        return alive, moved

    async def beat(self, sent: int) -> bool:
        alive, moved = await asyncio.to_thread(self._beat, sent)
        if moved:
            log.warning(
                "%d message(s) of a sender that stopped beating went back to the queue", moved
            )
        return alive

    def _busy(self) -> int:
        with self.db.connect() as conn:
            return others_sending(conn, self.issue, self.owner)

    async def others_busy(self) -> bool:
        return bool(await asyncio.to_thread(self._busy))
