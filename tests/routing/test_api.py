"""``/v1/routes`` through the real ASGI app."""

from __future__ import annotations

import functools
from typing import Any

import anyio
import httpx
import pytest

from sendarix_backends.engine import Engine
from sendarix_core.keys import Scope

pytestmark = pytest.mark.anyio

SMARTHOST_RULE = {
    "description": "partners through the relay",
    "match": {"recipient_domains": ["partner.test", "*.partner.test"]},
    "action": {
        "transport": "smarthost",
        "smarthost": "smtp://relay:s3cret@127.0.0.1:2526",
        "tls": "required",
        "pacing": {"max_connections": 2, "messages_per_minute": 120},
        "retry": {"intervals": [60, 600], "max_attempts": 3},
    },
}


async def create(client: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/v1/routes", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_list_has_default_rule(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/routes")

    assert response.status_code == 200
    [default] = response.json()["data"]
    assert default["id"] == "default"
    assert default["default"] is True
    assert default["action"]["transport"] == "mx"
    assert default["match"]["recipient_domains"] == []


async def test_create_masks_password(client: httpx.AsyncClient) -> None:
    rule = await create(client, SMARTHOST_RULE)

    assert rule["id"].startswith("rte_")
    assert rule["position"] == 0
    assert rule["action"]["smarthost"] == "smtp://relay:***@127.0.0.1:2526"
    assert rule["action"]["pacing"]["max_connections"] == 2
    assert rule["action"]["retry"] == {
        "intervals": [60, 600],
        "max_attempts": 3,
        "max_age": None,
    }
    listed = (await client.get("/v1/routes")).text
    assert "s3cret" not in listed


async def test_masked_password_kept_on_update(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    rule = await create(client, SMARTHOST_RULE)

    response = await client.patch(
        f"/v1/routes/{rule['id']}",
        json={"action": {**rule["action"], "tls": "required_verified"}},
    )

    assert response.status_code == 200, response.text
    assert response.json()["action"]["tls"] == "required_verified"
    [stored, _] = await engine.control.routes.list_rules()
    assert stored.action.smarthost is not None
    assert stored.action.smarthost.password == "s3cret"


async def test_position_and_reorder(client: httpx.AsyncClient) -> None:
    first = await create(client, {"match": {"tags": ["a"]}})
    second = await create(client, {"match": {"tags": ["b"]}})
    top = await create(client, {"match": {"tags": ["c"]}, "position": 0})

    listed = (await client.get("/v1/routes")).json()["data"]
    assert [rule["id"] for rule in listed] == [
        top["id"],
        first["id"],
        second["id"],
        "default",
    ]

    order = [second["id"], top["id"], first["id"]]
    response = await client.post("/v1/routes/reorder", json={"order": order})
    assert response.status_code == 200
    assert [rule["id"] for rule in response.json()["data"]] == [*order, "default"]
    assert [rule["position"] for rule in response.json()["data"]] == [0, 1, 2, 3]


async def test_reorder_unknown_field_named(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/routes/reorder", json={"ids": []})

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["field"] == "ids"
    assert error["code"] == "unknown_field"


async def test_reorder_needs_every_rule(client: httpx.AsyncClient) -> None:
    first = await create(client, {"match": {"tags": ["a"]}})
    await create(client, {"match": {"tags": ["b"]}})

    response = await client.post("/v1/routes/reorder", json={"order": [first["id"]]})

    assert response.status_code == 422
    assert response.json()["error"]["errors"][0]["code"] == "incomplete_order"


async def test_default_rule_protected(client: httpx.AsyncClient) -> None:
    deleted = await client.delete("/v1/routes/default")
    narrowed = await client.patch("/v1/routes/default", json={"match": {"tags": ["x"]}})
    moved = await client.post("/v1/routes/reorder", json={"order": ["default"]})

    assert deleted.status_code == 409
    assert deleted.json()["error"]["code"] == "default_route_protected"
    assert narrowed.status_code == 409
    assert moved.status_code == 409


async def test_default_action_changes(client: httpx.AsyncClient) -> None:
    response = await client.patch(
        "/v1/routes/default",
        json={"action": {"pacing": {"messages_per_second": 50}}},
    )

    assert response.status_code == 200, response.text
    default = (await client.get("/v1/routes/default")).json()
    assert default["action"]["pacing"]["messages_per_second"] == 50
    assert default["action"]["transport"] == "mx"


async def test_update_and_delete(client: httpx.AsyncClient) -> None:
    rule = await create(client, SMARTHOST_RULE)

    changed = await client.patch(
        f"/v1/routes/{rule['id']}",
        json={"description": "now direct", "action": {"transport": "mx"}},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["action"]["smarthost"] is None
    assert changed.json()["action"]["pacing"]["max_connections"] == 2

    assert (await client.delete(f"/v1/routes/{rule['id']}")).status_code == 204
    missing = await client.get(f"/v1/routes/{rule['id']}")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "routing_rule_not_found"


async def test_concurrent_changes_all_kept(client: httpx.AsyncClient) -> None:
    for _ in range(5):
        rule = await create(client, {"match": {"tags": ["x"]}})
        path = f"/v1/routes/{rule['id']}"
        changes = [
            {"action": {"tls": "required"}},
            {"action": {"pacing": {"max_connections": 3}}},
            {"description": "changed"},
        ]

        async with anyio.create_task_group() as group:
            for change in changes:
                group.start_soon(functools.partial(client.patch, path, json=change))

        final = (await client.get(path)).json()
        assert final["action"]["tls"] == "required"
        assert final["action"]["pacing"]["max_connections"] == 3
        assert final["description"] == "changed"


async def test_default_rule_concurrent_changes_kept(
    client: httpx.AsyncClient,
) -> None:
    changes = [
        {"action": {"tls": "required"}},
        {"action": {"pacing": {"max_connections": 3}}},
    ]

    async with anyio.create_task_group() as group:
        for change in changes:
            group.start_soon(
                functools.partial(client.patch, "/v1/routes/default", json=change)
            )

    final = (await client.get("/v1/routes/default")).json()
    assert final["action"]["tls"] == "required"
    assert final["action"]["pacing"]["max_connections"] == 3


async def test_masked_password_without_stored_one_rejected(
    client: httpx.AsyncClient,
) -> None:
    rule = await create(client, SMARTHOST_RULE)
    path = f"/v1/routes/{rule['id']}"
    moved = await client.patch(path, json={"action": {"transport": "mx"}})
    assert moved.status_code == 200, moved.text

    back = await client.patch(
        path,
        json={
            "action": {
                "transport": "smarthost",
                "smarthost": "smtp://relay:***@127.0.0.1:2526",
            }
        },
    )

    assert back.status_code == 422, back.text
    [error] = back.json()["error"]["errors"]
    assert (error["field"], error["code"]) == ("action.smarthost", "masked_password")


async def test_masked_password_on_create_rejected(client: httpx.AsyncClient) -> None:
    body = {**SMARTHOST_RULE, "action": {**SMARTHOST_RULE["action"]}}
    body["action"]["smarthost"] = "smtp://relay:***@127.0.0.1:2526"  # type: ignore[index]

    response = await client.post("/v1/routes", json=body)

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert error["code"] == "masked_password"


async def test_password_without_user_rejected(client: httpx.AsyncClient) -> None:
    rule = await create(client, SMARTHOST_RULE)

    response = await client.patch(
        f"/v1/routes/{rule['id']}",
        json={"action": {"smarthost": "smtp://:pw@127.0.0.1:2526"}},
    )

    assert response.status_code == 422
    [error] = response.json()["error"]["errors"]
    assert (error["field"], error["code"]) == ("action.smarthost", "invalid_smarthost")


async def test_invalid_rule_lists_fields(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/routes",
        json={
            "match": {"recipient_domains": ["not a domain"]},
            "action": {"transport": "smarthost", "source_address": "nowhere"},
        },
    )

    assert response.status_code == 422
    fields = {error["field"] for error in response.json()["error"]["errors"]}
    assert fields == {
        "match.recipient_domains.0",
        "action.smarthost",
        "action.source_address",
    }


async def test_explain_matches_mx_wildcard(client: httpx.AsyncClient) -> None:
    google = await create(
        client,
        {
            "description": "Google-hosted domains",
            "match": {"mx_hosts": ["*.google.test"]},
            "action": {"pacing": {"max_connections": 3}},
        },
    )

    response = await client.get(
        "/v1/routes/explain",
        params={"recipient": "ada@hosted.test", "from": "no-reply@acme.example"},
    )

    assert response.status_code == 200, response.text
    result = response.json()
    assert result["rule"]["id"] == google["id"]
    assert result["mx_hosts"] == ["aspmx.l.google.test", "alt1.aspmx.l.google.test"]
    assert result["site"] == "alt1.aspmx.l.google.test,aspmx.l.google.test"
    [first, default] = result["checks"]
    assert first["matched"] is True
    assert first["conditions"] == [
        {
            "condition": "mx_host",
            "matched": True,
            "detail": "aspmx.l.google.test matches *.google.test",
        }
    ]
    assert default == {"rule_id": "default", "matched": True, "conditions": []}


async def test_explain_says_why_not(client: httpx.AsyncClient) -> None:
    await create(client, {"match": {"recipient_domains": ["partner.test"]}})
    tagged = await create(
        client,
        {"match": {"tags": ["otp"], "priorities": ["high"]}, "action": {}},
    )

    response = await client.get(
        "/v1/routes/explain",
        params={"recipient": "ada@example.test", "tags": "otp", "priority": "high"},
    )

    result = response.json()
    assert result["rule"]["id"] == tagged["id"]
    first = result["checks"][0]
    assert first["matched"] is False
    assert first["conditions"][0]["detail"] == (
        "example.test matches none of partner.test"
    )


async def test_explain_reports_dns_failure(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(
        "/v1/routes/explain", params={"recipient": "ada@nowhere.test"}
    )

    result = response.json()
    assert result["rule"]["id"] == "default"
    assert result["mx_hosts"] == []
    assert "NXDOMAIN" in result["mx_error"]
    assert result["site"] == "nowhere.test"


async def test_explain_needs_recipient(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/routes/explain")

    assert response.status_code == 422


async def test_write_needs_scope(client: httpx.AsyncClient, engine: Engine) -> None:
    secret, _ = await engine.create_api_key(
        "reader", scopes=frozenset({Scope.MESSAGES_READ})
    )
    headers = {"Authorization": f"Bearer {secret}"}

    listed = await client.get("/v1/routes", headers=headers)
    created = await client.post("/v1/routes", json={}, headers=headers)

    assert listed.status_code == 200
    assert created.status_code == 403


async def test_sites_listed(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/routes/sites")

    assert response.status_code == 200
    assert response.json() == {"data": []}
