"""A key revoked on one server is rejected by another at its next request."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.support.server_process import ServerProcess

pytestmark = pytest.mark.e2e


def test_revoked_on_other_server(tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'shared.db'}"
    servers = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        servers.append(
            ServerProcess(
                tmp_path / name,
                {"SENDARIX_DATABASE_URL": database, "SENDARIX_DELIVERY_MODE": "sink"},
            )
        )
    admin = servers[0].create_key("--scope", "admin")
    try:
        for server in servers:
            server.start()
        first = httpx.Client(
            base_url=servers[0].url, headers={"Authorization": f"Bearer {admin}"}
        )
        created = first.post(
            "/v1/api-keys", json={"name": "ci", "scopes": ["messages:read"]}
        ).json()
        second = httpx.Client(
            base_url=servers[1].url,
            headers={"Authorization": f"Bearer {created['key']}"},
        )
        before = second.get("/v1/messages")

        revoked = first.delete(f"/v1/api-keys/{created['id']}")
        after = second.get("/v1/messages")
    finally:
        for server in servers:
            server.stop()

    assert before.status_code == 200
    assert revoked.status_code == 200
    assert after.status_code == 401
    assert "revoked" in after.json()["error"]["message"]
