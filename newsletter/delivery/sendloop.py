"""The inner loop of a send: claim, personalise, sign, send, record.

The event loop only personalises messages and talks SMTP. The send log is read and written by
one database thread (claims and outcome batches run there in order, beside the event loop:
SQLite and psycopg release the GIL while they work); DKIM signatures are made by signing
processes (:mod:`newsletter.delivery.signing`), :data:`SIGN_CHUNK` messages per job. ``concurrency``
workers each take up to :data:`PIPELINE_DEPTH` queued messages at a time and send them back to
back on one connection (:meth:`Transport.send_many`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar

from newsletter.core.clock import now
from newsletter.core.models import Issue
from newsletter.core.states import SendState, SubscriberStatus
from newsletter.delivery import sendlog
from newsletter.delivery.dkim import DKIMSigner
from newsletter.delivery.message import Draft, MessageTemplate, Recipient
from newsletter.delivery.options import Limits, SendOptions, SendSummary
from newsletter.delivery.ratelimit import RateLimiter
from newsletter.delivery.signing import SigningProcesses
from newsletter.delivery.transports import Delivery, Transport
from newsletter.errors import HeaderError, MessageError, TransportError
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
    stop_requested: bool
    progress: Callable[[int, int], None]

    def variant(self, issue: Issue, interests: str) -> tuple[str, MessageTemplate | None]: ...

    @property
    def variant_count(self) -> int: ...


T = TypeVar("T")

SIGN_CHUNK = 16  # DKIM signatures per job given to a signing process
PIPELINE_DEPTH = 8  # messages a worker sends back to back on its connection (no rate limit)
RECHECK_AFTER = 1.0  # a claimed row waiting longer than this has its status read again
HEARTBEAT_SECONDS = 5.0  # how often a SQLite sender refreshes its lock (stale after 90 s)

# A message on its way to a worker: the claimed row, its variant, its draft, (with DKIM) the
# future of its chunk's signatures with its index in that chunk, and when it was claimed.
Job = tuple[sendlog.Claimed, str, Draft, "asyncio.Future[list[str]] | None", int, float]


class SendLoop:
    """One pass of :class:`~newsletter.delivery.Sender` over the queue of one issue."""

    def __init__(
        self,
        sender: Host,
        issue: Issue,
        options: SendOptions,
        summary: SendSummary,
        limiter: RateLimiter,
        total: int,
    ) -> None:
        self.sender, self.issue, self.options = sender, issue, options
        self.summary, self.limiter, self.total = summary, limiter, total
        self.limits = sender.limits
        self.batch = limiter.claim_size(self.limits.batch)
        self.queue: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=self.batch)
        self.outcomes: list[sendlog.Outcome] = []
        self.writes: list[asyncio.Future[int]] = []
        self.tries: dict[int, int] = {}
        self.pause: list[str] = []  # why the send pauses (first reason wins)
        self.errors_in_row = self.submitted = self.done = self.untried = 0
        self.flush_every = max(2 * self.limits.concurrency, 50)
        self.from_address = sender.from_address
        self.single = sender.db.backend != "postgresql"
        self.beat = time.monotonic()
        self.database = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sendlog")
        dkim = sender.dkim
        self.signing = SigningProcesses(dkim.key_pem()) if dkim is not None else None

    @property
    def halted(self) -> bool:
        return bool(self.pause) or self.sender.stop_requested

    # -- the send log (in the database thread) -------------------------------------------------
    def _write(self, batch: list[sendlog.Outcome]) -> int:
        with self.sender.db.connect() as conn, conn.begin():
            bounced = len(sendlog.record(conn, batch, self.limits.bounce_limit))
            if self.single and time.monotonic() - self.beat > HEARTBEAT_SECONDS:
                locks.heartbeat(conn, f"send:{self.options.issue}", self.sender.owner)
                self.beat = time.monotonic()
        return bounced

    def _claim(self, want: int) -> list[sendlog.Claimed]:
        with self.sender.db.connect() as conn, conn.begin():
            return sendlog.claim(conn, self.options.issue, self.sender.owner, want)

    def _next_retry(self) -> datetime | None:
        with self.sender.db.connect() as conn:
            return sendlog.next_retry(conn, self.options.issue)

    async def _in_database(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self.database, fn, *args)

    def flush(self) -> None:
        if self.outcomes:
            future = asyncio.get_running_loop().run_in_executor(
                self.database, self._write, self.outcomes[:]
            )
            self.writes.append(future)
            self.outcomes.clear()
        s = self.summary
        self.sender.progress(s.sent + s.failed + s.deferred + s.skipped, self.total)

    async def settle_writes(self, wait: bool) -> None:
        """Count bounces of finished writes; a failed write stops the send (it raises)."""
        while self.writes and (wait or self.writes[0].done()):
            self.summary.bounced += await self.writes.pop(0)

    # -- outcomes ------------------------------------------------------------------------------
    def settle(self, row: sendlog.Claimed, vid: str, delivery: Delivery) -> None:
        retry_at = None
        summary = self.summary
        if delivery.state == SendState.DEFERRED:
            n = self.tries[row.id] = self.tries.get(row.id, 0) + 1
            if n < self.limits.retries and not self.halted:
                retry_at = now() + timedelta(seconds=self.limits.backoff * 2 ** (n - 1))
            else:
                summary.deferred += 1  # left for the next run
        elif delivery.state == SendState.SENT:
            summary.sent += 1
        else:
            summary.failed += 1
        self.outcomes.append(
            sendlog.Outcome(
                row.id,
                row.subscriber_id,
                delivery.state,
                delivery.code,
                delivery.reply,
                vid,
                retry_at,
            )
        )

    def give_back(self, row: sendlog.Claimed) -> None:
        self.outcomes.append(
            sendlog.Outcome(row.id, row.subscriber_id, SendState.QUEUED, None, "", tried=False)
        )

    def _not_sent(self, row: sendlog.Claimed, state: str, reason: str) -> None:
        tried = state == SendState.FAILED
        self.outcomes.append(
            sendlog.Outcome(row.id, row.subscriber_id, state, None, reason, tried=tried)
        )
        if tried:
            self.summary.failed += 1
        else:
            self.summary.skipped += 1

    # -- personalising -------------------------------------------------------------------------
    def prepare(self, row: sendlog.Claimed) -> tuple[str, Draft] | None:
        if row.status != SubscriberStatus.ACTIVE:
            self._not_sent(row, SendState.SKIPPED, f"subscriber is {row.status}")
            return None
        vid, template = self.sender.variant(self.issue, row.interests)
        if template is None:
            self._not_sent(row, SendState.SKIPPED, "nothing in this issue matches their interests")
            return None
        try:
            return vid, template.draft(Recipient(row.subscriber_id, row.email, row.name), now())
        except (HeaderError, MessageError, ValueError) as exc:
            self._not_sent(row, SendState.FAILED, f"cannot build the message: {exc}")
            return None

    def jobs(self, rows: list[sendlog.Claimed]) -> list[Job]:
        """Drafts for the claimed rows, their signatures started in chunks."""
        ready: list[tuple[sendlog.Claimed, str, Draft]] = []
        for row in rows:
            if self.halted:
                self.give_back(row)
            elif (prepared := self.prepare(row)) is not None:
                ready.append((row, *prepared))
        claimed = time.monotonic()
        if self.signing is None:
            return [(row, vid, draft, None, 0, claimed) for row, vid, draft in ready]
        out: list[Job] = []
        for first in range(0, len(ready), SIGN_CHUNK):
            chunk = ready[first : first + SIGN_CHUNK]
            signatures = self.signing.submit([draft.to_sign for _, _, draft in chunk])
            out += [
                (row, vid, draft, signatures, i, claimed)
                for i, (row, vid, draft) in enumerate(chunk)
            ]
        return out

    # -- sending -------------------------------------------------------------------------------
    async def worker(self) -> None:
        depth = 1 if self.limiter.active else PIPELINE_DEPTH
        last = False
        while not last and (job := await self.queue.get()) is not None:
            batch = [job]
            while len(batch) < depth and not self.queue.empty():
                more = self.queue.get_nowait()
                if more is None:
                    last = True
                    break
                batch.append(more)
            try:
                await self.send(batch)
            finally:
                self.done += len(batch)

    async def send(self, batch: list[Job]) -> None:
        if self.halted:
            for job in batch:
                self.give_back(job[0])
            return
        if self.limiter.active:
            await self.limiter.wait()
        if time.monotonic() - batch[0][5] > RECHECK_AFTER:  # the status read at the claim is old
            batch = await self._still_active(batch)
            if not batch:
                return
        items = [
            (row.email, draft.finish((await signatures)[i] if signatures else None))
            for row, _, draft, signatures, i, _ in batch
        ]
        transport = self.sender.transport
        try:
            deliveries = await transport.send_many(self.from_address, items)
        except TransportError as exc:
            self.pause.append(str(exc))
            for job in batch:
                self.give_back(job[0])
            return
        for (row, vid, *_), delivery in zip(batch, deliveries, strict=True):
            if not delivery.tried:  # its connection went down before its turn
                self.give_back(row)
                self.untried += 1
                continue
            if not delivery.connection_error:
                self.errors_in_row = 0
            else:
                self.errors_in_row += 1
                if self.errors_in_row >= self.limits.pause_after_errors and not self.pause:
                    self.pause.append(
                        f"{self.errors_in_row} connection failures in a row at "
                        f"{transport.name} (last: {delivery.reply})"
                    )
            self.settle(row, vid, delivery)
        if len(self.outcomes) >= self.flush_every:
            self.flush()

    async def _still_active(self, batch: list[Job]) -> list[Job]:
        """Drop whoever stopped being active since their row was claimed (a rate limit or a
        slow server can keep a claimed row waiting for a while)."""
        ids = [job[0].subscriber_id for job in batch]
        statuses = await self._in_database(self._statuses, ids)
        keep = []
        for job in batch:
            status = statuses.get(job[0].subscriber_id, "deleted")
            if status == SubscriberStatus.ACTIVE:
                keep.append(job)
            else:
                self._not_sent(job[0], SendState.SKIPPED, f"subscriber is {status}")
        return keep

    def _statuses(self, ids: list[int]) -> dict[int, str]:
        with self.sender.db.connect() as conn:
            return sendlog.statuses(conn, ids)

    async def drain(self) -> None:
        while self.done < self.submitted:
            await asyncio.sleep(0.005)
        self.flush()
        await self.settle_writes(wait=True)

    # -- the loop ------------------------------------------------------------------------------
    async def run(self) -> None:
        """Raises TransportError when the send pauses (the rest stays queued)."""
        limit, batch = self.options.limit, self.batch
        await self.sender.transport.open()
        if self.signing is not None:
            await self.signing.start()
        workers = [asyncio.create_task(self.worker()) for _ in range(self.limits.concurrency)]
        try:
            while not self.halted:
                room = None if limit is None else limit - self.submitted
                if room is not None and room <= 0:
                    break
                await self.settle_writes(wait=False)
                rows = await self._in_database(self._claim, min(batch, room or batch))
                if not rows:
                    await self.drain()
                    if self.untried:  # given back after a lost connection: claim them again
                        self.untried = 0
                        continue
                    wake = await self._in_database(self._next_retry)
                    if wake is None or self.halted:
                        break
                    await asyncio.sleep(max(0.0, min(1.0, (wake - now()).total_seconds())))
                    continue
                for job in self.jobs(rows):
                    self.submitted += 1
                    await self.queue.put(job)
                self.summary.variants = self.sender.variant_count
        finally:
            await self._finish(workers)
        if self.pause:
            raise TransportError(
                self.pause[0] + "; the rest stays queued: run the same command to resume"
            )

    async def _finish(self, workers: list[asyncio.Task[None]]) -> None:
        for _ in workers:
            await self.queue.put(None)
        await asyncio.gather(*workers)
        self.flush()
        try:
            await self.settle_writes(wait=True)
        finally:
            await self.sender.transport.close()
            if self.signing is not None:
                await self.signing.close()
            self.database.shutdown(wait=True)
            self.summary.stopped = self.sender.stop_requested
