"""Delivery: the send log (also the work queue), send runs, locks, hard-bounce counts.

Revision ID: 0002_delivery
Revises: 0001_audience
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from newsletter.storage.db import UTCDateTime

revision = "0002_delivery"
down_revision = "0001_audience"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("bounce_count", sa.Integer, nullable=False, server_default="0"))
    op.create_table(
        "send_log",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("issue", sa.String(32), nullable=False),
        sa.Column("list_id", sa.Integer, nullable=False),
        sa.Column("subscriber_id", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("variant", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_code", sa.Integer, nullable=True),
        sa.Column("last_reply", sa.String(500), nullable=False),
        sa.Column("queued_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("sent_at", UTCDateTime, nullable=True),
        sa.Column("next_attempt_at", UTCDateTime, nullable=True),
        sa.Column("claimed_by", sa.String(64), nullable=True),
        sa.Column("claimed_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_send_log"),
        sa.UniqueConstraint("issue", "subscriber_id", name="uq_send_log_issue"),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_send_log_subscriber_id_subscribers",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_send_log_claim", "send_log", ["issue", "state", "next_attempt_at"])
    op.create_index("ix_send_log_sent_at", "send_log", ["sent_at"])
    op.create_table(
        "send_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("issue", sa.String(32), nullable=False),
        sa.Column("list_name", sa.String(100), nullable=False),
        sa.Column("origin", sa.String(40), nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("sent", sa.Integer, nullable=False),
        sa.Column("deferred", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("skipped", sa.Integer, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_send_runs"),
    )
    op.create_index("ix_send_runs_issue", "send_runs", ["issue"])
    op.create_table(
        "locks",
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("owner", sa.String(100), nullable=False),
        sa.Column("acquired_at", UTCDateTime, nullable=False),
        sa.Column("heartbeat_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_locks"),
    )


def downgrade() -> None:
    op.drop_table("locks")
    op.drop_table("send_runs")
    op.drop_table("send_log")
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("bounce_count")
