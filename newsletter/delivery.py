"""Sending an issue to a list: queue, claim, personalise, deliver, record.

Each variant is rendered and turned into a :class:`~newsletter.message.MessageTemplate` once;
each subscriber's message is then personalised from it. Rows are claimed from the send log in
small batches (the subscriber's status and interests are read at that moment, so an unsubscribe
during a send takes effect for every message not yet claimed), sent by ``concurrency`` workers
through the transport, and their outcomes written back in batches. A killed sender leaves its
claimed rows in ``sending``; the next run puts them back in the queue (those few may be sent
twice; nobody is lost). Temporary failures (4xx, timeouts, dropped connections) are retried with
exponential backoff, then left ``deferred`` for the next run; 5xx is ``failed``. Too many
connection failures in a row, or a refused login, pause the send with a message.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from newsletter import sendlog
from newsletter.audience import list_id
from newsletter.build import load_issue, render_options
from newsletter.config import Settings
from newsletter.db import Database, now
from newsletter.interests import Vocabulary
from newsletter.message import (
    DKIMSigner,
    Draft,
    HeaderInjectionError,
    MessageTemplate,
    Recipient,
    SenderConfig,
)
from newsletter.models import Issue
from newsletter.render import render_issue
from newsletter.segments import edition, edition_urls, plan_list, variant_id
from newsletter.signing import SigningProcesses
from newsletter.tokens import Signer
from newsletter.transports import Delivery, Transport, TransportError

SIGN_CHUNK = 16  # DKIM signatures per job given to a signing process
PIPELINE_DEPTH = 8  # messages a worker sends back to back on its connection (no rate limit)
HEARTBEAT_SECONDS = 5.0  # how often a SQLite sender refreshes its lock (stale after 90 s)

# A message on its way to a worker: the claimed row, its variant, its draft, and (with DKIM)
# the future of its chunk's signatures with its index in that chunk.
Job = tuple["sendlog.Claimed", str, Draft, "asyncio.Future[list[str]] | None", int]


@dataclass(frozen=True)
class SendOptions:
    issue: str
    list_name: str
    dry_run: bool = False
    limit: int | None = None
    to: str | None = None
    origin: str = "cli"


@dataclass(frozen=True)
class Limits:
    concurrency: int = 4
    rate_per_second: float = 0.0
    rate_per_hour: int = 0
    retries: int = 3
    backoff: float = 2.0
    bounce_limit: int = 3
    pause_after_errors: int = 10
    batch: int = 200


@dataclass
class SendSummary:
    issue: str
    list_name: str
    transport: str
    queued_now: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    skipped: int = 0
    bounced: int = 0
    variants: int = 0
    seconds: float = 0.0
    paused: str | None = None
    stopped: bool = False
    dry_run: bool = False
    test_copies: int = 0
    totals: dict[str, int] = field(
        default_factory=dict
    )  # the whole log of this issue after the run

    @property
    def remaining(self) -> int:
        return (
            self.totals.get("queued", 0)
            + self.totals.get("deferred", 0)
            + self.totals.get("sending", 0)
        )

    @property
    def outcome(self) -> str:
        if self.paused:
            return "paused"
        if self.dry_run or self.test_copies:
            return "dry-run" if self.dry_run else "test"
        if self.remaining:
            return "incomplete"
        return "failures" if self.totals.get("failed", 0) else "complete"


def sender_config(settings: Settings, issue: Issue) -> SenderConfig:
    s = settings.sender
    name = issue.title.split(" — ")[0]
    domain = s.from_address.rpartition("@")[2]
    return SenderConfig(
        from_address=s.from_address,
        from_name=s.from_name,
        subject=s.subject.format(
            name=name, date=issue.date_text, title=issue.title, issue=issue.day.isoformat()
        ),
        list_id=s.list_id or f"{name} <{issue_list_slug(name)}.{domain}>",
        base_url=s.base_url or settings.issue.web_url or f"https://{domain}",
        unsubscribe_mailto=s.unsubscribe_mailto or f"unsubscribe@{domain}",
        reply_to=s.reply_to,
    )


def issue_list_slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "newsletter"


class RateLimiter:
    """Messages per second (spaced evenly) and per rolling hour, honoured when sending."""

    def __init__(
        self, per_second: float, per_hour: int, recent: list[datetime] | None = None
    ) -> None:
        self.interval = 1.0 / per_second if per_second else 0.0
        self.per_hour = per_hour
        self._next = 0.0
        self.active = bool(self.interval or per_hour)
        self._hour: deque[float] = deque()
        offset = time.monotonic() - time.time()
        for stamp in recent or []:
            self._hour.append(stamp.timestamp() + offset)

    async def wait(self) -> None:
        loop_time = time.monotonic()
        if self.per_hour:
            while self._hour and self._hour[0] <= loop_time - 3600:
                self._hour.popleft()
            if len(self._hour) >= self.per_hour:
                await asyncio.sleep(self._hour[0] + 3600 - loop_time)
                return await self.wait()
            self._hour.append(loop_time)
        if self.interval:
            slot = max(self._next, loop_time)
            self._next = slot + self.interval
            if slot > loop_time:
                await asyncio.sleep(slot - loop_time)
        return None


class Sender:
    """One send of one issue to one list (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        database: Database,
        transport: Transport,
        signer: Signer,
        *,
        limits: Limits,
        dkim: DKIMSigner | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.db = database
        self.transport = transport
        self.signer = signer
        self.limits = limits
        self.dkim = dkim
        self.progress = progress or (lambda done, total: None)
        self.vocabulary = Vocabulary.from_settings(settings)
        self.stop_requested = False
        self.owner = sendlog.owner_name()
        self._templates: dict[str, MessageTemplate | None] = {}
        self._variants: dict[str, tuple[str, MessageTemplate | None]] = {}  # by interests
        self._issue: Issue | None = None

    def request_stop(self) -> None:
        """Stop claiming; messages in flight finish; the rest stays queued (SIGTERM, SIGINT)."""
        self.stop_requested = True

    # -- variants
    def _template(self, issue: Issue, interests: str) -> tuple[str, MessageTemplate | None]:
        known = self._variants.get(interests)
        if known is not None:
            return known
        urls = edition_urls(issue, interests, self.vocabulary)
        vid = variant_id(urls) if urls else ""
        if vid and vid not in self._templates:
            rendered = render_issue(edition(issue, urls), render_options(self.settings))
            self._templates[vid] = MessageTemplate(
                issue.day.isoformat(),
                vid,
                rendered,
                sender_config(self.settings, issue),
                self.signer,
                self.dkim,
            )
        known = self._variants[interests] = (vid, self._templates.get(vid))
        return known

    # -- entry point
    async def run(self, options: SendOptions) -> SendSummary:
        issue = load_issue(self.settings, options.issue)
        summary = SendSummary(
            options.issue, options.list_name, self.transport.name, dry_run=options.dry_run
        )
        started = time.monotonic()
        if options.to:
            await self._test_copies(issue, options, summary)
        elif options.dry_run:
            self._dry_run(issue, options, summary)
        else:
            await self._send(issue, options, summary)
        summary.seconds = time.monotonic() - started
        return summary

    async def _test_copies(self, issue: Issue, options: SendOptions, summary: SendSummary) -> None:
        with self.db.connect() as conn:
            plan = plan_list(conn, issue, options.list_name, self.vocabulary)
        await self.transport.open()
        try:
            for variant in plan.variants or []:
                _, template = self._template(issue, variant.interest_sets[0])
                if template is None:
                    continue
                message = template.personalise(Recipient(0, options.to or "", "Test copy"), now())
                delivery = await self.transport.send(
                    self.settings.sender.from_address, options.to or "", message
                )
                if delivery.state != "sent":
                    raise TransportError(
                        f"test copy of {variant.id} to {options.to}: {delivery.reply}"
                    )
                summary.test_copies += 1
        finally:
            await self.transport.close()
        summary.variants = len(plan.variants)

    def _dry_run(self, issue: Issue, options: SendOptions, summary: SendSummary) -> None:
        with self.db.connect() as conn:
            plan = plan_list(conn, issue, options.list_name, self.vocabulary)
            summary.totals = sendlog.counts(conn, options.issue)
        for variant in plan.variants:
            self._template(issue, variant.interest_sets[0])
        summary.variants = len(plan.variants)
        summary.queued_now = max(0, plan.subscribers - summary.totals.get("sent", 0))
        summary.skipped = plan.skipped

    async def _send(self, issue: Issue, options: SendOptions, summary: SendSummary) -> None:
        single = self.db.backend != "postgresql"
        lock = f"send:{options.issue}"
        with self.db.connect() as conn, conn.begin():
            lid = list_id(conn, options.list_name)
            if single:
                sendlog.acquire_lock(conn, lock, self.owner)
            sendlog.recover(conn, options.issue, single_sender=single)
            summary.queued_now = sendlog.enqueue(conn, options.issue, lid)
            run_id = sendlog.start_run(conn, options.issue, options.list_name, options.origin)
            recent = (
                sendlog.sent_since(conn, now() - timedelta(hours=1))
                if self.limits.rate_per_hour
                else []
            )
            total = sum(
                v
                for k, v in sendlog.counts(conn, options.issue).items()
                if k in ("queued", "deferred", "sending")
            )
        message = ""
        try:
            await self._loop(
                issue,
                options,
                summary,
                RateLimiter(self.limits.rate_per_second, self.limits.rate_per_hour, recent),
                total,
            )
        except TransportError as exc:
            summary.paused = str(exc)
        finally:
            with self.db.connect() as conn, conn.begin():
                summary.totals = sendlog.counts(conn, options.issue)
                if summary.paused:
                    message = f"paused: {summary.paused}"
                elif summary.stopped:
                    message = "stopped on request"
                sendlog.finish_run(
                    conn,
                    run_id,
                    summary.outcome,
                    {
                        "sent": summary.sent,
                        "deferred": summary.deferred,
                        "failed": summary.failed,
                        "skipped": summary.skipped,
                    },
                    message,
                )
                if single:
                    sendlog.release_lock(conn, lock, self.owner)

    async def _loop(
        self,
        issue: Issue,
        options: SendOptions,
        summary: SendSummary,
        limiter: RateLimiter,
        total: int,
    ) -> None:
        """Claim, personalise, sign, send, record: see the module docstring.

        The event loop only personalises and talks SMTP. The send log is read and written by
        one database thread (claims and outcome batches run there in order, beside the loop:
        SQLite and psycopg release the GIL while they work), and DKIM signatures are made by
        two signing processes (:mod:`newsletter.signing`), :data:`SIGN_CHUNK` per job.
        """
        limits = self.limits
        loop = asyncio.get_running_loop()
        dkim = self.dkim
        signing = SigningProcesses(dkim.key_pem()) if dkim is not None else None
        database = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sendlog")
        queue: asyncio.Queue[Job | None] = asyncio.Queue(maxsize=limits.batch)
        outcomes: list[sendlog.Outcome] = []
        writes: list[asyncio.Future[int]] = []
        counters = {"errors_in_row": 0, "submitted": 0, "done": 0, "untried": 0}
        tries: dict[int, int] = {}
        pause: list[str] = []
        flush_every = max(2 * limits.concurrency, 50)
        sender_address = self.settings.sender.from_address
        single = self.db.backend != "postgresql"
        lock_name = f"send:{options.issue}"
        beat = [time.monotonic()]

        def write(batch: list[sendlog.Outcome]) -> int:  # in the database thread
            with self.db.connect() as conn, conn.begin():
                bounced = len(sendlog.record(conn, batch, limits.bounce_limit))
                if single and time.monotonic() - beat[0] > HEARTBEAT_SECONDS:
                    sendlog.heartbeat(conn, lock_name, self.owner)
                    beat[0] = time.monotonic()
            return bounced

        def flush() -> None:
            if outcomes:
                writes.append(loop.run_in_executor(database, write, outcomes[:]))
                outcomes.clear()
            self.progress(summary.sent + summary.failed + summary.deferred + summary.skipped, total)

        async def settle_writes(wait: bool) -> None:
            """Count bounces of finished writes; a failed write stops the send (it raises)."""
            while writes and (wait or writes[0].done()):
                summary.bounced += await writes.pop(0)

        def claim(want: int) -> list[sendlog.Claimed]:  # in the database thread
            with self.db.connect() as conn, conn.begin():
                return sendlog.claim(conn, options.issue, self.owner, want)

        def next_retry() -> datetime | None:  # in the database thread
            with self.db.connect() as conn:
                return sendlog.next_retry(conn, options.issue)

        def settle(row: sendlog.Claimed, vid: str, delivery: Delivery) -> None:
            retry_at = None
            if delivery.state == "deferred":
                n = tries[row.id] = tries.get(row.id, 0) + 1
                if n < limits.retries and not pause and not self.stop_requested:
                    retry_at = now() + timedelta(seconds=limits.backoff * 2 ** (n - 1))
                else:
                    summary.deferred += 1  # left for the next run
            elif delivery.state == "sent":
                summary.sent += 1
            else:
                summary.failed += 1
            outcomes.append(
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

        def give_back(row: sendlog.Claimed) -> None:
            outcomes.append(
                sendlog.Outcome(row.id, row.subscriber_id, "queued", None, "", tried=False)
            )

        async def worker() -> None:
            depth = 1 if limiter.active else PIPELINE_DEPTH
            last = False
            while not last and (job := await queue.get()) is not None:
                batch = [job]
                while len(batch) < depth and not queue.empty():
                    more = queue.get_nowait()
                    if more is None:
                        last = True
                        break
                    batch.append(more)
                try:
                    await send(batch)
                finally:
                    counters["done"] += len(batch)

        async def send(batch: list[Job]) -> None:
            if pause or self.stop_requested:
                for job in batch:
                    give_back(job[0])
                return
            if limiter.active:
                await limiter.wait()
            items = [
                (row.email, draft.finish((await signatures)[i] if signatures else None))
                for row, _, draft, signatures, i in batch
            ]
            try:
                deliveries = await self.transport.send_many(sender_address, items)
            except TransportError as exc:
                pause.append(str(exc))
                for job in batch:
                    give_back(job[0])
                return
            for (row, vid, *_), delivery in zip(batch, deliveries, strict=True):
                if not delivery.tried:  # its connection went down before its turn
                    give_back(row)
                    counters["untried"] += 1
                    continue
                if delivery.connection_error:
                    counters["errors_in_row"] += 1
                    if counters["errors_in_row"] >= limits.pause_after_errors and not pause:
                        pause.append(
                            f"{counters['errors_in_row']} connection failures in a row at "
                            f"{self.transport.name} (last: {delivery.reply})"
                        )
                else:
                    counters["errors_in_row"] = 0
                settle(row, vid, delivery)
            if len(outcomes) >= flush_every:
                flush()

        async def drain() -> None:
            while counters["done"] < counters["submitted"]:
                await asyncio.sleep(0.005)
            flush()
            await settle_writes(wait=True)

        def prepare(row: sendlog.Claimed) -> tuple[str, Draft] | None:
            if row.status != "active":
                reason = f"subscriber is {row.status}"
            else:
                vid, template = self._template(issue, row.interests)
                if template is None:
                    reason = "nothing in this issue matches their interests"
                else:
                    try:
                        return vid, template.draft(
                            Recipient(row.subscriber_id, row.email, row.name), now()
                        )
                    except (HeaderInjectionError, ValueError) as exc:
                        outcomes.append(
                            sendlog.Outcome(
                                row.id,
                                row.subscriber_id,
                                "failed",
                                None,
                                f"cannot build the message: {exc}",
                            )
                        )
                        summary.failed += 1
                        return None
            outcomes.append(
                sendlog.Outcome(row.id, row.subscriber_id, "skipped", None, reason, tried=False)
            )
            summary.skipped += 1
            return None

        def jobs(rows: list[sendlog.Claimed]) -> list[Job]:
            """Drafts for the claimed rows, their signatures started in chunks."""
            ready: list[tuple[sendlog.Claimed, str, Draft]] = []
            for row in rows:
                prepared = prepare(row) if not (pause or self.stop_requested) else None
                if prepared is None:
                    if pause or self.stop_requested:
                        give_back(row)
                    continue
                ready.append((row, *prepared))
            if signing is None:
                return [(row, vid, draft, None, 0) for row, vid, draft in ready]
            out: list[Job] = []
            for first in range(0, len(ready), SIGN_CHUNK):
                chunk = ready[first : first + SIGN_CHUNK]
                signatures = signing.submit([draft.to_sign for _, _, draft in chunk])
                out += [
                    (row, vid, draft, signatures, i) for i, (row, vid, draft) in enumerate(chunk)
                ]
            return out

        await self.transport.open()
        if signing is not None:
            await signing.start()
        workers = [asyncio.create_task(worker()) for _ in range(limits.concurrency)]
        try:
            while not pause and not self.stop_requested:
                room = None if options.limit is None else options.limit - counters["submitted"]
                if room is not None and room <= 0:
                    break
                await settle_writes(wait=False)
                rows = await loop.run_in_executor(
                    database, claim, min(limits.batch, room or limits.batch)
                )
                if not rows:
                    await drain()
                    if counters["untried"]:  # given back after a lost connection: claim again
                        counters["untried"] = 0
                        continue
                    wake = await loop.run_in_executor(database, next_retry)
                    if wake is None or pause or self.stop_requested:
                        break
                    await asyncio.sleep(max(0.0, min(1.0, (wake - now()).total_seconds())))
                    continue
                for job in jobs(rows):
                    counters["submitted"] += 1
                    await queue.put(job)
                summary.variants = len(self._templates)
        finally:
            for _ in workers:
                await queue.put(None)
            await asyncio.gather(*workers)
            flush()
            try:
                await settle_writes(wait=True)
            finally:
                await self.transport.close()
                if signing is not None:
                    await signing.close()
                database.shutdown(wait=True)
                summary.stopped = self.stop_requested
        if pause:
            raise TransportError(
                pause[0] + "; the rest stays queued: run the same command to resume"
            )
