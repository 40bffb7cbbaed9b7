"""The inner loop of a send: claim, personalise, sign, send, record, all supervised.

The event loop personalises messages and talks SMTP. Database calls run in one thread beside it
(:mod:`newsletter.delivery.recorder`: retried on errors, outcomes committed as they arrive);
DKIM signatures are made by signing processes (:mod:`newsletter.delivery.signing`, replaced when
one dies), :data:`SIGN_CHUNK` messages per job. ``concurrency`` workers each take up to
:data:`PIPELINE_DEPTH` queued messages at a time and send them back to back on one connection.

Supervision: the feeder (claims), the workers, the writer and a watchdog run in one
``asyncio.TaskGroup``. Whatever goes wrong with one message (building it, its address, an
unexpected error while sending it) fails that recipient alone, with the reason in the log. Any
other failure (the database gone for good, signing impossible, the send lock lost, a bug)
cancels the rest at once; the loop then gives unsent rows back to the queue, records what it
can, and the send ends "paused" with one line saying why. The watchdog also enforces the stop
grace: after a stop request, messages in flight get ``stop_grace`` seconds; a second request or
the end of the grace cuts the send short. Nothing waits without a deadline.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from datetime import timedelta

from newsletter.core.clock import now
from newsletter.core.models import Issue
from newsletter.core.states import SendState, SubscriberStatus
from newsletter.delivery import senders, sendlog, supervise, warmup
from newsletter.delivery.loopparts import Backfill, Host, Job, Queries, Rest
from newsletter.delivery.message import Draft, Recipient
from newsletter.delivery.options import SendOptions, SendSummary
from newsletter.delivery.ratelimit import RateLimiter
from newsletter.delivery.recorder import DatabaseThread, Recorder
from newsletter.delivery.sharedrate import SharedRateLimiter
from newsletter.delivery.signing import SigningProcesses
from newsletter.delivery.transports import Delivery
from newsletter.errors import TransportError

log = logging.getLogger(__name__)

SIGN_CHUNK = 16  # DKIM signatures per job given to a signing process
THROTTLED = re.compile(r"throttl|rate limit|too many (?:messages|connections)|slow down", re.I)
PIPELINE_DEPTH = 8  # messages a worker sends back to back on its connection (no rate limit)
RECHECK_AFTER = 1.0  # a claimed row waiting longer than this has its status read again
LAST_WRITE_DEADLINE = 15.0  # seconds for the final write after the send stopped


class SendLoop:
    """One pass of :class:`~newsletter.delivery.Sender` over the queue of one issue."""

    def __init__(
        self,
        sender: Host,
        issue: Issue,
        options: SendOptions,
        summary: SendSummary,
        limiter: RateLimiter | SharedRateLimiter,
        total: int,
        rest: Rest | None = None,
    ) -> None:
        self.sender, self.issue, self.options = sender, issue, options
        self.summary, self.limiter, self.total = summary, limiter, total
        self.limits = sender.limits
        self.batch = limiter.claim_size(self.limits.batch)
        self.queue: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=self.batch)
        self.single = sender.db.backend != "postgresql"
        self.db = DatabaseThread()
        self.queries = Queries(sender.db, options.issue, sender.owner, self.limits.bounce_limit)
        self.recorder = Recorder(self.db, self.queries.write, self._report_progress)
        self.tries: dict[int, int] = {}
        self.refusals = supervise.RefusalGuard(self.limits.pause_ratio, self.limits.pause_window)
        self.pause: list[str] = []  # why the send pauses (first reason wins)
        self.errors_in_row = self.submitted = self.untried = 0
        self.from_address = sender.from_address
        crew = senders.Crew(sender.db, sender.owner, options.issue, self.limits.sender_timeout)
        self.crew = None if self.single else crew
        self.throttled = False  # a throttling reply came: the rate slows for every sender
        self.gate = warmup.Gate(sender.db, self.limits.warmup)
        self.signing = SigningProcesses(sender.dkim.key_pem()) if sender.dkim else None
        self.rest = Backfill(rest, summary, self.db if self.single else None)

    @property
    def halted(self) -> bool:
        return bool(self.pause) or self.sender.stop_requests > 0

    def _report_progress(self) -> None:
        self.sender.progress(self.summary.done, self.total + self.rest.added)

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
                summary.reasons[delivery.reply[:120]] += 1
        elif delivery.state == SendState.SENT:
            summary.sent += 1
        else:
            summary.failed += 1
            summary.reasons[delivery.reply[:120]] += 1
        if delivery.state in (SendState.SENT, SendState.FAILED):
            refused = delivery.state == SendState.FAILED and (delivery.code or 0) >= 500
            if (alarm := self.refusals.add(refused)) and not self.pause:
                self.pause.append(f"{alarm}: see 'newsletter status {self.options.issue}'")
        outcome = (row.id, row.subscriber_id, delivery.state, delivery.code, delivery.reply)
        self.recorder.add(sendlog.Outcome(*outcome, vid, retry_at, relay=delivery.relay))

    def give_back(self, row: sendlog.Claimed) -> None:
        self.recorder.add(
            sendlog.Outcome(row.id, row.subscriber_id, SendState.QUEUED, None, "", tried=False)
        )

    def _not_sent(self, row: sendlog.Claimed, state: str, reason: str) -> None:
        tried = state == SendState.FAILED
        self.recorder.add(
            sendlog.Outcome(row.id, row.subscriber_id, state, None, reason[:500], tried=tried)
        )
        if tried:
            self.summary.failed += 1
            self.summary.reasons[reason[:120]] += 1
        else:
            self.summary.skipped += 1
            self.summary.no_match += reason.startswith("nothing in this issue")

    # -- personalising -------------------------------------------------------------------------
    def prepare(self, row: sendlog.Claimed) -> tuple[str, Draft] | None:
        """The variant and draft of one row; anything wrong with this one fails it alone."""
        if row.status != SubscriberStatus.ACTIVE:
            self._not_sent(row, SendState.SKIPPED, f"subscriber is {row.status}")
            return None
        vid, template = self.sender.variant(self.issue, row.interests)
        if template is None:
            self._not_sent(row, SendState.SKIPPED, "nothing in this issue matches their interests")
            return None
        try:
            return vid, template.draft(Recipient(row.subscriber_id, row.email, row.name), now())
        except Exception as exc:  # this subscriber's data, whatever it is: they fail alone
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
            return [Job(row, vid, draft, None, 0, claimed) for row, vid, draft in ready]
        out: list[Job] = []
        for first in range(0, len(ready), SIGN_CHUNK):
            chunk = ready[first : first + SIGN_CHUNK]
            signatures = self.signing.submit([draft.to_sign for _, _, draft in chunk])
            out += [
                Job(row, vid, draft, signatures, i, claimed)
                for i, (row, vid, draft) in enumerate(chunk)
            ]
        return out

    # -- sending -------------------------------------------------------------------------------
    async def worker(self) -> None:
        depth = 1 if self.limiter.active else PIPELINE_DEPTH
        while (job := await self.queue.get()) is not None:
            batch, last = [job], False
            while len(batch) < depth and not self.queue.empty():
                more = self.queue.get_nowait()
                if more is None:
                    last = True
                    break
                batch.append(more)
            try:
                await self.send(batch)
            finally:
                for _ in range(len(batch) + last):
                    self.queue.task_done()
            if last:
                return
        self.queue.task_done()

    async def send(self, batch: list[Job]) -> None:
        if self.halted:
            for job in batch:
                self.give_back(job.row)
            return
        if self.limiter.active:
            await self.limiter.wait()
        if time.monotonic() - batch[0].claimed > RECHECK_AFTER:  # the status read is old
            batch = await self._still_active(batch)
            if not batch:
                return
        items = []
        for job in batch:  # a SigningError here stops the send: nothing can be signed
            signature = (await job.signatures)[job.slot] if job.signatures else None
            envelope = job.draft.envelope_from or self.from_address
            items.append((job.row.email, job.draft.finish(signature), envelope))
        done: set[int] = set()

        def notify(i: int, delivery: Delivery) -> None:
            done.add(i)
            self._delivered(batch[i], delivery)

        transport = self.sender.transport
        try:
            await transport.send_many(self.from_address, items, notify)
            if self.throttled:
                self.throttled = False
                await self.limiter.slow_down()
        except TransportError as exc:
            self.pause.append(str(exc))
            for i, job in enumerate(batch):
                if i not in done:
                    self.give_back(job.row)
        except Exception as exc:  # a fault in the transport: the message at hand fails alone
            self._unexpected(batch, done, exc)

    def _unexpected(self, batch: list[Job], done: set[int], exc: Exception) -> None:
        """The first message without an outcome fails with the error; the rest were not sent:
        back to the queue (claimed again in this run)."""
        reason = f"unexpected error while sending: {type(exc).__name__}: {exc}"
        log.debug("unexpected error while sending", exc_info=exc)
        rest = [job for i, job in enumerate(batch) if i not in done]
        if rest:
            self._not_sent(rest[0].row, SendState.FAILED, reason)
        for job in rest[1:]:
            self.give_back(job.row)
            self.untried += 1
        self.errors_in_row += 1
        if self.errors_in_row >= self.limits.pause_after_errors and not self.pause:
            self.pause.append(f"{self.errors_in_row} errors in a row (last: {reason})")

    def _delivered(self, job: Job, delivery: Delivery) -> None:
        if not delivery.tried:  # its connection went down before its turn
            self.give_back(job.row)
            self.untried += 1
            return
        if delivery.state == SendState.DEFERRED and THROTTLED.search(delivery.reply or ""):
            self.throttled = True
        if not delivery.connection_error:
            self.errors_in_row = 0
        else:
            self.errors_in_row += 1
            if self.errors_in_row >= self.limits.pause_after_errors and not self.pause:
                self.pause.append(
                    f"{self.errors_in_row} connection failures in a row at "
                    f"{self.sender.transport.name} (last: {delivery.reply})"
                )
        self.settle(job.row, job.variant, delivery)

    async def _still_active(self, batch: list[Job]) -> list[Job]:
        """Drop whoever stopped being active since their row was claimed (a rate limit or a
        slow server can keep a claimed row waiting for a while)."""
        ids = [job.row.subscriber_id for job in batch]
        statuses = await self.db.call("read subscriber statuses", self.queries.statuses, ids)
        keep = []
        for job in batch:
            status = statuses.get(job.row.subscriber_id, "deleted")
            if status == SubscriberStatus.ACTIVE:
                keep.append(job)
            else:
                self._not_sent(job.row, SendState.SKIPPED, f"subscriber is {status}")
        return keep

    # -- the loop ------------------------------------------------------------------------------
    async def _next_rows(self) -> list[sendlog.Claimed] | None:
        """The next claim (None: the limit or today's warm-up cap is reached)."""
        limit, batch = self.options.limit, self.batch
        room = None if limit is None else limit - self.submitted
        if room is not None and room <= 0:
            return None
        want = await self.gate.allow(min(batch, room or batch))
        if not want:
            self.pause.append(self.gate.reached())
            return None
        rows = await self.db.call("claim messages", self.queries.claim, want)
        await self.gate.unused(want - len(rows))
        return rows

    async def feed(self) -> None:
        """Claim rows and queue their messages until nothing is left or due; the next claim
        runs while one's messages are queued (no limit): workers never wait for the database."""
        ahead: asyncio.Task[list[sendlog.Claimed] | None] | None = None
        try:
            while not self.halted:
                rows = await (ahead or self._next_rows())
                ahead = None
                if rows is None:
                    break
                if not rows:
                    if await self._drained():
                        break
                    continue
                if len(rows) == self.batch and self.options.limit is None:
                    ahead = asyncio.ensure_future(self._next_rows())
                for job in self.jobs(rows):
                    self.submitted += 1
                    await self.queue.put(job)
                self.summary.variants = self.sender.variant_count
        finally:
            if ahead is not None:  # claimed for nothing: the rows go back to the queue
                for row in await ahead or []:
                    self.give_back(row)

    async def _drained(self) -> bool:
        """Nothing to claim: after what is in flight, True when the send is over (else there
        is more: given-back rows, retries due, other senders')."""
        await self.queue.join()
        await self.recorder.flushed()
        if await self.rest.finished() or self.untried:  # newly queued, or given back: claim again
            self.untried = 0
            return False
        wake = await self.db.call("find the next retry", self.queries.next_retry)
        if wake is None and self.crew and await self.crew.others_busy():
            await asyncio.sleep(self.crew.every / 2)  # theirs come back if they die
            return False
        if wake is None or self.halted:
            return True
        await asyncio.sleep(max(0.0, min(1.0, (wake - now()).total_seconds())))
        return False

    async def _lock_beat(self) -> bool:
        return await self.db.call("refresh the send lock", self.queries.beat)

    async def _crew_beat(self) -> bool:
        assert self.crew is not None
        return await self.crew.beat(self.summary.sent)

    async def run(self) -> None:
        """Sets ``summary.paused`` when the send pauses or stops on a failure (the rest stays
        queued); raises only what stops it before it starts (a refused login)."""
        await self.sender.transport.open()
        failure = ""
        try:
            failure = await self._supervised()
        finally:
            await self._cleanup()
        if failure:
            self.summary.paused = failure
        elif self.pause:
            self.summary.paused = f"{self.pause[0]}; {supervise.RESUME}"

    async def _supervised(self) -> str:
        """The feeder, workers, writer and watchdog as one group; "" or why it stopped."""
        try:
            async with asyncio.TaskGroup() as group:
                watchdog = group.create_task(
                    supervise.watchdog(
                        lambda: self.sender.stop_requests,
                        self.limits.stop_grace,
                        self._lock_beat if self.crew is None else self._crew_beat,
                        f"send:{self.options.issue}",
                        supervise.HEARTBEAT_SECONDS if self.crew is None else self.crew.every,
                    )
                )
                writer = group.create_task(self.recorder.run())
                group.create_task(self.rest.run())
                if self.signing is not None:
                    await self.signing.start()
                workers = [group.create_task(self.worker()) for _ in range(self.limits.concurrency)]
                await self.feed()
                for _ in workers:
                    await self.queue.put(None)
                await asyncio.gather(*workers)
                self.recorder.close()
                await writer
                watchdog.cancel()
        except BaseExceptionGroup as group:
            return supervise.failure_reason(group)
        return ""

    async def _cleanup(self) -> None:
        """Whatever happened: unsent rows back to the queue, the last outcomes written, the
        connections and signing processes closed, each step with a deadline."""
        while not self.queue.empty():
            job = self.queue.get_nowait()
            if job is not None:
                self.give_back(job.row)
        problem = await self.recorder.last_write(LAST_WRITE_DEADLINE)
        if problem:
            log.warning("%s", problem)
        self.summary.bounced += self.recorder.bounced
        try:
            async with asyncio.timeout(10):
                await self.sender.transport.close()
        except (TimeoutError, OSError) as exc:
            log.warning("closing the transport: %s", exc or "no answer in 10 s")
        if self.signing is not None:
            await self.signing.close()
        self.db.shutdown()
        self.rest.shutdown()
        self._report_progress()
        self.summary.stopped = self.sender.stop_requests > 0
