"""Confirmation mails that could not go out at once, kept to be retried.

Revision ID: 0005_mail_outbox
Revises: 0004_claim_index
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from newsletter.storage.db import UTCDateTime

revision = "0005_mail_outbox"
down_revision = "0004_claim_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mail_outbox",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column(
            "subscriber_id",
            sa.Integer,
            sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("created_at", UTCDateTime, nullable=False),
        sa.Column("next_attempt_at", UTCDateTime, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_error", sa.String(500), nullable=False),
        sa.UniqueConstraint("kind", "subscriber_id", name="uq_mail_outbox_kind_subscriber"),
    )


def downgrade() -> None:
    op.drop_table("mail_outbox")
