"""Secrets Sendarix generates for itself, such as the unsubscribe link key.

A secret is created by the first process that needs it and read by every
other, so all processes on one database sign and check the same way.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendarix_backends.sql.engine import dialect_insert
from sendarix_backends.sql.schema import UtcTimestamp, metadata

if TYPE_CHECKING:
    from sendarix_backends.sql.store import SqlStore

__all__ = ["SqlSecretStore", "instance_secrets"]

instance_secrets = sa.Table(
    "instance_secrets",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("value", sa.LargeBinary, nullable=False),
    sa.Column("created_at", UtcTimestamp, nullable=False),
)


class SqlSecretStore:
    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def ensure_secret(self, name: str, candidate: bytes, now: datetime) -> bytes:
        """Return the stored secret ``name``, storing ``candidate`` if none is."""
        return await self._store.run_transaction(
            "ensure_secret", _ensure_secret, name, candidate, now, write=True
        )


def _ensure_secret(
    connection: Connection, name: str, candidate: bytes, now: datetime
) -> bytes:
    insert = (
        dialect_insert(connection, instance_secrets)
        .values(name=name, value=candidate, created_at=now)
        .on_conflict_do_nothing(index_elements=[instance_secrets.c.name])
    )
    connection.execute(insert)
    statement = sa.select(instance_secrets.c.value).where(
        instance_secrets.c.name == name
    )
    return bytes(connection.execute(statement).scalar_one())
