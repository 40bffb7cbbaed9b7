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

This module holds the send as a whole (options, summary, variants, the run record and lock);
the loop that claims, personalises, signs, sends and records is :mod:`newsletter.delivery.sendloop`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path

from newsletter.audience.editions import Editions
from newsletter.audience.segments import plan_list
from newsletter.audience.subscribers import list_id
from newsletter.compose.issuefiles import load_issue
from newsletter.compose.render import RenderOptions
from newsletter.core.clock import now
from newsletter.core.interests import Vocabulary, split
from newsletter.core.models import Issue
from newsletter.core.states import PENDING, SendState
from newsletter.core.tokens import Signer
from newsletter.delivery import senders, sendlog
from newsletter.delivery.dkim import DKIMSigner
from newsletter.delivery.loopparts import Rest
from newsletter.delivery.message import MessageTemplate, Recipient, SenderConfig, SlotMarks
from newsletter.delivery.options import Limits, SendOptions, SendSummary
from newsletter.delivery.ratelimit import RateLimiter
from newsletter.delivery.sendloop import SendLoop
from newsletter.delivery.sharedrate import SharedRateLimiter
from newsletter.delivery.transports import Transport
from newsletter.errors import MessageError, TransportError
from newsletter.storage import locks
from newsletter.storage.db import Database

# A send queues this many subscribers before its first message; the rest of the list is queued
# beside the sending (on PostgreSQL 20,000 rows took 0.28 s that every message waited for).
FIRST_QUEUED = 2000
REST_CHUNK = 20_000  # then this many a transaction (the send's own statements go between)


@dataclass(frozen=True)
class Identity:
    """Who sends (the ``[sender]`` settings), before an issue gives the subject its values."""

    from_address: str
    from_name: str = ""
    subject: str = "{title}"  # str.format with name, date, title, issue
    list_id: str = ""
    base_url: str = ""  # where /u/TOKEN and /p/TOKEN are served; default https://DOMAIN
    unsubscribe_mailto: str = ""
    reply_to: str = ""
    return_path: str = ""  # bounces.return_path: VERP when set


@dataclass(frozen=True)
class SendSetup:
    """What a send needs besides its parts (database, transport, signers): small and typed."""

    issues_dir: Path
    render: RenderOptions
    vocabulary: Vocabulary
    identity: Identity


def sender_config(identity: Identity, issue: Issue) -> SenderConfig:
    s = identity
    name = issue.title.split(" — ")[0]
    domain = s.from_address.rpartition("@")[2]
    return SenderConfig(
        from_address=s.from_address,
        from_name=s.from_name,
        subject=s.subject.format(
            name=name, date=issue.date_text, title=issue.title, issue=issue.day.isoformat()
        ),
        list_id=s.list_id or f"{name} <{issue_list_slug(name)}.{domain}>",
        base_url=s.base_url or f"https://{domain}",
        unsubscribe_mailto=s.unsubscribe_mailto or f"unsubscribe@{domain}",
        reply_to=s.reply_to,
        return_path=s.return_path,
    )


def issue_list_slug(name: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in name.lower()).strip("-") or "newsletter"


class Sender:
    """One send of one issue to one list (see the module docstring)."""

    def __init__(
        self,
        setup: SendSetup,
        database: Database,
        transport: Transport,
        signer: Signer,
        *,
        limits: Limits,
        dkim: DKIMSigner | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> None:
        self.setup = setup
        self.db = database
        self.transport = transport
        self.signer = signer
        self.limits = limits
        self.dkim = dkim
        self.progress = progress or (lambda done, total: None)
        self.from_address = setup.identity.from_address
        self.vocabulary = setup.vocabulary
        self.stop_requests = 0
        self.owner = locks.owner_name()
        self._templates: dict[str, MessageTemplate | None] = {}
        self._variants: dict[str, tuple[str, MessageTemplate | None]] = {}  # by interests
        self._editions: Editions | None = None
        self._marks = SlotMarks("", "")

    def request_stop(self) -> None:
        """Stop claiming; messages in flight get ``limits.stop_grace`` seconds to finish; the
        rest stays queued (SIGTERM, SIGINT). A second request stops the send at once.
        Safe to call from any thread or a signal handler (it only counts)."""
        self.stop_requests += 1

    @property
    def stop_requested(self) -> bool:
        return self.stop_requests > 0

    # -- variants
    def variant(self, issue: Issue, interests: str) -> tuple[str, MessageTemplate | None]:
        """(variant id, message template) of an interest set; ("", None) when nothing matches."""
        known = self._variants.get(interests)
        if known is not None:
            return known
        if self._editions is None or self._editions.issue is not issue:
            config = sender_config(self.setup.identity, issue)
            self._marks = SlotMarks.new(config.base_url)
            self._editions = Editions(
                issue, self.vocabulary, self.setup.render, self._marks.slots, web=False
            )
        vid, urls = self._editions.variant_of(interests)
        if vid and vid not in self._templates:
            _, rendered = self._editions.rendered(urls)
            self._templates[vid] = MessageTemplate(
                issue.day.isoformat(),
                vid,
                rendered,
                sender_config(self.setup.identity, issue),
                self.signer,
                self.dkim,
                marks=self._marks,
            )
        known = self._variants[interests] = (vid, self._templates.get(vid))
        return known

    @property
    def variant_count(self) -> int:
        return len(self._templates)

    # -- entry point
    async def run(self, options: SendOptions) -> SendSummary:
        issue = load_issue(self.setup.issues_dir, options.issue)
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
        """One copy of each variant (or of ``options.variant``) to ``options.to``, never in the
        send log: each with its own Message-ID and a subject saying which edition it is."""
        with self.db.connect() as conn:
            plan = plan_list(conn, issue, options.list_name, self.vocabulary)
        variants = [v for v in plan.variants if options.variant in (None, v.id)]
        if not variants:
            known = ", ".join(v.id for v in plan.variants) or "none"
            raise MessageError(f"no variant {options.variant!r} in this send (variants: {known})")
        await self.transport.open()
        try:
            for variant in variants:
                template = self._test_template(issue, variant.interest_sets[0], variant.id)
                if template is None:
                    continue
                message = template.personalise(Recipient(0, options.to or "", "Test copy"), now())
                delivery = await self.transport.send(
                    self.setup.identity.from_address, options.to or "", message
                )
                if delivery.state != SendState.SENT:
                    raise TransportError(
                        f"test copy of {variant.id} to {options.to}: {delivery.reply}"
                    )
                summary.test_copies += 1
        finally:
            await self.transport.close()
        summary.variants = len(plan.variants)

    def _test_template(self, issue: Issue, interests: str, vid: str) -> MessageTemplate | None:
        """The variant's message with ``[Test: Kazakhstan, energy]`` before the subject and a
        Message-ID of its own (``ISSUE-test-VARIANT-STAMP``), so that mail clients show every
        copy and the editor can tell them apart."""
        if self.variant(issue, interests)[1] is None or self._editions is None:
            return None
        _, rendered = self._editions.rendered(self._editions.variant_of(interests)[1])
        config = sender_config(self.setup.identity, issue)
        label = ", ".join(split(interests)) or "full edition"
        config = replace(config, subject=f"[Test: {label}] {config.subject}")
        key = f"{issue.day.isoformat()}-test-{vid}-{time.time_ns() % 10**9}"
        return MessageTemplate(
            key, vid, rendered, config, self.signer, self.dkim, marks=self._marks
        )

    def _dry_run(self, issue: Issue, options: SendOptions, summary: SendSummary) -> None:
        with self.db.connect() as conn:
            plan = plan_list(conn, issue, options.list_name, self.vocabulary)
            summary.totals = sendlog.counts(conn, options.issue)
        for variant in plan.variants:
            self.variant(issue, variant.interest_sets[0])
        summary.variants = len(plan.variants)
        summary.queued_now = max(0, plan.subscribers - summary.totals.get(SendState.SENT, 0))
        summary.skipped = plan.skipped

    def _limiter(self, single: bool, recent: list[datetime]) -> RateLimiter | SharedRateLimiter:
        """This process's own rate limit with one sender (SQLite); on PostgreSQL one limit
        shared by every sender, through the database."""
        per_second, per_hour = self.limits.rate_per_second, self.limits.rate_per_hour
        if single or not (per_second or per_hour):
            return RateLimiter(per_second, per_hour, recent)
        return SharedRateLimiter(self.db, per_second, per_hour)

    def _queue_more(self, issue: str, list_id: int, after: int) -> tuple[int, int | None]:
        with self.db.connect() as conn, conn.begin():
            return sendlog.enqueue(conn, issue, list_id, after=after, limit=REST_CHUNK)

    async def _send(self, issue: Issue, options: SendOptions, summary: SendSummary) -> None:
        single = self.db.backend != "postgresql"
        lock = f"send:{options.issue}"
        with self.db.connect() as conn, conn.begin():
            lid = list_id(conn, options.list_name)
            if single:
                locks.acquire_lock(conn, lock, self.owner)
            else:  # PostgreSQL: one of any number of senders; the dead ones' rows come back
                senders.register(conn, self.owner, options.issue)
                senders.requeue_dead(conn, options.issue, self.limits.sender_timeout)
            sendlog.recover(conn, options.issue, single_sender=single)
            # the first subscribers now, the rest while their messages go out
            summary.queued_now, last = sendlog.enqueue(conn, options.issue, lid, limit=FIRST_QUEUED)
            run_id = sendlog.start_run(conn, options.issue, options.list_name, options.origin)
            recent = (
                sendlog.sent_since(conn, now() - timedelta(hours=1))
                if self.limits.rate_per_hour
                else []
            )
            total = sum(v for k, v in sendlog.counts(conn, options.issue).items() if k in PENDING)
        message = ""
        try:
            await SendLoop(
                self,
                issue,
                options,
                summary,
                self._limiter(single, recent),
                total,
                None if last is None else Rest(partial(self._queue_more, options.issue, lid), last),
            ).run()
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
                    locks.release_lock(conn, lock, self.owner)
                else:
                    senders.unregister(conn, self.owner)
