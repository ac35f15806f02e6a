"""Add routing rules, destination pacing state and queue control.

Revision ID: 0004_delivery_control
Revises: 0003_content
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0004_delivery_control"
down_revision = "0003_content"
branch_labels = None
depends_on = None

# Timestamps are integer microseconds since the Unix epoch, UTC.
TIMESTAMP = sa.BigInteger
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    create_routing_rules()
    create_pacing()
    create_queue_control()


def create_routing_rules() -> None:
    # ``action`` holds smarthost passwords in clear.
    op.create_table(
        "routing_rules",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("match", JSON_DOCUMENT, nullable=False),
        sa.Column("action", JSON_DOCUMENT, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_routing_rules"),
    )


def create_pacing() -> None:
    op.create_table(
        "site_pacing",
        sa.Column("site", sa.Text, nullable=False),
        sa.Column("tokens", sa.Float, nullable=True),
        sa.Column("refilled_at", TIMESTAMP, nullable=True),
        sa.Column("connection_tokens", sa.Float, nullable=True),
        sa.Column("connections_refilled_at", TIMESTAMP, nullable=True),
        sa.Column("factor", sa.Float, nullable=False),
        sa.Column("factor_changed_at", TIMESTAMP, nullable=True),
        sa.Column("throttled_count", sa.Integer, nullable=False),
        sa.Column("last_throttled_at", TIMESTAMP, nullable=True),
        sa.Column("last_throttle_reply", sa.Text, nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("site", name="pk_site_pacing"),
    )
    op.create_index("ix_site_pacing_updated", "site_pacing", ["updated_at"])
    op.create_table(
        "site_leases",
        sa.Column("site", sa.Text, nullable=False),
        sa.Column("worker_id", sa.Text, nullable=False),
        sa.Column("slots", sa.Integer, nullable=False),
        sa.Column("expires_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("site", "worker_id", name="pk_site_leases"),
    )
    op.create_index("ix_site_leases_worker", "site_leases", ["worker_id"])


def create_queue_control() -> None:
    op.create_table(
        "queue_pauses",
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("kind", "value", name="pk_queue_pauses"),
    )
    op.create_table(
        "parked_messages",
        sa.Column("message_id", sa.Text, nullable=False),
        sa.Column("site", sa.Text, nullable=False),
        sa.Column("parked_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("message_id", name="pk_parked_messages"),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name="fk_parked_messages_message_id_messages",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_parked_messages_site", "parked_messages", ["site"])
    op.create_table(
        "site_domains",
        sa.Column("domain", sa.Text, nullable=False),
        sa.Column("site", sa.Text, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("domain", name="pk_site_domains"),
    )
    op.create_index("ix_site_domains_site", "site_domains", ["site"])


def downgrade() -> None:
    for table in (
        "site_domains",
        "parked_messages",
        "queue_pauses",
        "site_leases",
        "site_pacing",
        "routing_rules",
    ):
        op.drop_table(table)
