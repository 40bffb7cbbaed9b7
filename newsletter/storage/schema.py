"""The schema: SQLAlchemy Core tables and the column type they share (``newsletter.storage.db``
re-exports all of it; Alembic migrations in ``storage/migrations`` create it)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)
from sqlalchemy.types import TypeDecorator

from newsletter.core.states import SendState, SubscriberStatus

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(column_0_label)s",
        "uq": "uq_%(table_name)s_%(column_0_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware datetimes stored as UTC on every backend (SQLite has no time zones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


subscribers = Table(
    "subscribers",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("email", String(320), nullable=False),
    Column("email_key", String(320), nullable=False, unique=True),
    Column("name", String(200), nullable=False, default=""),
    Column("status", String(16), nullable=False, default=SubscriberStatus.ACTIVE.value),
    # Canonical form: the interests sorted in vocabulary order, joined by ";" ("" = everything).
    # A plain string so that variants can be planned with one GROUP BY.
    Column("interests", String(1000), nullable=False, default=""),
    Column("attributes", JSON, nullable=False, default=dict),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("unsubscribed_at", UTCDateTime, nullable=True),
    Column("bounce_count", Integer, nullable=False, default=0, server_default="0"),
    Column("confirmation_sent_at", UTCDateTime, nullable=True),  # at most one a day
    Index("ix_subscribers_status_interests", "status", "interests"),
)

lists = Table(
    "lists",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(100), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
)

memberships = Table(
    "memberships",
    metadata,
    Column("list_id", Integer, ForeignKey("lists.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), primary_key=True
    ),
    Column("added_at", UTCDateTime, nullable=False),
    Index("ix_memberships_subscriber", "subscriber_id"),
)

events = Table(
    "events",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UTCDateTime, nullable=False),
    Column(
        "subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="SET NULL"), nullable=True
    ),
    Column("kind", String(40), nullable=False),
    Column("detail", Text, nullable=False, default=""),
    Index("ix_events_subscriber", "subscriber_id"),
)


SEND_STATES = tuple(SendState)

# One row per (issue, subscriber): the send log is also the work queue. Rows are claimed in
# batches ("sending", claimed_by/claimed_at); on PostgreSQL with FOR UPDATE SKIP LOCKED so that
# several senders can share one send.
send_log = Table(
    "send_log",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("issue", String(32), nullable=False),
    Column("list_id", Integer, nullable=False),
    Column(
        "subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False
    ),
    Column("state", String(16), nullable=False),
    Column("variant", String(16), nullable=False, default=""),
    Column("relay", String(40), nullable=False, default="", server_default=""),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_code", Integer, nullable=True),
    Column("last_reply", String(500), nullable=False, default=""),
    Column("queued_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime, nullable=True),
    Column("next_attempt_at", UTCDateTime, nullable=True),
    Column("claimed_by", String(64), nullable=True),
    Column("claimed_at", UTCDateTime, nullable=True),
    UniqueConstraint("issue", "subscriber_id", name="uq_send_log_issue"),
    Index("ix_send_log_claim", "issue", "state", "next_attempt_at"),
    Index("ix_send_log_queue", "issue", "state", "id"),
    Index("ix_send_log_sent_at", "sent_at"),
)

send_runs = Table(
    "send_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("issue", String(32), nullable=False),
    Column("list_name", String(100), nullable=False),
    Column("origin", String(40), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("outcome", String(20), nullable=False),
    Column("sent", Integer, nullable=False, default=0),
    Column("deferred", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("skipped", Integer, nullable=False, default=0),
    Column("message", Text, nullable=False, default=""),
    Index("ix_send_runs_issue", "issue"),
)

schedule_runs = Table(
    "schedule_runs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("schedule", String(60), nullable=False),
    Column("issue", String(32), nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("finished_at", UTCDateTime, nullable=True),
    Column("outcome", String(20), nullable=False),
    Column("sent", Integer, nullable=False, default=0),
    Column("failed", Integer, nullable=False, default=0),
    Column("skipped", Integer, nullable=False, default=0),
    Column("detail", Text, nullable=False, default=""),
    Index("ix_schedule_runs_schedule", "schedule"),
)

# Confirmation mails that could not go out at once: retried until they do (or give up).
mail_outbox = Table(
    "mail_outbox",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("kind", String(20), nullable=False),
    Column(
        "subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="CASCADE"), nullable=False
    ),
    Column("created_at", UTCDateTime, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", String(500), nullable=False, default=""),
    UniqueConstraint("kind", "subscriber_id", name="uq_mail_outbox_kind_subscriber"),
)

returns = Table(
    "returns",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UTCDateTime, nullable=False),
    Column("source", String(20), nullable=False),  # import, imap, ses, postmark
    Column("source_key", String(64), nullable=False),  # sha256 of the mail, or the webhook id
    Column("message_id", String(250), nullable=False),
    Column(
        "subscriber_id", Integer, ForeignKey("subscribers.id", ondelete="SET NULL"), nullable=True
    ),
    Column("address", String(320), nullable=False),
    Column("domain", String(255), nullable=False),
    Column("issue", String(32), nullable=True),
    Column("kind", String(16), nullable=False),  # ReturnKind
    Column("reason", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("diagnostic", String(500), nullable=False),
    UniqueConstraint("source_key", "address", name="uq_returns_source_address"),
    Index("ix_returns_subscriber", "subscriber_id", "issue"),
    Index("ix_returns_issue_kind", "issue", "kind"),
)

senders = Table(  # one row per running sender of a send (PostgreSQL: several share one send)
    "senders",
    metadata,
    Column("owner", String(100), primary_key=True),
    Column("issue", String(32), nullable=False),
    Column("host", String(255), nullable=False),
    Column("pid", Integer, nullable=False),
    Column("started_at", UTCDateTime, nullable=False),
    Column("beat_at", UTCDateTime, nullable=False),
    Column("sent", Integer, nullable=False),
    Column("rate", Float, nullable=False),  # messages a second, lately
)

rate_buckets = Table(  # token buckets of the rate limit all senders share
    "rate_buckets",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("stamp", Float, nullable=False),  # Unix seconds of the last refill
    Column("factor", Float, nullable=False),  # < 1 after a throttling reply, recovering
    Column("slowed_at", Float, nullable=False),
)

locks = Table(
    "locks",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("owner", String(100), nullable=False),
    Column("acquired_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
)
