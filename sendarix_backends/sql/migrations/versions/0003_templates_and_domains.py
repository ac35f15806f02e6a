"""Add templates and their versions, sending domains and instance secrets.

Revision ID: 0003_content
Revises: 0002_events
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_content"
down_revision = "0002_events"
branch_labels = None
depends_on = None

# Timestamps are integer microseconds since the Unix epoch, UTC.
TIMESTAMP = sa.BigInteger


def upgrade() -> None:
    create_templates()
    create_sending_domains()
    create_instance_secrets()


def create_templates() -> None:
    op.create_table(
        "templates",
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("published_version", sa.Integer, nullable=False),
        sa.Column("latest_version", sa.Integer, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_templates"),
    )
    op.create_table(
        "template_versions",
        sa.Column("template_name", sa.Text, nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("subject", sa.Text, nullable=True),
        sa.Column("html", sa.Text, nullable=True),
        sa.Column("text", sa.Text, nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("published_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint(
            "template_name", "version", name="pk_template_versions"
        ),
        sa.ForeignKeyConstraint(
            ["template_name"],
            ["templates.name"],
            name="fk_template_versions_template_name_templates",
            ondelete="CASCADE",
        ),
    )


def create_sending_domains() -> None:
    # ``keys`` holds the DKIM private keys as unencrypted PEM.
    op.create_table(
        "sending_domains",
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("keys", sa.JSON, nullable=False),
        sa.Column("missing", sa.JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("checked_at", TIMESTAMP, nullable=True),
        sa.Column("verified_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("name", name="pk_sending_domains"),
    )


def create_instance_secrets() -> None:
    op.create_table(
        "instance_secrets",
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("value", sa.LargeBinary, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_instance_secrets"),
    )


def downgrade() -> None:
    for table in (
        "instance_secrets",
        "sending_domains",
        "template_versions",
        "templates",
    ):
        op.drop_table(table)
