"""Create messages, events, suppressions, idempotency keys and API keys.

Revision ID: 0001
Revises:
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Timestamps are integer microseconds since the Unix epoch, UTC.
TIMESTAMP = sa.BigInteger
JSON_DOCUMENT = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
SEQUENCE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    create_messages()
    create_events()
    create_suppressions()
    create_idempotency_keys()
    create_api_keys()
    create_rate_limit_counters()


def create_messages() -> None:
    op.create_table(
        "messages",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("priority", sa.SmallInteger, nullable=False),
        sa.Column("sender_name", sa.Text, nullable=False),
        sa.Column("sender_local_part", sa.Text, nullable=False),
        sa.Column("sender_domain", sa.Text, nullable=False),
        sa.Column("recipient_name", sa.Text, nullable=False),
        sa.Column("recipient_local_part", sa.Text, nullable=False),
        sa.Column("recipient_domain", sa.Text, nullable=False),
        sa.Column("recipient", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("content", sa.JSON, nullable=False),
        sa.Column("metadata", JSON_DOCUMENT, nullable=False),
        sa.Column("tags", JSON_DOCUMENT, nullable=False),
        sa.Column("api_key_id", sa.Text, nullable=True),
        sa.Column("test_mode", sa.Boolean, nullable=False),
        sa.Column("message_id_header", sa.Text, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("scheduled_at", TIMESTAMP, nullable=True),
        sa.Column("expires_at", TIMESTAMP, nullable=True),
        sa.Column("next_attempt_at", TIMESTAMP, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("last_reply_code", sa.Integer, nullable=True),
        sa.Column("last_enhanced_code", sa.Text, nullable=True),
        sa.Column("last_reply_text", sa.Text, nullable=True),
        sa.Column("last_mx_host", sa.Text, nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("due_at", TIMESTAMP, nullable=True),
        sa.Column("lease_owner", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_messages"),
    )
    # Workers claim by (priority, due_at, id); terminal messages have no
    # due_at and drop out of the index.
    op.create_index(
        "ix_messages_due",
        "messages",
        ["priority", "due_at", "id"],
        postgresql_where=sa.text("due_at IS NOT NULL"),
        sqlite_where=sa.text("due_at IS NOT NULL"),
    )
    op.create_index("ix_messages_recipient", "messages", ["recipient", "id"])


def create_events() -> None:
    op.create_table(
        "events",
        sa.Column("sequence", SEQUENCE, autoincrement=True, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("message_id", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("recipient", sa.Text, nullable=False),
        sa.Column("data", JSON_DOCUMENT, nullable=False),
        sa.PrimaryKeyConstraint("sequence", name="pk_events"),
        sa.UniqueConstraint("event_id", name="uq_events_event_id"),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name="fk_events_message_id_messages",
            ondelete="CASCADE",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_events_message", "events", ["message_id", "sequence"])


def create_suppressions() -> None:
    op.create_table(
        "suppressions",
        sa.Column("recipient", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("message_id", sa.Text, nullable=True),
        sa.PrimaryKeyConstraint("recipient", name="pk_suppressions"),
    )
    op.create_index(
        "ix_suppressions_created", "suppressions", ["created_at", "recipient"]
    )


def create_idempotency_keys() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("api_key_id", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.Text, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=False),
        sa.Column("response", JSON_DOCUMENT, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("api_key_id", "key", name="pk_idempotency_keys"),
    )


def create_api_keys() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("key_hash", sa.Text, nullable=False),
        sa.Column("prefix", sa.Text, nullable=False),
        sa.Column("scopes", JSON_DOCUMENT, nullable=False),
        sa.Column("environment", sa.Text, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        sa.Column("expires_at", TIMESTAMP, nullable=True),
        sa.Column("last_used_at", TIMESTAMP, nullable=True),
        sa.Column("rate_limit", sa.Integer, nullable=False),
        sa.Column("sender_domains", JSON_DOCUMENT, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )


def create_rate_limit_counters() -> None:
    op.create_table(
        "rate_limit_counters",
        sa.Column("api_key_id", sa.Text, nullable=False),
        sa.Column("window_start", sa.BigInteger, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint(
            "api_key_id", "window_start", name="pk_rate_limit_counters"
        ),
    )


def downgrade() -> None:
    for table in (
        "rate_limit_counters",
        "api_keys",
        "idempotency_keys",
        "suppressions",
        "events",
        "messages",
    ):
        op.drop_table(table)
