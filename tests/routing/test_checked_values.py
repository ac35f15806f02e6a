"""``/v1/routes`` rejects source addresses and pacing limits that can't work."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.routing.store import StoredRule

pytestmark = pytest.mark.anyio

# 192.0.2.0/24 and 2001:db8::/32 are reserved for documentation, so no
# machine running the tests has them.
FOREIGN_ADDRESSES = ["8.8.8.8", "192.0.2.10", "2001:db8::1"]


def only_error(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 422, response.text
    errors: list[dict[str, Any]] = response.json()["error"]["errors"]
    assert len(errors) == 1, errors
    return errors[0]


@pytest.mark.parametrize("address", FOREIGN_ADDRESSES)
async def test_foreign_source_address_rejected(
    client: httpx.AsyncClient, address: str
) -> None:
    response = await client.post(
        "/v1/routes", json={"match": {}, "action": {"source_address": address}}
    )

    error = only_error(response)
    assert error["field"] == "action.source_address"
    assert error["code"] == "address_not_local"
    assert repr(address) in error["message"]
    assert "leave source_address out" in error["message"]
    listed = (await client.get("/v1/routes")).json()["data"]
    assert len(listed) == 1


async def test_loopback_source_address_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/routes", json={"action": {"source_address": "127.0.0.2"}}
    )

    assert response.status_code == 201, response.text
    assert response.json()["action"]["source_address"] == "127.0.0.2"


@pytest.mark.parametrize("rule_id", ["default", None])
async def test_update_checks_source_address(
    client: httpx.AsyncClient, rule_id: str | None
) -> None:
    if rule_id is None:
        created = await client.post("/v1/routes", json={"match": {"tags": ["a"]}})
        rule_id = created.json()["id"]

    rejected = await client.patch(
        f"/v1/routes/{rule_id}", json={"action": {"source_address": "8.8.8.8"}}
    )
    accepted = await client.patch(
        f"/v1/routes/{rule_id}", json={"action": {"source_address": "127.0.0.3"}}
    )

    assert only_error(rejected)["code"] == "address_not_local"
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["action"]["source_address"] == "127.0.0.3"


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("messages_per_minute", 1e308, "60000000 messages per minute"),
        ("messages_per_minute", 0.0001, "1/1440 (one a day)"),
        ("messages_per_second", 0.0000001, "1/86400 (one a day)"),
        ("messages_per_second", 1_000_001, "1000000 messages per second"),
        ("messages_per_second", 0, "1/86400 (one a day)"),
        ("connections_per_minute", -5, "60000000 connections per minute"),
        ("connections_per_minute", 1e300, "60000000 connections per minute"),
        ("max_connections", 10_001, "a whole number from 1 to 10000"),
        ("max_connections", 0, "a whole number from 1 to 10000"),
        ("messages_per_connection", 1e308, "a whole number from 1 to 1000000"),
    ],
)
async def test_pacing_out_of_range_rejected(
    client: httpx.AsyncClient, name: str, value: float, expected: str
) -> None:
    response = await client.post(
        "/v1/routes", json={"action": {"pacing": {name: value}}}
    )

    error = only_error(response)
    assert error["field"] == f"action.pacing.{name}"
    assert error["code"] == "out_of_range"
    assert repr(value) in error["message"]
    assert expected in error["message"]


async def test_pacing_bounds_accepted(client: httpx.AsyncClient) -> None:
    pacing = {
        "max_connections": 10_000,
        "messages_per_connection": 1,
        "messages_per_second": 1 / 86_400,
        "messages_per_minute": 60_000_000,
        "connections_per_minute": 1 / 1_440,
    }

    response = await client.post("/v1/routes", json={"action": {"pacing": pacing}})

    assert response.status_code == 201, response.text
    assert response.json()["action"]["pacing"] == pacing


async def test_pacing_update_checked(client: httpx.AsyncClient) -> None:
    response = await client.patch(
        "/v1/routes/default",
        json={"action": {"pacing": {"messages_per_minute": 1e308}}},
    )

    error = only_error(response)
    assert error["field"] == "action.pacing.messages_per_minute"
    assert error["code"] == "out_of_range"


async def test_rule_saved_out_of_range_still_loads(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    # A rule saved before the ranges existed, with a rate below one a day.
    now = engine.clock.now()
    old_rule = StoredRule(
        id="rte_saved_before_ranges",
        description="",
        match={"tags": ["slow"]},
        action={"pacing": {"messages_per_second": 1e-7}},
        created_at=now,
        updated_at=now,
    )
    await engine.control.routes._store.insert_rule(old_rule, 0)

    listed = await client.get("/v1/routes")

    assert listed.status_code == 200, listed.text
    [rule] = [r for r in listed.json()["data"] if r["id"] == old_rule.id]
    assert rule["action"]["pacing"]["messages_per_second"] == 1e-7


@pytest.mark.parametrize("value", [False, 0, 2130706433, ["127.0.0.1"]])
async def test_source_address_must_be_text(
    client: httpx.AsyncClient, value: object
) -> None:
    response = await client.post(
        "/v1/routes", json={"match": {}, "action": {"source_address": value}}
    )

    error = only_error(response)
    assert error["field"] == "action.source_address"
    assert error["code"] == "invalid_type"


async def test_patch_keeps_limit_saved_out_of_range(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    now = engine.clock.now()
    old_rule = StoredRule(
        id="rte_saved_with_many_connections",
        description="",
        match={"tags": ["bulk"]},
        action={"pacing": {"max_connections": 20000}},
        created_at=now,
        updated_at=now,
    )
    await engine.control.routes._store.insert_rule(old_rule, 0)

    changed = await client.patch(
        f"/v1/routes/{old_rule.id}", json={"action": {"tls": "required"}}
    )
    rejected = await client.patch(
        f"/v1/routes/{old_rule.id}",
        json={"action": {"pacing": {"max_connections": 20001}}},
    )

    assert changed.status_code == 200, changed.text
    assert changed.json()["action"]["pacing"]["max_connections"] == 20000
    assert only_error(rejected)["code"] == "out_of_range"
