"""Store the relay's per-recipient idempotency keys in their own namespace.

Revision ID: 0010_relay_recipient_keys
Revises: 0009_webhook_subscriptions
Create Date: 2026-12-06

An SMTP transaction with an ``Idempotency-Key`` stores the key with its
first recipient's message and ``"<key> <recipient>"`` with each other one.
That form could equal a batch key (``"batch " + key``), so it becomes
``"smtp <key> <recipient>"``. Rows of the old form are the only ones with
status 250 whose key contains a space: a message key contains none, and a
batch row has status 202.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_relay_recipient_keys"
down_revision = "0009_webhook_subscriptions"
branch_labels = None
depends_on = None

_PREFIX = "smtp "


def upgrade() -> None:
    op.execute(
        sa.text(
            "UPDATE idempotency_keys SET key = :prefix || key "
            "WHERE status_code = 250 AND key LIKE '% %'"
        ).bindparams(prefix=_PREFIX)
    )


def downgrade() -> None:
    # A row whose old form another row holds already (a batch key that the
    # older release confused with it) is dropped, as that release would.
    op.execute(
        sa.text(
            "DELETE FROM idempotency_keys AS relay_row "
            "WHERE relay_row.status_code = 250 "
            "AND substr(relay_row.key, 1, :length) = :prefix AND EXISTS ("
            "SELECT 1 FROM idempotency_keys AS other_row "
            "WHERE other_row.api_key_id = relay_row.api_key_id "
            "AND other_row.key = substr(relay_row.key, :length + 1))"
        ).bindparams(prefix=_PREFIX, length=len(_PREFIX))
    )
    op.execute(
        sa.text(
            "UPDATE idempotency_keys SET key = substr(key, :length + 1) "
            "WHERE status_code = 250 AND substr(key, 1, :length) = :prefix"
        ).bindparams(prefix=_PREFIX, length=len(_PREFIX))
    )
