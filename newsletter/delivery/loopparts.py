"""What the send loop works with: the :class:`Host` it runs for, the :class:`Job` each
message is while it waits for a worker, and its :class:`Queries` (run in the database thread)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple, Protocol

from newsletter.core.models import Issue
from newsletter.delivery import sendlog
from newsletter.delivery.dkim import DKIMSigner
from newsletter.delivery.message import Draft, MessageTemplate
from newsletter.delivery.options import Limits, SendSummary
from newsletter.delivery.recorder import DatabaseThread
from newsletter.delivery.transports import Transport
from newsletter.storage import locks
from newsletter.storage.db import Database


class Host(Protocol):
    """What the loop needs of the send it runs for (:class:`~newsletter.delivery.sender.Sender`
    provides it): its parts, its limits, and the variant of an interest set."""

    db: Database
    transport: Transport
    dkim: DKIMSigner | None
    limits: Limits
    owner: str
    from_address: str
    stop_requests: int
    progress: Callable[[int, int], None]

    def variant(self, issue: Issue, interests: str) -> tuple[str, MessageTemplate | None]: ...

    @property
    def variant_count(self) -> int: ...


class Job(NamedTuple):
    """A message on its way to a worker."""

    row: sendlog.Claimed
    variant: str
    draft: Draft
    signatures: asyncio.Future[list[str]] | None  # with DKIM: its chunk's signatures
    slot: int  # its place in that chunk
    claimed: float  # monotonic time of the claim


class Queries:
    """The send loop's database work, each call one transaction (in the database thread)."""

    def __init__(self, db: Database, issue: str, owner: str, bounce_limit: int) -> None:
        self.db, self.issue, self.owner, self.bounce_limit = db, issue, owner, bounce_limit

    def write(self, batch: list[sendlog.Outcome]) -> int:
        """Record outcomes; how many subscribers became bounced."""
        with self.db.connect() as conn, conn.begin():
            return len(sendlog.record(conn, batch, self.bounce_limit))

    def claim(self, want: int) -> list[sendlog.Claimed]:
        with self.db.connect() as conn, conn.begin():
            return sendlog.claim(conn, self.issue, self.owner, want)

    def next_retry(self) -> datetime | None:
        with self.db.connect() as conn:
            return sendlog.next_retry(conn, self.issue)

    def statuses(self, ids: list[int]) -> dict[int, str]:
        with self.db.connect() as conn:
            return sendlog.statuses(conn, ids)

    def beat(self) -> bool:
        """Refresh the send's lock (SQLite: one sender); False when it is not ours any more."""
        with self.db.connect() as conn, conn.begin():
            return locks.heartbeat(conn, f"send:{self.issue}", self.owner)


class Rest(NamedTuple):
    """The part of the list not queued before the send began: ``more(after)`` queues the next
    chunk above subscriber id ``after`` and returns (how many, the next ``after`` or None)."""

    more: Callable[[int], tuple[int, int | None]]
    after: int


class Backfill:
    """The rest of the list, queued beside the send (a send queues its first subscribers, then
    starts), chunk by chunk so that the send's own database calls go between them."""

    def __init__(
        self, rest: Rest | None, summary: SendSummary, shared: DatabaseThread | None = None
    ) -> None:
        """``shared``: the send's own database thread (SQLite, one writer at a time), else a
        thread of its own (PostgreSQL: claims and writes never wait for it)."""
        self._rest, self._summary, self._shared = rest, summary, shared
        self.added = 0  # rows the rest queued (the send's total grows by as many)
        self._done = asyncio.Event()
        self._db: DatabaseThread | None = None
        self._fresh = False  # rows queued that no claim has looked for yet
        if rest is None:
            self._done.set()

    async def run(self) -> None:
        """Queue the rest (a database error that outlasts the retries stops the send)."""
        if self._rest is None:
            return
        db = self._shared or DatabaseThread()
        self._db = None if self._shared else db
        after: int | None = self._rest.after
        while after is not None:
            added, after = await db.call("queue the rest of the list", self._rest.more, after)
            self.added += added
            self._summary.queued_now += added
            self._fresh = self._fresh or added > 0
        self._done.set()

    async def finished(self) -> bool:
        """Once the rest is queued: True the first time after it queued anyone."""
        await self._done.wait()
        fresh, self._fresh = self._fresh, False
        return fresh

    def shutdown(self) -> None:
        if self._db is not None:
            self._db.shutdown()
