"""Routing rules in SQL.

``routing_rules`` keeps one row per rule as JSON documents (see
``sendarix_core.route_requests``). Smarthost passwords are stored in clear
in ``action``, like the DKIM keys of sending domains (docs/limitations.md).
The row with id ``default`` holds only the fields of the default rule that
were changed through the API; the rest comes from the settings.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendarix_backends.routing.store import StoredRule
from sendarix_backends.sql.engine import dialect_insert
from sendarix_backends.sql.schema import JSON_DOCUMENT, UtcTimestamp, metadata
from sendarix_core.routing import DEFAULT_ROUTE_ID

if TYPE_CHECKING:
    from sendarix_backends.sql.store import SqlStore

__all__ = ["SqlRouteStore", "routing_rules"]

routing_rules = sa.Table(
    "routing_rules",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("match", JSON_DOCUMENT, nullable=False),
    sa.Column("action", JSON_DOCUMENT, nullable=False),
    sa.Column("created_at", UtcTimestamp, nullable=False),
    sa.Column("updated_at", UtcTimestamp, nullable=False),
)


class SqlRouteStore:
    """``RouteStore`` on the database of a ``SqlStore``."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def list_rules(self) -> list[StoredRule]:
        return await self._store.run_transaction(
            "list_routes", _list_rules, write=False
        )

    async def insert_rule(self, rule: StoredRule, position: int | None) -> None:
        await self._store.run_transaction(
            "create_route", _insert_rule, rule, position, write=True
        )

    async def update_rule(
        self, rule_id: str, change: Callable[[StoredRule | None], StoredRule]
    ) -> StoredRule | None:
        return await self._store.run_transaction(
            "update_route", _update_rule, rule_id, change, write=True
        )

    async def delete_rule(self, rule_id: str) -> bool:
        return await self._store.run_transaction(
            "delete_route", _delete_rule, rule_id, write=True
        )

    async def reorder(self, rule_ids: Sequence[str], now: datetime) -> bool:
        return await self._store.run_transaction(
            "reorder_routes", _reorder, rule_ids, now, write=True
        )


def _list_rules(connection: Connection) -> list[StoredRule]:
    statement = sa.select(routing_rules).order_by(
        routing_rules.c.position, routing_rules.c.id
    )
    return [_from_row(row) for row in connection.execute(statement).mappings()]


def _insert_rule(
    connection: Connection, rule: StoredRule, position: int | None
) -> None:
    ids = (
        sa.select(routing_rules.c.id)
        .where(routing_rules.c.id != DEFAULT_ROUTE_ID)
        .order_by(routing_rules.c.position, routing_rules.c.id)
    )
    ordered = list(connection.scalars(ids))
    index = len(ordered) if position is None else min(position, len(ordered))
    ordered.insert(index, rule.id)
    connection.execute(sa.insert(routing_rules).values(_row(rule, index)))
    _renumber(connection, ordered)


def _update_rule(
    connection: Connection,
    rule_id: str,
    change: Callable[[StoredRule | None], StoredRule],
) -> StoredRule | None:
    # The row lock (PostgreSQL) or the write transaction (SQLite) keeps
    # another change from reading the rule before this one is written.
    row = (
        connection.execute(
            sa.select(routing_rules)
            .where(routing_rules.c.id == rule_id)
            .with_for_update()
        )
        .mappings()
        .one_or_none()
    )
    if row is None and rule_id != DEFAULT_ROUTE_ID:
        return None
    rule = change(None if row is None else _from_row(row))
    if row is None:
        # The default rule's row is created by its first change. Two first
        # changes at once on PostgreSQL both find no row. The later insert
        # then waits for the other and does nothing, so this change is
        # applied again on top of the row the other created.
        inserted = connection.execute(
            dialect_insert(connection, routing_rules)
            .values(_row(rule, -1))
            .on_conflict_do_nothing(index_elements=[routing_rules.c.id])
        )
        if inserted.rowcount:
            return rule
        return _update_rule(connection, rule_id, change)
    values = _row(rule, 0)
    del values["id"], values["position"], values["created_at"]
    connection.execute(
        sa.update(routing_rules).where(routing_rules.c.id == rule_id).values(**values)
    )
    return rule


def _delete_rule(connection: Connection, rule_id: str) -> bool:
    result = connection.execute(
        sa.delete(routing_rules).where(routing_rules.c.id == rule_id)
    )
    return bool(result.rowcount)


def _reorder(connection: Connection, rule_ids: Sequence[str], now: datetime) -> bool:
    """Number the rules in the given order; return False unless ``rule_ids``
    lists every rule but the default exactly once."""
    stored = set(
        connection.scalars(
            sa.select(routing_rules.c.id).where(routing_rules.c.id != DEFAULT_ROUTE_ID)
        )
    )
    if stored != set(rule_ids) or len(rule_ids) != len(stored):
        return False
    _renumber(connection, rule_ids, updated_at=now)
    return True


def _renumber(
    connection: Connection,
    rule_ids: Sequence[str],
    *,
    updated_at: datetime | None = None,
) -> None:
    values: dict[str, Any] = {"position": sa.bindparam("new_position")}
    if updated_at is not None:
        values["updated_at"] = updated_at
    statement = (
        sa.update(routing_rules)
        .where(routing_rules.c.id == sa.bindparam("rule_id"))
        .values(**values)
    )
    params = [
        {"rule_id": rule_id, "new_position": index}
        for index, rule_id in enumerate(rule_ids)
    ]
    if params:
        connection.execute(statement, params)


def _row(rule: StoredRule, position: int) -> dict[str, Any]:
    return {
        "id": rule.id,
        "position": position,
        "description": rule.description,
        "match": dict(rule.match),
        "action": dict(rule.action),
        "created_at": rule.created_at,
        "updated_at": rule.updated_at,
    }


def _from_row(row: Mapping[Any, Any]) -> StoredRule:
    return StoredRule(
        id=row["id"],
        description=row["description"],
        match=row["match"],
        action=row["action"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
