"""Keep every rotated webhook secret that still signs, not only the last.

Revision ID: 0006_webhook_previous_secrets
Revises: 0005_analytics_test_mode
Create Date: 2026-12-05

``previous_secrets`` is a JSON list of ``{"secret", "expires_at"}``, newest
first, with ``expires_at`` in microseconds since the epoch like every
timestamp column. The secret of ``previous_secret`` moves into it with its
expiry.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006_webhook_previous_secrets"
down_revision = "0005_analytics_test_mode"
branch_labels = None
depends_on = None

JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
# Timestamps are integer microseconds since the epoch (UtcTimestamp).
TIMESTAMP = sa.BigInteger

_endpoints = sa.table(
    "webhook_endpoints",
    sa.column("id", sa.Text),
    sa.column("previous_secret", sa.Text),
    sa.column("previous_secret_expires_at", TIMESTAMP),
    sa.column("previous_secrets", JSON_DOCUMENT),
)


def upgrade() -> None:
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.add_column(
            sa.Column(
                "previous_secrets",
                JSON_DOCUMENT,
                nullable=False,
                server_default=sa.text("'[]'"),
            )
        )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(
            _endpoints.c.id,
            _endpoints.c.previous_secret,
            _endpoints.c.previous_secret_expires_at,
        ).where(
            _endpoints.c.previous_secret.is_not(None),
            _endpoints.c.previous_secret_expires_at.is_not(None),
        )
    ).all()
    for endpoint_id, secret, expires_at in rows:
        connection.execute(
            sa.update(_endpoints)
            .where(_endpoints.c.id == endpoint_id)
            .values(previous_secrets=[{"secret": secret, "expires_at": expires_at}])
        )
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.drop_column("previous_secret")
        batch.drop_column("previous_secret_expires_at")


def downgrade() -> None:
    # Only the newest previous secret survives a downgrade.
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.add_column(sa.Column("previous_secret", sa.Text, nullable=True))
        batch.add_column(
            sa.Column("previous_secret_expires_at", TIMESTAMP, nullable=True)
        )
    connection = op.get_bind()
    rows = connection.execute(
        sa.select(_endpoints.c.id, _endpoints.c.previous_secrets)
    ).all()
    for endpoint_id, previous in rows:
        if not previous:
            continue
        connection.execute(
            sa.update(_endpoints)
            .where(_endpoints.c.id == endpoint_id)
            .values(
                previous_secret=previous[0]["secret"],
                previous_secret_expires_at=previous[0]["expires_at"],
            )
        )
    with op.batch_alter_table("webhook_endpoints") as batch:
        batch.drop_column("previous_secrets")
