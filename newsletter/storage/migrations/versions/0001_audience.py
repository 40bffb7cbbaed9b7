"""Audience: subscribers, lists, memberships and the audit trail of events.

Revision ID: 0001_audience
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from newsletter.storage.db import UTCDateTime

revision = "0001_audience"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "subscribers",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("email_key", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("interests", sa.String(1000), nullable=False),
        sa.Column("attributes", sa.JSON, nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("updated_at", UTCDateTime, nullable=False),
        sa.Column("unsubscribed_at", UTCDateTime, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_subscribers"),
        sa.UniqueConstraint("email_key", name="uq_subscribers_email_key"),
    )
    op.create_index("ix_subscribers_status_interests", "subscribers", ["status", "interests"])
    op.create_table(
        "lists",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_lists"),
        sa.UniqueConstraint("name", name="uq_lists_name"),
    )
    op.create_table(
        "memberships",
        sa.Column("list_id", sa.Integer, nullable=False),
        sa.Column("subscriber_id", sa.Integer, nullable=False),
        sa.Column("added_at", UTCDateTime, nullable=False),
        sa.PrimaryKeyConstraint("list_id", "subscriber_id", name="pk_memberships"),
        sa.ForeignKeyConstraint(
            ["list_id"], ["lists.id"], name="fk_memberships_list_id_lists", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_memberships_subscriber_id_subscribers",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_memberships_subscriber", "memberships", ["subscriber_id"])
    op.create_table(
        "events",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("subscriber_id", sa.Integer, nullable=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_events"),
        sa.ForeignKeyConstraint(
            ["subscriber_id"],
            ["subscribers.id"],
            name="fk_events_subscriber_id_subscribers",
            ondelete="SET NULL",
        ),
    )
    op.create_index("ix_events_subscriber", "events", ["subscriber_id"])


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("memberships")
    op.drop_table("lists")
    op.drop_table("subscribers")
