"""Schedules: the outcome of each scheduled run.

Revision ID: 0003_schedules
Revises: 0002_delivery
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from newsletter.storage.db import UTCDateTime

revision = "0003_schedules"
down_revision = "0002_delivery"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schedule_runs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("schedule", sa.String(60), nullable=False),
        sa.Column("issue", sa.String(32), nullable=False),
        sa.Column("started_at", UTCDateTime, nullable=False),
        sa.Column("finished_at", UTCDateTime, nullable=True),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("sent", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("skipped", sa.Integer, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_schedule_runs"),
    )
    op.create_index("ix_schedule_runs_schedule", "schedule_runs", ["schedule"])


def downgrade() -> None:
    op.drop_table("schedule_runs")
