"""``Routes``: create, list, change, reorder and delete routing rules.

The default rule always exists and always comes last. Its action comes from
the settings (``SENDARIX_DELIVERY_MODE`` and ``SENDARIX_SMARTHOST``) except
for the fields changed through ``update``, which are stored. It can't be
deleted or moved, and it matches every message.

Workers read the rules through ``current_rules``, which reloads them at
most every ``refresh_seconds``, so a change made on one node reaches the
workers of every node within that time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sendarix_backends.routing.source_address import check_source_address
from sendarix_backends.routing.store import RouteStore, StoredRule
from sendarix_backends.settings import DeliveryMode, Settings
from sendarix_core.checks import json_excerpt
from sendarix_core.clock import Clock
from sendarix_core.errors import FieldError, NotFoundError, ValidationError
from sendarix_core.route_requests import (
    action_to_document,
    match_to_document,
    parse_action,
    parse_description,
    parse_match,
)
from sendarix_core.routing import (
    DEFAULT_ROUTE_ID,
    MASKED_PASSWORD,
    DefaultRouteError,
    RouteMatch,
    RouteRule,
    SmarthostUrl,
)

__all__ = ["Routes"]

_T = TypeVar("_T")

_RULE_FIELDS = ("description", "match", "action", "position")


class Routes:
    def __init__(
        self,
        store: RouteStore,
        *,
        settings: Settings,
        clock: Clock,
        new_id: Callable[[str], str],
        refresh_seconds: float = 2.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._new_id = new_id
        self._refresh_seconds = refresh_seconds
        self._monotonic = monotonic
        self._cached: list[RouteRule] | None = None
        self._loaded_at = 0.0
        self._default_changed = False

    async def list_rules(self) -> list[RouteRule]:
        """Return every rule in evaluation order, the default rule last."""
        stored = await self._store.list_rules()
        rules = [_rule(item) for item in stored if item.id != DEFAULT_ROUTE_ID]
        override = next((item for item in stored if item.id == DEFAULT_ROUTE_ID), None)
        self._default_changed = override is not None
        rules.append(self._default_rule(override))
        self._cached = rules
        self._loaded_at = self._monotonic()
        return rules

    async def current_rules(self) -> list[RouteRule]:
        """Return the rules, reloaded when the copy is older than the refresh."""
        stale = self._monotonic() - self._loaded_at >= self._refresh_seconds
        if self._cached is None or stale:
            return await self.list_rules()
        return self._cached

    @property
    def default_changed(self) -> bool:
        """Whether the default rule's action was changed through the API."""
        return self._default_changed

    async def get_rule(self, rule_id: str) -> RouteRule:
        for rule in await self.list_rules():
            if rule.id == rule_id:
                return rule
        raise NotFoundError("routing_rule", rule_id)

    async def create(self, body: Mapping[str, Any]) -> RouteRule:
        """Add a rule from an API body; ``position`` 0 puts it first."""
        _check_fields(body, _RULE_FIELDS)
        errors: list[FieldError] = []
        position = _collect(errors, _position, body.get("position"))
        match = _collect(errors, parse_match, body.get("match"))
        action = _collect(errors, parse_action, body.get("action"))
        description = _collect(errors, parse_description, body.get("description"))
        if errors or match is None or action is None or description is None:
            raise ValidationError(errors)
        if action.source_address is not None:
            check_source_address(action.source_address)
        now = self._clock.now()
        stored = StoredRule(
            id=self._new_id("rte"),
            description=description,
            match=match_to_document(match),
            action=action_to_document(action, reveal_password=True),
            created_at=now,
            updated_at=now,
        )
        await self._store.insert_rule(stored, position)
        self._cached = None
        return _rule(stored)

    async def update(self, rule_id: str, body: Mapping[str, Any]) -> RouteRule:
        """Replace the fields given in ``body``.

        Fields inside ``action`` are merged into the current action, so
        ``{"action": {"pacing": {...}}}`` changes only the pacing. A
        smarthost URL whose password is ``***``, as the API shows it, keeps
        the stored password.
        """
        _check_fields(body, ("description", "match", "action"))
        if rule_id == DEFAULT_ROUTE_ID and "match" in body:
            raise DefaultRouteError(
                "the default rule matches every message, so its match can't be "
                "set; create a rule with this match instead"
            )
        description = None
        if "description" in body:
            description = parse_description(body["description"])
        match = None
        if "match" in body:
            match = match_to_document(parse_match(body["match"]))
        now = self._clock.now()

        def change(current: StoredRule | None) -> StoredRule:
            # Runs in the store's transaction, so the action merges into
            # the rule as stored at that moment.
            stored = current or _new_default(now)
            action = stored.action
            if "action" in body:
                action = self._merge_action(stored, body["action"])
            return StoredRule(
                id=rule_id,
                description=stored.description if description is None else description,
                match=stored.match if match is None else match,
                action=action,
                created_at=stored.created_at,
                updated_at=now,
            )

        if await self._store.update_rule(rule_id, change) is None:
            raise NotFoundError("routing_rule", rule_id)
        self._cached = None
        return await self.get_rule(rule_id)

    async def delete(self, rule_id: str) -> None:
        if rule_id == DEFAULT_ROUTE_ID:
            raise DefaultRouteError(
                "the default rule can't be deleted; change its action instead"
            )
        if not await self._store.delete_rule(rule_id):
            raise NotFoundError("routing_rule", rule_id)
        self._cached = None

    async def reorder(self, rule_ids: Sequence[str]) -> list[RouteRule]:
        """Put the rules in this order; the default rule stays last."""
        if DEFAULT_ROUTE_ID in rule_ids:
            raise DefaultRouteError(
                "the default rule always comes last; leave it out of the order"
            )
        if not await self._store.reorder(list(rule_ids), self._clock.now()):
            current = [rule.id for rule in await self.list_rules()][:-1]
            raise ValidationError(
                [
                    FieldError(
                        "order",
                        "incomplete_order",
                        "list every rule id but 'default' exactly once; the "
                        f"rules are {', '.join(current) or 'none'}",
                    )
                ]
            )
        self._cached = None
        return await self.list_rules()

    async def _stored(self, rule_id: str) -> StoredRule:
        stored = await self._store.list_rules()
        for item in stored:
            if item.id == rule_id:
                return item
        if rule_id == DEFAULT_ROUTE_ID:
            return _new_default(self._clock.now())
        raise NotFoundError("routing_rule", rule_id)

    def _merge_action(self, stored: StoredRule, given: object) -> dict[str, Any]:
        if not isinstance(given, Mapping):
            raise ValidationError(
                [
                    FieldError(
                        "action",
                        "invalid_type",
                        "expected an object with the action fields to change",
                    )
                ]
            )

        base = dict(stored.action)
        if stored.id == DEFAULT_ROUTE_ID:
            full = {**self._settings_action(), **base}
        else:
            full = base

        changes = dict(given)
        if "smarthost" in given:
            changes["smarthost"] = _keep_password(full.get("smarthost"), given)
        merged = {**full, **changes}
        if merged.get("transport") != "smarthost" and "smarthost" not in given:
            # Moving away from a smarthost drops its URL.
            merged["smarthost"] = None

        # Limits saved before the pacing ranges existed are checked only
        # when the request changes them.
        parsed = action_to_document(
            parse_action(merged, bounded="pacing" in given), reveal_password=True
        )
        if given.get("source_address") is not None:
            check_source_address(parsed["source_address"])
        if stored.id != DEFAULT_ROUTE_ID:
            return parsed
        # The default rule keeps only the fields changed through the API.
        changed = {*base, *changes}
        if "transport" in changed:
            changed.add("smarthost")
        return {name: parsed[name] for name in changed}

    def _settings_action(self) -> dict[str, Any]:
        mode = self._settings.delivery_mode
        action: dict[str, Any] = {"transport": str(mode)}
        if mode == DeliveryMode.SMARTHOST and self._settings.smarthost:
            action["smarthost"] = self._settings.smarthost
        return action

    def _default_rule(self, override: StoredRule | None) -> RouteRule:
        document = {**self._settings_action()}
        description = "the settings' delivery mode, for every other message"
        created_at = updated_at = None
        if override is not None:
            document.update(override.action)
            description = override.description or description
            created_at, updated_at = override.created_at, override.updated_at
        return RouteRule(
            id=DEFAULT_ROUTE_ID,
            match=RouteMatch(),
            action=parse_action(document),
            description=description,
            created_at=created_at,
            updated_at=updated_at,
        )


def _rule(stored: StoredRule) -> RouteRule:
    return RouteRule(
        id=stored.id,
        match=parse_match(stored.match),
        action=parse_action(stored.action, bounded=False),
        description=stored.description,
        created_at=stored.created_at,
        updated_at=stored.updated_at,
    )


def _collect(
    errors: list[FieldError], parse: Callable[[Any], _T], value: object
) -> _T | None:
    """Run ``parse``; add its field errors to ``errors`` instead of raising."""
    try:
        return parse(value)
    except ValidationError as exc:
        errors.extend(exc.errors)
        return None


def _check_fields(body: Mapping[str, Any], known: Sequence[str]) -> None:
    unknown = [name for name in body if name not in known]
    if unknown:
        raise ValidationError(
            [
                FieldError(
                    name,
                    "unknown_field",
                    f"unknown field {name!r}; expected one of {', '.join(known)}",
                )
                for name in unknown
            ]
        )


def _position(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(
            [
                FieldError(
                    "position",
                    "invalid_position",
                    "expected a whole number from 0 (first), not "
                    f"{json_excerpt(value)}",
                )
            ]
        )
    return value


def _keep_password(current: object, given: Mapping[str, Any]) -> object:
    """Return the given smarthost URL, with the stored password restored when
    the client sent back the masked form for the same user and host."""
    url = given.get("smarthost")
    if not isinstance(url, str) or not isinstance(current, str):
        return url
    try:
        sent = SmarthostUrl.parse(url)
        stored = SmarthostUrl.parse(current)
    except ValueError:
        return url
    same_account = (sent.scheme, sent.host, sent.port, sent.username) == (
        stored.scheme,
        stored.host,
        stored.port,
        stored.username,
    )
    if sent.password == MASKED_PASSWORD and same_account:
        return stored.url()
    return url


def _new_default(now: datetime) -> StoredRule:
    """Return the default rule's row before its first change."""
    return StoredRule(
        id=DEFAULT_ROUTE_ID,
        description="",
        match={},
        action={},
        created_at=now,
        updated_at=now,
    )
