"""The send's database thread, and the writer that records outcomes as they arrive.

Every database call of a send runs in one thread beside the event loop (SQLite and psycopg
release the GIL while they work), in order. A call that fails with a database error is
retried (:data:`RETRY_DELAYS`, ~15 s in all: a restarted server, a lock held a while, a
failover) before the send gives up with :class:`DatabaseError`; every call has a deadline.

:class:`Recorder` is a group commit: outcomes are added as each message's reply arrives; the
writer commits whatever is pending as soon as the previous commit is done (and at most every
:data:`COMMIT_INTERVAL`), never waiting for a batch to fill. While one commit runs the next
outcomes gather, so a fast send writes big batches and a slow one writes each outcome at once.
After ``kill -9`` the messages sent but not recorded (sent twice on resume) are those of the
last commit or two: the messages in flight.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from sqlalchemy.exc import DBAPIError

from newsletter.delivery.sendlog import Outcome
from newsletter.errors import DatabaseError
from newsletter.storage.db import error_line

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_DELAYS = (0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0)  # then the send stops
CALL_DEADLINE = 120.0  # seconds one database call may take
# At most one commit per interval (like PostgreSQL's commit_delay): a commit costs ~0.4 ms of
# CPU however few rows it holds, so at 3,000 messages/s committing each reply's outcome alone
# cost ~10 % of the send's speed; 10 ms keeps the outcomes of a fast send in batches of ~30
# and adds at most 10 ms of messages to what a kill -9 can leave unrecorded.
COMMIT_INTERVAL = 0.010


class DatabaseThread:
    """One thread for every database call of a send, each retried on a database error."""

    def __init__(self) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sendlog")
        self.retries = 0  # calls repeated after an error, for the summary and tests

    async def call(self, what: str, fn: Callable[..., T], *args: Any, retry: bool = True) -> T:
        """``fn(*args)`` in the database thread; ``what`` names it in errors ("record outcomes")."""
        loop = asyncio.get_running_loop()
        delays = RETRY_DELAYS if retry else ()
        for attempt in range(len(delays) + 1):
            try:
                # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation
                # that comes as the call finishes, and a cancelled send must end.
                async with asyncio.timeout(CALL_DEADLINE):
                    return await loop.run_in_executor(self._executor, fn, *args)
            except (DBAPIError, TimeoutError) as exc:
                reason = (
                    f"no answer in {CALL_DEADLINE:g} s"
                    if isinstance(exc, TimeoutError)
                    else error_line(exc)
                )
                if attempt == len(delays):
                    raise DatabaseError(
                        f"cannot {what}: {reason} (tried {attempt + 1} times)"
                    ) from exc
                log.warning(
                    "database error while trying to %s: %s; retrying in %g s",
                    what,
                    reason,
                    delays[attempt],
                )
                self.retries += 1
                await asyncio.sleep(delays[attempt])
        raise AssertionError("unreachable")  # pragma: no cover

    def shutdown(self) -> None:
        # A call stuck past its deadline must not hold the process: do not wait for it.
        self._executor.shutdown(wait=False, cancel_futures=True)


class Recorder:
    """Outcomes waiting to be written, and the writer task (:meth:`run`) that commits them."""

    def __init__(
        self,
        database: DatabaseThread,
        write: Callable[[list[Outcome]], int],
        written: Callable[[], None],
    ) -> None:
        self._db, self._write, self._written = database, write, written
        self.pending: list[Outcome] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing = False
        self.bounced = 0  # subscribers the writes marked bounced
        self.commits = 0

    def add(self, outcome: Outcome) -> None:
        self.pending.append(outcome)
        self._idle.clear()
        self._wake.set()

    async def run(self) -> None:
        """Commit what is pending, again and again, until :meth:`close` (raises DatabaseError
        when a commit keeps failing: the send stops)."""
        loop = asyncio.get_running_loop()
        last = 0.0
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self.pending:
                if (wait := last + COMMIT_INTERVAL - loop.time()) > 0:
                    await asyncio.sleep(wait)  # at most one commit per interval
                last = loop.time()
                batch, self.pending = self.pending, []
                try:
                    self.bounced += await self._db.call("record outcomes", self._write, batch)
                except BaseException:
                    self.pending[:0] = batch  # still unwritten: the last flush may try again
                    raise
                self.commits += 1
                self._written()
            self._idle.set()
            if self._closing:
                return

    async def flushed(self) -> None:
        """Until everything added so far is committed."""
        await self._idle.wait()

    def close(self) -> None:
        """Let :meth:`run` end once what is pending is written."""
        self._closing = True
        self._wake.set()

    async def last_write(self, deadline: float) -> str:
        """After the writer stopped (failure or cancel): one last try at what is left; returns
        why it failed ("" when written or nothing was left)."""
        if not self.pending:
            return ""
        batch, self.pending = self.pending, []
        try:
            async with asyncio.timeout(deadline):
                self.bounced += await self._db.call(
                    "record outcomes", self._write, batch, retry=False
                )
        except (DatabaseError, TimeoutError) as exc:
            return f"{len(batch)} outcome(s) not recorded ({exc}): they stay 'sending' until the next run"
        self._written()
        return ""
