"""The database: schema (SQLAlchemy Core tables), engine, and Alembic migrations.

SQLite by default (a file in the workspace), PostgreSQL when ``database.url`` says so; the same
code runs on both. The schema is created by Alembic migrations (``newsletter/storage/migrations``):
``newsletter db upgrade`` applies them, and an empty database is upgraded automatically on first
use. A database whose schema is older than the code is refused with a message saying so.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Engine,
    create_engine,
    event,
    inspect,
    text,
)
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, OperationalError, SQLAlchemyError

from newsletter.core.files import touch_private
from newsletter.core.redact import mask_url
from newsletter.errors import DatabaseError
from newsletter.storage.schema import (
    SEND_STATES,
    UTCDateTime,
    events,
    lists,
    locks,
    mail_outbox,
    memberships,
    metadata,
    rate_buckets,
    returns,
    schedule_runs,
    send_log,
    send_runs,
    senders,
    subscribers,
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


# The newest migration in storage/migrations (tests/test_audience.py checks it against Alembic).
SCHEMA_HEAD = "0009_relay"


def error_line(exc: BaseException) -> str:
    """The first line of a database error (the driver's own message), for one-line reports."""
    orig = getattr(exc, "orig", None)
    lines = str(orig if orig is not None else exc).strip().splitlines()
    return (lines[0] if lines else type(exc).__name__)[:300]


def _revision(conn: Connection) -> str | None:
    row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
    return str(row[0]) if row else None


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
        """Create an empty database; refuse one at another schema revision. The revision is
        read with one query and compared with :data:`SCHEMA_HEAD`: importing Alembic to ask
        cost every command ~90 ms of start-up, so Alembic loads only to migrate."""
        try:
            with self.engine.connect() as conn:
                tables = set(inspect(conn).get_table_names())
                revision = _revision(conn) if "alembic_version" in tables else None
        except OperationalError as exc:
            raise DatabaseError(
                f"cannot open the database {self.display_url}: {exc.orig}"
            ) from None
        if revision is None and not (tables & {"subscribers", "lists"}):  # empty: create it
            from newsletter.storage.migrate import current_revision, upgrade

            try:
                upgrade(self.engine)
            except SQLAlchemyError:
                # Another process may have migrated the same empty database at the same moment.
                with self.engine.connect() as conn:
                    revision = current_revision(conn)
                if revision != SCHEMA_HEAD:
                    raise
        elif revision != SCHEMA_HEAD:
            raise DatabaseError(
                f"the database {self.display_url} is at schema revision {revision}, the code needs "
                f"{SCHEMA_HEAD}: run 'newsletter db upgrade'"
            )
        self._checked = True

    def dispose(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.dispose()


__all__ = [
    "SEND_STATES",
    "Database",
    "SQLAlchemyError",
    "UTCDateTime",
    "error_line",
    "events",
    "lists",
    "locks",
    "mail_outbox",
    "memberships",
    "metadata",
    "rate_buckets",
    "returns",
    "schedule_runs",
    "send_log",
    "send_runs",
    "senders",
    "subscribers",
]
