"""The states of things, as enums whose values are the strings stored in the database.

``StrEnum`` members compare equal to their stored strings, so rows read back as plain strings
still compare with them; code writes the members.
"""

from __future__ import annotations

from enum import StrEnum


class SubscriberStatus(StrEnum):
    ACTIVE = "active"
    UNCONFIRMED = "unconfirmed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


# Never mailed again, and never re-activated by an import or ``add``.
SUPPRESSED = (
    SubscriberStatus.UNSUBSCRIBED,
    SubscriberStatus.BOUNCED,
    SubscriberStatus.COMPLAINED,
)
STATUSES = tuple(SubscriberStatus)


class SendState(StrEnum):
    """A send-log row: queued -> sending (claimed) -> sent | deferred | failed | skipped."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    DEFERRED = "deferred"
    FAILED = "failed"
    SKIPPED = "skipped"


# Rows still to be sent (or retried) in a later run.
PENDING = (SendState.QUEUED, SendState.SENDING, SendState.DEFERRED)


class RunOutcome(StrEnum):
    """How one run of a send ended (``send_runs.outcome``)."""

    RUNNING = "running"
    COMPLETE = "complete"
    FAILURES = "failures"
    INCOMPLETE = "incomplete"
    PAUSED = "paused"
    DRY_RUN = "dry-run"
    TEST = "test"


class ScheduleOutcome(StrEnum):
    """How one scheduled run ended (``schedule_runs.outcome``)."""

    RUNNING = "running"
    SENT = "sent"
    INCOMPLETE = "incomplete"
    BUILT = "built"
    SKIPPED = "skipped"
    FAILED = "failed"


class ReturnKind(StrEnum):
    """What a returned mail (or a refusal during the SMTP session) says about an address."""

    HARD = "hard"  # the address is bad: unknown user, no such domain, disabled, moved
    SOFT = "soft"  # temporary trouble, or a refusal whose reason is unclear
    SENDER = "sender"  # aimed at us (blocked IP, spam filter, policy, DMARC): not the address
    COMPLAINT = "complaint"  # a spam report (ARF)
    UNSUBSCRIBE = "unsubscribe"  # a mail to the List-Unsubscribe address with a valid token
    AUTOREPLY = "autoreply"  # vacation notices and other auto-replies: ignored
    DELAYED = "delayed"  # "still trying" notices: ignored
    IGNORED = "ignored"  # not a return at all
