"""Add event search indexes, webhook endpoints and deliveries, analytics rollups.

``events.message_id`` becomes nullable for events about a recipient, and
``events.processed_at`` marks the events already fanned out to webhooks and
counted in the rollups. Existing events start unprocessed, so the first run
counts them into the rollups.

Revision ID: 0002_events
Revises: 0001
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0002_events"
down_revision = "0001"
branch_labels = None
depends_on = None

# Timestamps are integer microseconds since the Unix epoch, UTC.
TIMESTAMP = sa.BigInteger
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
SEQUENCE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    alter_events()
    index_message_documents()
    create_webhook_endpoints()
    create_webhook_deliveries()
    create_webhook_attempts()
    create_rollups()


def alter_events() -> None:
    # SQLite can't alter a column, so batch mode copies the table; the
    # AUTOINCREMENT keyword must be restated for the copy.
    with op.batch_alter_table(
        "events", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.alter_column("message_id", existing_type=sa.Text, nullable=True)
        batch.add_column(sa.Column("processed_at", TIMESTAMP, nullable=True))
    op.create_index("ix_events_type", "events", ["type", "sequence"])
    op.create_index(
        "ix_events_recipient", "events", [sa.text("lower(recipient)"), "sequence"]
    )
    op.create_index("ix_events_created", "events", ["created_at"])
    op.create_index(
        "ix_events_unprocessed",
        "events",
        ["sequence"],
        postgresql_where=sa.text("processed_at IS NULL"),
        sqlite_where=sa.text("processed_at IS NULL"),
    )


def index_message_documents() -> None:
    # Inverted indexes for tag and metadata searches on PostgreSQL; the
    # SQLite twins stay empty, see sendarix_backends.sql.events.
    for column in ("tags", "metadata"):
        op.create_index(
            f"ix_messages_{column}",
            "messages",
            [column],
            postgresql_using="gin",
            postgresql_ops={column: "jsonb_path_ops"},
            sqlite_where=sa.text("0"),
        )


def create_webhook_endpoints() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("event_types", JSON_DOCUMENT, nullable=True),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column("previous_secret", sa.Text, nullable=True),
        sa.Column("previous_secret_expires_at", TIMESTAMP, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("failing_since", TIMESTAMP, nullable=True),
        sa.Column("disabled_at", TIMESTAMP, nullable=True),
        sa.Column("disabled_reason", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_endpoints"),
    )


def create_webhook_deliveries() -> None:
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("endpoint_id", sa.Text, nullable=False),
        sa.Column("event_sequence", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("message_id", sa.Text, nullable=True),
        sa.Column("event_created_at", TIMESTAMP, nullable=False),
        sa.Column("payload", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("retry_until", TIMESTAMP, nullable=False),
        sa.Column("due_at", TIMESTAMP, nullable=True),
        sa.Column("lease_owner", sa.Text, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.UniqueConstraint(
            "endpoint_id",
            "event_sequence",
            name="uq_webhook_deliveries_endpoint_id",
        ),
        sa.ForeignKeyConstraint(
            ["endpoint_id"],
            ["webhook_endpoints.id"],
            name="fk_webhook_deliveries_endpoint_id_webhook_endpoints",
            ondelete="CASCADE",
        ),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["due_at"],
        postgresql_where=sa.text("due_at IS NOT NULL"),
        sqlite_where=sa.text("due_at IS NOT NULL"),
    )
    op.create_index(
        "ix_webhook_deliveries_pending",
        "webhook_deliveries",
        ["endpoint_id", "message_id", "event_sequence"],
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    )
    op.create_index(
        "ix_webhook_deliveries_event_time",
        "webhook_deliveries",
        ["endpoint_id", "event_created_at"],
    )
    op.create_index(
        "ix_webhook_deliveries_created", "webhook_deliveries", ["created_at"]
    )


def create_webhook_attempts() -> None:
    op.create_table(
        "webhook_attempts",
        sa.Column("sequence", SEQUENCE, autoincrement=True, nullable=False),
        sa.Column("delivery_id", sa.Text, nullable=False),
        sa.Column("endpoint_id", sa.Text, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("attempted_at", TIMESTAMP, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("latency_ms", sa.Integer, nullable=False),
        sa.Column("response", sa.Text, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("sequence", name="pk_webhook_attempts"),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["webhook_deliveries.id"],
            name="fk_webhook_attempts_delivery_id_webhook_deliveries",
            ondelete="CASCADE",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_webhook_attempts_endpoint", "webhook_attempts", ["endpoint_id", "sequence"]
    )
    op.create_index("ix_webhook_attempts_delivery", "webhook_attempts", ["delivery_id"])


def create_rollups() -> None:
    op.create_table(
        "event_counts",
        sa.Column("dimension", sa.Text, nullable=False),
        sa.Column("hour", TIMESTAMP, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint(
            "dimension", "hour", "value", "outcome", name="pk_event_counts"
        ),
    )
    op.create_table(
        "delivery_latency",
        sa.Column("dimension", sa.Text, nullable=False),
        sa.Column("hour", TIMESTAMP, nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("bucket", sa.Integer, nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint(
            "dimension", "hour", "value", "bucket", name="pk_delivery_latency"
        ),
    )


def downgrade() -> None:
    for table in (
        "delivery_latency",
        "event_counts",
        "webhook_attempts",
        "webhook_deliveries",
        "webhook_endpoints",
    ):
        op.drop_table(table)
    op.drop_index("ix_messages_metadata", "messages")
    op.drop_index("ix_messages_tags", "messages")
    for index in (
        "ix_events_unprocessed",
        "ix_events_created",
        "ix_events_recipient",
        "ix_events_type",
    ):
        op.drop_index(index, "events")
    with op.batch_alter_table(
        "events", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.drop_column("processed_at")
        batch.alter_column("message_id", existing_type=sa.Text, nullable=False)
