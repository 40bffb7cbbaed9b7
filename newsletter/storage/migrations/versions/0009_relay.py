"""Which relay sent each message (several relays used together).

Revision ID: 0009_relay
Revises: 0008_senders
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_relay"
down_revision = "0008_senders"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("send_log") as batch:
        batch.add_column(sa.Column("relay", sa.String(40), nullable=False, server_default=""))


def downgrade() -> None:
    with op.batch_alter_table("send_log") as batch:
        batch.drop_column("relay")
