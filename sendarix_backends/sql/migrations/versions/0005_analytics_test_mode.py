"""Count the analytics of test messages apart from live ones.

Revision ID: 0005_analytics_test_mode
Revises: 0004_delivery_control
Create Date: 2026-12-04

Rows counted before this revision get ``test_mode`` false, so they keep
counting the events of test messages as live traffic.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_analytics_test_mode"
down_revision = "0004_delivery_control"
branch_labels = None
depends_on = None

# Each rollup table with the last column of its primary key.
_ROLLUPS = (("event_counts", "outcome"), ("delivery_latency", "bucket"))


def upgrade() -> None:
    for table, last_key in _ROLLUPS:
        # SQLite can't change a primary key in place, so batch mode copies
        # the table there; PostgreSQL alters it.
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column(
                    "test_mode",
                    sa.Boolean,
                    nullable=False,
                    server_default=sa.false(),
                )
            )
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.create_primary_key(
                f"pk_{table}", ["dimension", "hour", "value", last_key, "test_mode"]
            )


def downgrade() -> None:
    # The counts of test messages are dropped rather than added to live ones.
    for table, last_key in _ROLLUPS:
        op.execute(sa.text(f"DELETE FROM {table} WHERE test_mode"))  # noqa: S608
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"pk_{table}", type_="primary")
            batch.drop_column("test_mode")
            batch.create_primary_key(
                f"pk_{table}", ["dimension", "hour", "value", last_key]
            )
