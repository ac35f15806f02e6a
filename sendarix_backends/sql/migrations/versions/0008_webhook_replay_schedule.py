"""Restart the retry schedule of a replayed webhook delivery.

Revision ID: 0008_webhook_replay_schedule
Revises: 0007_batch_key_namespace
Create Date: 2026-12-06

``attempts_before_replay`` is the number of attempts a delivery had when it
was last replayed. The retry delay counts only the attempts after it, while
``attempts`` keeps numbering every attempt. Deliveries stored before start
at 0, as before this revision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_webhook_replay_schedule"
down_revision = "0007_batch_key_namespace"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.add_column(
            sa.Column(
                "attempts_before_replay",
                sa.Integer,
                nullable=False,
                server_default=sa.text("0"),
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_column("attempts_before_replay")
