"""Several senders on one send: a heartbeat row per sender, and shared rate-limit buckets.

Revision ID: 0008_senders
Revises: 0007_returns
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from newsletter.storage.db import UTCDateTime

revision = "0008_senders"
down_revision = "0007_returns"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "senders",
        sa.Column("owner", sa.String(100), primary_key=True),
        sa.Column("issue", sa.String(32), nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("beat_at", UTCDateTime, nullable=False),
        sa.Column("sent", sa.Integer, nullable=False),
        sa.Column("rate", sa.Float, nullable=False),
    )
    op.create_table(
        "rate_buckets",
        sa.Column("name", sa.String(100), primary_key=True),
        sa.Column("tokens", sa.Float, nullable=False),
        sa.Column("stamp", sa.Float, nullable=False),
        sa.Column("factor", sa.Float, nullable=False),
        sa.Column("slowed_at", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rate_buckets")
    op.drop_table("senders")
