"""Store batch idempotency keys apart from message keys.

Revision ID: 0007_batch_key_namespace
Revises: 0006_webhook_previous_secrets
Create Date: 2026-12-05

Before this revision a batch's ``Idempotency-Key`` and the message keys of its
items shared one namespace, so an item carrying the batch's key conflicted
with the batch. Batch keys are now stored as ``"batch " + key``. A valid key
contains no space, so the two can't collide. Rows stored before are batch
rows when their response has a top-level ``data`` member, which a message's
``202`` response never has.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_batch_key_namespace"
down_revision = "0006_webhook_previous_secrets"
branch_labels = None
depends_on = None

_PREFIX = "batch "


def _is_batch_row() -> str:
    if op.get_bind().dialect.name == "postgresql":
        return "response ? 'data'"
    return "json_type(response, '$.data') IS NOT NULL"


def upgrade() -> None:
    op.execute(
        sa.text(
            f"UPDATE idempotency_keys SET key = :prefix || key "  # noqa: S608
            f"WHERE {_is_batch_row()}"
        ).bindparams(prefix=_PREFIX)
    )


def downgrade() -> None:
    # Where a message key equals a batch key, the message key is kept, because
    # the older release can store only one of them.
    op.execute(
        sa.text(
            "DELETE FROM idempotency_keys AS batch_row "
            "WHERE substr(batch_row.key, 1, :length) = :prefix AND EXISTS ("
            "SELECT 1 FROM idempotency_keys AS message_row "
            "WHERE message_row.api_key_id = batch_row.api_key_id "
            "AND message_row.key = substr(batch_row.key, :length + 1))"
        ).bindparams(prefix=_PREFIX, length=len(_PREFIX))
    )
    op.execute(
        sa.text(
            "UPDATE idempotency_keys SET key = substr(key, :length + 1) "
            "WHERE substr(key, 1, :length) = :prefix"
        ).bindparams(prefix=_PREFIX, length=len(_PREFIX))
    )
