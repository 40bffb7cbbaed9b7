"""What a send is asked to do (:class:`SendOptions`), within which limits (:class:`Limits`), and
what it did (:class:`SendSummary`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from newsletter.core.states import RunOutcome, SendState
from newsletter.delivery.warmup import Warmup


@dataclass(frozen=True)
class SendOptions:
    issue: str
    list_name: str
    dry_run: bool = False
    limit: int | None = None
    to: str | None = None
    variant: str | None = None  # with ``to``: only this variant's test copy
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
    stop_grace: float = 20.0  # seconds after a stop request before the send is cut short
    pause_ratio: float = 0.05  # pause when this share of the recent messages is refused for good
    warmup: Warmup | None = None  # a daily cap for a new domain or IP
    sender_timeout: float = 5.0  # a sender silent this long is taken for dead (PostgreSQL)
    pause_window: int = 1000  # ... of this many recent messages (judged from 200 on)


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
    no_match: int = 0  # subscribers whose interests matched nothing in this issue
    reasons: Counter[str] = field(default_factory=Counter)  # why messages failed or wait
    totals: dict[str, int] = field(
        default_factory=dict
    )  # the whole log of this issue after the run

    @property
    def done(self) -> int:
        """Messages of this run with an outcome (sent, failed, deferred for good, skipped)."""
        return self.sent + self.failed + self.deferred + self.skipped

    @property
    def remaining(self) -> int:
        return (
            self.totals.get(SendState.QUEUED, 0)
            + self.totals.get(SendState.DEFERRED, 0)
            + self.totals.get(SendState.SENDING, 0)
        )

    @property
    def outcome(self) -> RunOutcome:
        if self.paused:
            return RunOutcome.PAUSED
        if self.dry_run or self.test_copies:
            return RunOutcome.DRY_RUN if self.dry_run else RunOutcome.TEST
        if self.remaining:
            return RunOutcome.INCOMPLETE
        return RunOutcome.FAILURES if self.totals.get(SendState.FAILED, 0) else RunOutcome.COMPLETE
