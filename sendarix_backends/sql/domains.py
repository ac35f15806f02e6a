"""Sending domains and their DKIM keys in SQL.

The private keys are stored as unencrypted PEM in the ``keys`` document,
so database backups hold them too (see docs/limitations.md).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendarix_backends.dkim import DkimAlgorithm
from sendarix_backends.domains.model import (
    DkimKey,
    DnsRecord,
    DomainStatus,
    RecordProblem,
    SendingDomain,
)
from sendarix_backends.sql.engine import dialect_insert
from sendarix_backends.sql.schema import UtcTimestamp, metadata

if TYPE_CHECKING:
    from sendarix_backends.sql.store import SqlStore

__all__ = ["SqlDomainStore", "sending_domains"]

sending_domains = sa.Table(
    "sending_domains",
    metadata,
    sa.Column("name", sa.Text, primary_key=True),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("keys", sa.JSON, nullable=False),
    sa.Column("missing", sa.JSON, nullable=False),
    sa.Column("created_at", UtcTimestamp, nullable=False),
    sa.Column("checked_at", UtcTimestamp, nullable=True),
    sa.Column("verified_at", UtcTimestamp, nullable=True),
)


class SqlDomainStore:
    """``DomainStore`` on the database of a ``SqlStore``."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def add_domain(self, domain: SendingDomain) -> bool:
        return await self._store.run_transaction(
            "add_domain", _add_domain, domain, write=True
        )

    async def get_domain(self, name: str) -> SendingDomain | None:
        return await self._store.run_transaction(
            "get_domain", _get_domain, name, write=False
        )

    async def list_domains(self) -> list[SendingDomain]:
        return await self._store.run_transaction(
            "list_domains", _list_domains, write=False
        )

    async def delete_domain(self, name: str) -> bool:
        return await self._store.run_transaction(
            "delete_domain", _delete_domain, name, write=True
        )

    async def record_check(
        self,
        name: str,
        *,
        status: DomainStatus,
        checked_at: datetime,
        missing: Sequence[RecordProblem],
    ) -> SendingDomain | None:
        return await self._store.run_transaction(
            "record_domain_check",
            _record_check,
            name,
            status,
            checked_at,
            missing,
            write=True,
        )


def _add_domain(connection: Connection, domain: SendingDomain) -> bool:
    statement = (
        dialect_insert(connection, sending_domains)
        .values(_domain_row(domain))
        .on_conflict_do_nothing(index_elements=[sending_domains.c.name])
        .returning(sending_domains.c.name)
    )
    # RETURNING tells whether the row was inserted on both databases, where
    # rowcount after ON CONFLICT is not reliable with psycopg.
    return connection.execute(statement).first() is not None


def _get_domain(connection: Connection, name: str) -> SendingDomain | None:
    statement = sa.select(sending_domains).where(sending_domains.c.name == name)
    row = connection.execute(statement).mappings().first()
    return None if row is None else _domain_from_row(row)


def _list_domains(connection: Connection) -> list[SendingDomain]:
    statement = sa.select(sending_domains).order_by(sending_domains.c.name)
    return [_domain_from_row(row) for row in connection.execute(statement).mappings()]


def _delete_domain(connection: Connection, name: str) -> bool:
    statement = sa.delete(sending_domains).where(sending_domains.c.name == name)
    return connection.execute(statement).rowcount > 0


def _record_check(
    connection: Connection,
    name: str,
    status: DomainStatus,
    checked_at: datetime,
    missing: Sequence[RecordProblem],
) -> SendingDomain | None:
    values: dict[str, Any] = {
        "status": str(status),
        "checked_at": checked_at,
        "missing": [problem.to_dict() for problem in missing],
    }
    if status == DomainStatus.VERIFIED:
        values["verified_at"] = checked_at
    statement = (
        sa.update(sending_domains)
        .where(sending_domains.c.name == name)
        .values(**values)
    )
    connection.execute(statement)
    return _get_domain(connection, name)


def _domain_row(domain: SendingDomain) -> dict[str, Any]:
    return {
        "name": domain.name,
        "status": str(domain.status),
        "keys": [
            {
                "selector": key.selector,
                "algorithm": str(key.algorithm),
                "private_key": key.private_key_pem,
                "public_key": key.public_key,
            }
            for key in domain.keys
        ],
        "missing": [problem.to_dict() for problem in domain.missing],
        "created_at": domain.created_at,
        "checked_at": domain.checked_at,
        "verified_at": domain.verified_at,
    }


def _domain_from_row(row: Mapping[Any, Any]) -> SendingDomain:
    keys = tuple(
        DkimKey(
            selector=item["selector"],
            algorithm=DkimAlgorithm(item["algorithm"]),
            private_key_pem=item["private_key"],
            public_key=item["public_key"],
        )
        for item in row["keys"]
    )
    missing = tuple(
        RecordProblem(
            record=DnsRecord(
                type=item["type"],
                name=item["name"],
                value=item["value"],
                purpose=item["purpose"],
            ),
            problem=item["problem"],
        )
        for item in row["missing"]
    )
    return SendingDomain(
        name=row["name"],
        status=DomainStatus(row["status"]),
        keys=keys,
        missing=missing,
        created_at=row["created_at"],
        checked_at=row["checked_at"],
        verified_at=row["verified_at"],
    )
