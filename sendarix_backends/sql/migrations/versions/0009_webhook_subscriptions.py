"""Keep the earlier event types and ``enabled`` of webhook endpoints.

Revision ID: 0009_webhook_subscriptions
Revises: 0008_webhook_replay_schedule
Create Date: 2026-12-06

``earlier_subscriptions`` is a JSON list of ``{"until", "events",
"enabled"}``, oldest first, with ``until`` in microseconds since the epoch
like every timestamp column. Event processing uses it to give an event the
deliveries of the subscriptions in effect when the event was created.
Endpoints start with an empty list: their events not yet processed get the
current subscription, as before this revision.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0009_webhook_subscriptions"
down_revision = "0008_webhook_replay_schedule"
branch_labels = None
depends_on = None

JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.add_column(
            sa.Column(
                "earlier_subscriptions",
                JSON_DOCUMENT,
                nullable=False,
                server_default=sa.text("'[]'"),
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.drop_column("earlier_subscriptions")
