"""Where routing rules are kept: the protocol and an in-memory version."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import attrs

from sendarix_core.routing import DEFAULT_ROUTE_ID

__all__ = ["MemoryRouteStore", "RouteStore", "StoredRule"]


@attrs.frozen(kw_only=True)
class StoredRule:
    """A rule as stored: ``match`` and ``action`` are documents in the shape
    of ``sendarix_core.route_requests``, the smarthost password in clear."""

    id: str
    description: str
    match: Mapping[str, Any]
    action: Mapping[str, Any]
    created_at: datetime
    updated_at: datetime


class RouteStore(Protocol):
    async def list_rules(self) -> list[StoredRule]:
        """Return every rule in evaluation order; the default's row, if any,
        may come anywhere."""
        ...

    async def insert_rule(self, rule: StoredRule, position: int | None) -> None:
        """Insert at ``position`` (0 is first); ``None`` appends."""
        ...

    async def update_rule(
        self, rule_id: str, change: Callable[[StoredRule | None], StoredRule]
    ) -> StoredRule | None:
        """Replace a rule by what ``change`` makes of it; return the new rule.

        ``change`` gets the stored rule, or None for a default rule that has
        no row yet, whose row the change then creates. It runs while no
        other change to the rule can, so concurrent changes of different
        fields all take effect. Returns None when the rule does not exist.
        """
        ...

    async def delete_rule(self, rule_id: str) -> bool: ...

    async def reorder(self, rule_ids: Sequence[str], now: datetime) -> bool:
        """Put the rules in this order; return False unless ``rule_ids``
        lists every rule but the default exactly once."""
        ...


class MemoryRouteStore:
    """Rules in a list, for stores other than the SQL backend."""

    def __init__(self) -> None:
        self._rules: list[StoredRule] = []
        self._default: StoredRule | None = None

    async def list_rules(self) -> list[StoredRule]:
        default = [self._default] if self._default is not None else []
        return [*self._rules, *default]

    async def insert_rule(self, rule: StoredRule, position: int | None) -> None:
        index = len(self._rules) if position is None else position
        self._rules.insert(index, rule)

    async def update_rule(
        self, rule_id: str, change: Callable[[StoredRule | None], StoredRule]
    ) -> StoredRule | None:
        if rule_id == DEFAULT_ROUTE_ID:
            self._default = change(self._default)
            return self._default
        for index, stored in enumerate(self._rules):
            if stored.id == rule_id:
                self._rules[index] = change(stored)
                return self._rules[index]
        return None

    async def delete_rule(self, rule_id: str) -> bool:
        kept = [rule for rule in self._rules if rule.id != rule_id]
        deleted = len(kept) != len(self._rules)
        self._rules = kept
        return deleted

    async def reorder(self, rule_ids: Sequence[str], now: datetime) -> bool:
        by_id = {rule.id: rule for rule in self._rules}
        if set(rule_ids) != set(by_id) or len(rule_ids) != len(by_id):
            return False
        self._rules = [attrs.evolve(by_id[i], updated_at=now) for i in rule_ids]
        return True
