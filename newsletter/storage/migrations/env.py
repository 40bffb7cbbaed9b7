"""Alembic environment: runs on the connection handed over by newsletter.storage.migrate."""

from __future__ import annotations

from alembic import context

from newsletter.storage.db import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - always called through storage.migrate
    raise RuntimeError("run migrations with 'newsletter db upgrade'")

context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
