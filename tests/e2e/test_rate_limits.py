"""Rate limits against real ``sendarix serve`` processes.

1,200 concurrent requests with one key of the default 1,000 a minute: exactly
1,000 pass and 200 get ``429``, on one process over SQLite and across two
processes sharing one PostgreSQL database, because the database stores the
counter. Requests that run into the next window are counted there.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import anyio
import httpx
import psycopg
import pytest

from sendarix_core.ratelimit import DEFAULT_RATE_LIMIT, WINDOW_SECONDS
from tests.storage.conftest import POSTGRESQL_URL, schema_url
from tests.support.server_process import SENDARIX, ServerProcess

pytestmark = pytest.mark.e2e

REQUESTS = 1200
# Enough for 1,200 requests on two cores with room to spare; a window that
# closes before they finish would split them across two counters.
MIN_SECONDS_LEFT = 20


def sink_server(workdir: Path, **env: str) -> ServerProcess:
    return ServerProcess(workdir, {"SENDARIX_DELIVERY_MODE": "sink", **env})


def wait_for_fresh_window() -> None:
    """Sleep into the next window unless enough of this one is left.

    The server's window is aligned to the wall clock, which a test can't
    inject into a separate process.
    """
    left = WINDOW_SECONDS - time.time() % WINDOW_SECONDS
    if left < MIN_SECONDS_LEFT:
        time.sleep(left + 0.5)


async def fire(urls: list[str], key: str) -> list[httpx.Response]:
    """Send ``REQUESTS`` concurrent reads, spread over ``urls`` in turn."""
    responses: list[httpx.Response] = []
    # Connections idle for 5 s are closed by uvicorn, and httpx keeps them
    # for 5 s too: a request sent on one as the server closes it would fail
    # without a response. Expiring them first on this side rules that out.
    limits = httpx.Limits(max_connections=100, keepalive_expiry=1.0)
    headers = {"Authorization": f"Bearer {key}"}
    clients = [
        httpx.AsyncClient(base_url=url, headers=headers, limits=limits, timeout=60)
        for url in urls
    ]

    async def one(client: httpx.AsyncClient) -> None:
        responses.append(await client.get("/v1/messages", params={"limit": "1"}))

    async with anyio.create_task_group() as group:
        for number in range(REQUESTS):
            group.start_soon(one, clients[number % len(clients)])
    for client in clients:
        await client.aclose()
    return responses


def check_split(responses: list[httpx.Response]) -> None:
    """Check the counts and headers of each window the responses fell in.

    The requests normally finish inside one window: exactly 1,000 pass and
    200 get ``429``. On a loaded machine they may run into the next window,
    whose counter starts again; no window may then pass more than the limit.
    """
    assert {r.status_code for r in responses} <= {200, 429}
    assert {r.headers["x-ratelimit-limit"] for r in responses} == {"1000"}
    windows: dict[int, list[httpx.Response]] = {}
    for response in responses:
        reset = int(response.headers["x-ratelimit-reset"])
        assert reset % WINDOW_SECONDS == 0
        windows.setdefault(reset, []).append(response)
    assert len(windows) <= 2

    for reset in sorted(windows):
        in_window = windows[reset]
        passed = [r for r in in_window if r.status_code == 200]
        limited = [r for r in in_window if r.status_code == 429]
        if limited:
            assert len(passed) == DEFAULT_RATE_LIMIT
        assert len(passed) <= DEFAULT_RATE_LIMIT

        remaining = sorted(int(r.headers["x-ratelimit-remaining"]) for r in passed)
        assert remaining == list(
            range(DEFAULT_RATE_LIMIT - len(passed), DEFAULT_RATE_LIMIT)
        )
        for response in limited:
            assert response.headers["x-ratelimit-remaining"] == "0"
            assert 1 <= int(response.headers["retry-after"]) <= WINDOW_SECONDS
            assert response.json()["error"]["code"] == "rate_limited"
    if len(windows) == 1:
        [in_window] = windows.values()
        assert (
            sum(r.status_code == 429 for r in in_window)
            == REQUESTS - DEFAULT_RATE_LIMIT
        )


def test_limit_one_process_sqlite(tmp_path: Path) -> None:
    server = sink_server(tmp_path)
    key = server.create_key()
    server.start()
    try:
        wait_for_fresh_window()
        responses = anyio.run(fire, [server.url], key)
    finally:
        server.stop()
    check_split(responses)


@pytest.fixture
def fresh_schema() -> Iterator[str]:
    """A new PostgreSQL schema, migrated with ``sendarix migrate``."""
    try:
        admin = psycopg.connect(POSTGRESQL_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL at {POSTGRESQL_URL} is not reachable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    schema = f"sx_rl_{secrets.token_hex(4)}"
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            url = schema_url(schema)
            subprocess.run(
                [*SENDARIX, "migrate", "--database-url", url],
                check=True,
                capture_output=True,
                timeout=120,
            )
            yield url
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.mark.postgresql
def test_limit_two_processes_postgresql(tmp_path: Path, fresh_schema: str) -> None:
    servers = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        servers.append(sink_server(tmp_path / name, SENDARIX_DATABASE_URL=fresh_schema))
    key = servers[0].create_key()
    try:
        for server in servers:
            server.start()
        wait_for_fresh_window()
        responses = anyio.run(fire, [server.url for server in servers], key)
    finally:
        for server in servers:
            server.stop()

    check_split(responses)
    ports = {response.request.url.port for response in responses}
    assert len(ports) == 2
