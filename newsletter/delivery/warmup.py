"""A warm-up cap for a new sending domain or IP: at most ``start`` messages on the first day,
``factor`` times more each day after, for every sender together (a bucket row per day in
``rate_buckets``, taken from atomically). When today's cap is used up the send pauses (exit 6):
the rest stays queued for tomorrow's run."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from newsletter.core.states import SendState
from newsletter.storage.db import Database, rate_buckets, send_log

MAX_CAP = 1_000_000_000


@dataclass(frozen=True)
class Warmup:
    start: int  # messages on the first day
    factor: float  # growth a day
    since: date  # the first day

    def cap(self, day: date) -> int:
        days = max(0, (day - self.since).days)
        return int(min(MAX_CAP, self.start * self.factor**days))


def today() -> date:
    return datetime.now(UTC).date()


def sent_on(conn: Connection, day: date) -> int:
    """Messages sent (any issue, any sender) on ``day`` (UTC)."""
    begin = datetime.combine(day, time(0), tzinfo=UTC)
    return int(
        conn.execute(
            select(func.count())
            .select_from(send_log)
            .where(
                send_log.c.state == SendState.SENT,
                send_log.c.sent_at >= begin,
                send_log.c.sent_at < begin + timedelta(days=1),
            )
        ).scalar_one()
    )


def _row(conn: Connection, warmup: Warmup, day: date) -> Any:
    """Today's bucket, locked; its ``stamp`` holds the cap it was filled for, so that a change
    of the settings during the day moves what is left by the difference."""
    name = f"warmup:{day.isoformat()}"
    cap = warmup.cap(day)
    query = select(rate_buckets).where(rate_buckets.c.name == name).with_for_update()
    row = conn.execute(query).first()
    if row is None:
        left = max(0, cap - sent_on(conn, day))
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(rate_buckets).values(
                        name=name, tokens=float(left), stamp=float(cap), factor=1.0, slowed_at=0.0
                    )
                )
        except IntegrityError:
            pass
        row = conn.execute(query).one()
    if row.stamp != cap:
        conn.execute(
            update(rate_buckets)
            .where(rate_buckets.c.name == name)
            .values(tokens=max(0.0, row.tokens + cap - row.stamp), stamp=float(cap))
        )
        row = conn.execute(query).one()
    return row


def take(conn: Connection, warmup: Warmup, want: int, day: date) -> int:
    """Up to ``want`` messages of today's cap, taken for this sender."""
    row = _row(conn, warmup, day)
    taken = max(0, min(want, int(row.tokens)))
    conn.execute(
        update(rate_buckets)
        .where(rate_buckets.c.name == row.name)
        .values(tokens=row.tokens - taken)
    )
    return taken


def give_back(conn: Connection, warmup: Warmup, count: int, day: date) -> None:
    """Return tokens taken but not used (fewer rows to claim than were allowed)."""
    row = _row(conn, warmup, day)
    conn.execute(
        update(rate_buckets)
        .where(rate_buckets.c.name == row.name)
        .values(tokens=row.tokens + count)
    )


def status(conn: Connection, warmup: Warmup, day: date) -> dict[str, int]:
    cap = warmup.cap(day)
    sent = sent_on(conn, day)
    return {"cap": cap, "sent_today": sent, "left": max(0, cap - sent)}


class Gate:
    """How many rows a sender may claim now under the warm-up cap (any number without one)."""

    def __init__(self, db: Database, warmup: Warmup | None) -> None:
        self.db, self.warmup = db, warmup

    def _take(self, want: int) -> int:
        assert self.warmup is not None
        with self.db.connect() as conn, conn.begin():
            return take(conn, self.warmup, want, today())

    def _give(self, count: int) -> None:
        assert self.warmup is not None
        with self.db.connect() as conn, conn.begin():
            give_back(conn, self.warmup, count, today())

    async def allow(self, want: int) -> int:
        return want if self.warmup is None else await asyncio.to_thread(self._take, want)

    async def unused(self, count: int) -> None:
        if self.warmup is not None and count > 0:
            await asyncio.to_thread(self._give, count)

    def reached(self) -> str:
        cap = self.warmup.cap(today()) if self.warmup else 0
        return f"today's warm-up cap of {cap} messages is reached (smtp.warmup_*): run send again tomorrow"
