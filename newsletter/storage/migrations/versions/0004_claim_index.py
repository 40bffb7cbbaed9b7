"""An index that lets a sender claim the next queued rows without scanning the sent ones.

Revision ID: 0004_claim_index
Revises: 0003_schedules
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0004_claim_index"
down_revision = "0003_schedules"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_send_log_queue", "send_log", ["issue", "state", "id"])


def downgrade() -> None:
    op.drop_index("ix_send_log_queue", "send_log")
