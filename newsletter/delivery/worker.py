"""``newsletter worker``: a sender that serves every running send (PostgreSQL).

Start it on as many machines as you like; whenever a send has work left (rows queued, or
deferred and due), each worker joins it as one more sender, with the list the send was started
for, until it is done; then it waits for the next. Stopping (SIGTERM) lets the messages in
flight finish and leaves the rest queued for the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from sqlalchemy import and_, or_, select
from sqlalchemy.engine import Connection

from newsletter.core.clock import now
from newsletter.core.states import SendState
from newsletter.delivery.options import SendOptions, SendSummary
from newsletter.delivery.sender import Sender
from newsletter.storage.db import Database, send_log, send_runs

log = logging.getLogger(__name__)


def open_sends(conn: Connection) -> list[tuple[str, str]]:
    """(issue, list) of every send with work left, oldest issue first."""
    due = or_(
        send_log.c.state == SendState.QUEUED,
        and_(send_log.c.state == SendState.DEFERRED, send_log.c.next_attempt_at <= now()),
    )
    issues = [str(i) for (i,) in conn.execute(select(send_log.c.issue).where(due).distinct())]
    out = []
    for issue in sorted(issues):
        list_name = conn.execute(
            select(send_runs.c.list_name)
            .where(send_runs.c.issue == issue)
            .order_by(send_runs.c.id.desc())
            .limit(1)
        ).scalar()
        if list_name:
            out.append((issue, str(list_name)))
    return out


class Worker:
    def __init__(self, db: Database, make_sender: Callable[[], Sender], poll: float = 2.0) -> None:
        self.db, self.make_sender, self.poll = db, make_sender, poll
        self.stopping = asyncio.Event()
        self.current: Sender | None = None
        self.served: list[SendSummary] = []

    def stop(self) -> None:
        """SIGTERM: stop the send being served (messages in flight finish), then leave."""
        self.stopping.set()
        if self.current is not None:
            self.current.request_stop()

    def _open(self) -> list[tuple[str, str]]:
        with self.db.connect() as conn:
            return open_sends(conn)

    async def run(self) -> list[SendSummary]:
        while not self.stopping.is_set():
            for issue, list_name in await asyncio.to_thread(self._open):
                if self.stopping.is_set():
                    break
                self.current = self.make_sender()
                summary = await self.current.run(SendOptions(issue, list_name, origin="worker"))
                self.current = None
                self.served.append(summary)
                log.info(
                    "worker: %s to %s: %d sent, %d deferred, %d failed",
                    issue,
                    list_name,
                    summary.sent,
                    summary.deferred,
                    summary.failed,
                )
            try:
                async with asyncio.timeout(self.poll):
                    await self.stopping.wait()
            except TimeoutError:
                continue
        return self.served
