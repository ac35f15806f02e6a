"""``/healthz`` and ``/readyz`` through the real app on a SQLite file.

SQLite opens a file it may not write read-only, but root may write any
file. So most tests give new connections ``PRAGMA query_only``, which
rejects writes with the same error (SQLITE_READONLY). One test changes the
file's mode instead, and it runs only without root.
"""

from __future__ import annotations

import os
import stat
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from sendarix_backends.engine import Engine
from sendarix_backends.readiness import check_database
from sendarix_backends.sql import SqlStore
from sendarix_core.ports import MessageQuery
from sendarix_http.app import create_app
from tests.http.conftest import message_body

pytestmark = pytest.mark.anyio


@pytest.fixture
async def anonymous(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    """A client without a key, as a load balancer's probe is."""
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://sendarix.test"
    ) as opened:
        yield opened


def sql_store(engine: Engine) -> SqlStore:
    assert isinstance(engine.store, SqlStore)
    return engine.store


def _query_only(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA query_only=ON")


@pytest.fixture
def read_only(engine: Engine) -> Iterator[None]:
    """Make every new connection of the engine's store refuse writes."""
    database = sql_store(engine)._engine
    event.listen(database, "connect", _query_only)
    database.dispose()
    yield
    if event.contains(database, "connect", _query_only):
        event.remove(database, "connect", _query_only)


def make_writable(engine: Engine) -> None:
    event.remove(sql_store(engine)._engine, "connect", _query_only)


async def test_readyz_ok(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_healthz_ok(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_after_refused_write(
    engine: Engine,
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    read_only: None,
) -> None:
    sent = await client.post("/v1/messages", json=message_body())
    ready = await anonymous.get("/readyz")
    healthy = await anonymous.get("/healthz")

    error = ready.json()["error"]
    assert sent.status_code == 503
    assert ready.status_code == 503
    assert error["code"] == "storage_unavailable"
    assert "the last write to the database" in error["message"]
    assert "free disk space" in error["message"]
    assert ready.headers["x-request-id"] in error["message"]
    assert "sendarix.db" not in ready.text
    # Liveness leaves the database alone, so a supervisor restarts nothing.
    assert healthy.status_code == 200


async def test_readyz_logs_cause(
    engine: Engine,
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    read_only: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await client.post("/v1/messages", json=message_body())
    caplog.clear()
    ready = await anonymous.get("/readyz")

    records = [r for r in caplog.records if r.name == "sendarix.http"]
    assert len(records) == 1
    assert records[0].request_id == ready.headers["x-request-id"]  # type: ignore[attr-defined]
    assert records[0].exc_info is not None
    cause = records[0].exc_info[1].__cause__  # type: ignore[union-attr]
    assert "readonly" in str(cause)


async def test_readyz_recovers_after_write(
    engine: Engine,
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    read_only: None,
) -> None:
    refused = await client.post("/v1/messages", json=message_body())
    make_writable(engine)
    still_failed = await anonymous.get("/readyz")
    # A write that succeeds clears the failure. The pool replaced the
    # read-only connections after the rejected write.
    sent = await client.post("/v1/messages", json=message_body())
    ready = await anonymous.get("/readyz")

    assert refused.status_code == 503
    assert still_failed.status_code == 503
    assert sent.status_code == 202
    assert ready.status_code == 200


async def test_readyz_failure_expires(
    engine: Engine, client: httpx.AsyncClient, read_only: None
) -> None:
    await client.post("/v1/messages", json=message_body())

    recent = await check_database(engine.store)
    expired = await check_database(engine.store, max_failure_age=0.0)

    assert recent is not None
    assert expired is None


async def test_readyz_ignores_reads(
    engine: Engine, anonymous: httpx.AsyncClient, read_only: None
) -> None:
    # Reads go on while writes are refused, and do not count as writes.
    listed = await engine.list_messages(MessageQuery())
    ready = await anonymous.get("/readyz")

    assert listed.items == []
    assert ready.status_code == 200


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0,
    reason="root may write a file without write permission",
)
async def test_readyz_read_only_file(
    tmp_path: Path,
    engine: Engine,
    client: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
) -> None:
    database = tmp_path / "sendarix.db"
    mode = database.stat().st_mode
    database.chmod(stat.S_IRUSR | stat.S_IRGRP)
    try:
        # Open connections keep the mode they were opened with.
        sql_store(engine)._engine.dispose()
        sent = await client.post("/v1/messages", json=message_body())
        ready = await anonymous.get("/readyz")
    finally:
        database.chmod(mode)

    assert sent.status_code == 503
    assert ready.status_code == 503
    assert ready.json()["error"]["code"] == "storage_unavailable"
