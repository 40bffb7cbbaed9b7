"""Returned mail: one row per (returned message, address), bounces, complaints, unsubscribes.

Revision ID: 0007_returns
Revises: 0006_confirmation_sent
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from newsletter.storage.db import UTCDateTime

revision = "0007_returns"
down_revision = "0006_confirmation_sent"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "returns",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("source_key", sa.String(64), nullable=False),
        sa.Column("message_id", sa.String(250), nullable=False),
        sa.Column(
            "subscriber_id",
            sa.Integer,
            sa.ForeignKey("subscribers.id", ondelete="SET NULL"),
            nullable=True,
        ),
        sa.Column("address", sa.String(320), nullable=False),
        sa.Column("domain", sa.String(255), nullable=False),
        sa.Column("issue", sa.String(32), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("diagnostic", sa.String(500), nullable=False),
        sa.UniqueConstraint("source_key", "address", name="uq_returns_source_address"),
    )
    op.create_index("ix_returns_subscriber", "returns", ["subscriber_id", "issue"])
    op.create_index("ix_returns_issue_kind", "returns", ["issue", "kind"])


def downgrade() -> None:
    op.drop_table("returns")
