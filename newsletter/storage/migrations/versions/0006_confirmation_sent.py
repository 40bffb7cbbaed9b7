"""When the last confirmation mail went to a subscriber: at most one per address and day.

Revision ID: 0006_confirmation_sent
Revises: 0005_mail_outbox
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from newsletter.storage.db import UTCDateTime

revision = "0006_confirmation_sent"
down_revision = "0005_mail_outbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("confirmation_sent_at", UTCDateTime, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("confirmation_sent_at")
