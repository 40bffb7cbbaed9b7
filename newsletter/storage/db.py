"""The database: schema (SQLAlchemy Core tables), engine, and Alembic migrations.

SQLite by default (a file in the workspace), PostgreSQL when ``database.url`` says so; the same
code runs on both. The schema is created by Alembic migrations (``newsletter/storage/migrations``):
``newsletter db upgrade`` applies them, and an empty database is upgraded automatically on first
use. A database whose schema is older than the code is refused with a message saying so.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    inspect,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError
from sqlalchemy.types import TypeDecorator

from newsletter.core.files import touch_private
from newsletter.core.redact import mask_url
from newsletter.core.states import SendState, SubscriberStatus
from newsletter.errors import DatabaseError

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

locks = Table(
    "locks",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("owner", String(100), nullable=False),
    Column("acquired_at", UTCDateTime, nullable=False),
    Column("heartbeat_at", UTCDateTime, nullable=False),
)


def dialect_insert(conn: Connection, table: Any) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert(table)
    from sqlalchemy.dialects import sqlite

    return sqlite.insert(table)


class DriverSQL:
    """The send loop's few hot statements, run through the driver directly.

    SQLAlchemy's per-row parameter processing cost more than SQLite's own work on the send log
    (measured: 38 us a row for an outcome against 16 us). Statements are written once with ``?``
    placeholders, in SQL that SQLite and PostgreSQL both accept; datetimes go through
    :class:`UTCDateTime`'s own bind processing, so they are stored exactly as elsewhere.
    """

    def __init__(self, conn: Connection) -> None:
        self.dialect = conn.dialect
        self._positional = conn.dialect.paramstyle == "qmark"
        self._datetime = UTCDateTime().dialect_impl(conn.dialect).bind_processor(conn.dialect)

    def sql(self, statement: str) -> str:
        return statement if self._positional else statement.replace("?", "%s")

    def datetime(self, value: datetime | None) -> Any:
        if value is None or self._datetime is None:
            return value
        return self._datetime(value)


def resolve_url(url: str, workspace: Path) -> str:
    """Make a relative SQLite path absolute against the workspace."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(
            f"setting 'database.url': {mask_url(url)!r} is not a database URL"
        ) from None
    if parsed.get_backend_name() == "sqlite" and parsed.database and parsed.database != ":memory:":
        path = Path(parsed.database)
        if not path.is_absolute():
            parsed = parsed.set(database=str(workspace / path))
    return parsed.render_as_string(hide_password=False)


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def make_engine(url: str) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise DatabaseError(
            f"setting 'database.url': {mask_url(url)!r} is not a database URL"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise DatabaseError(
            f"setting 'database.url': the {backend!r} database is not supported (use sqlite or postgresql)"
        )
    try:
        if backend == "sqlite":
            if parsed.database and parsed.database != ":memory:" and "mode=" not in url:
                # subscribers' addresses: 0600 (SQLite gives its -wal and -shm files the same)
                touch_private(Path(parsed.database))
            engine = create_engine(url, connect_args={"timeout": 30})
            event.listen(engine, "connect", _sqlite_pragmas)
        else:
            engine = create_engine(url, pool_pre_ping=True)
    except (ImportError, ModuleNotFoundError) as exc:
        raise DatabaseError(f"no driver for {backend}: {exc}") from None
    return engine


class Database:
    """An engine plus the checks that the schema is current."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)
        self._checked = False

    @property
    def display_url(self) -> str:
        return mask_url(self.url)

    @property
    def backend(self) -> str:
        return self.engine.dialect.name

    def connect(self) -> Connection:
        """A connection to a database whose schema is current (empty ones are upgraded)."""
        if not self._checked:
            self.ensure_schema()
        try:
            return self.engine.connect()
        except OperationalError as exc:
            raise DatabaseError(f"cannot connect to {self.display_url}: {exc.orig}") from None

    def ensure_schema(self) -> None:
        from newsletter.storage.migrate import current_revision, head_revision, upgrade

        try:
            with self.engine.connect() as conn:
                tables = set(inspect(conn).get_table_names())
                revision = current_revision(conn)
        except OperationalError as exc:
            raise DatabaseError(
                f"cannot open the database {self.display_url}: {exc.orig}"
            ) from None
        head = head_revision()
        if revision is None and not (tables & {"subscribers", "lists"}):  # empty: create it
            try:
                upgrade(self.engine)
            except SQLAlchemyError:
                # Another process may have migrated the same empty database at the same moment.
                with self.engine.connect() as conn:
                    revision = current_revision(conn)
                if revision != head:
                    raise
        elif revision != head:
            raise DatabaseError(
                f"the database {self.display_url} is at schema revision {revision}, the code needs "
                f"{head}: run 'newsletter db upgrade'"
            )
        self._checked = True

    def dispose(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()


__all__ = [
    "Database",
    "SQLAlchemyError",
    "events",
    "lists",
    "locks",
    "memberships",
    "metadata",
    "schedule_runs",
    "send_log",
    "send_runs",
    "subscribers",
]
