"""The store's record of failed writes and its database read, on both backends."""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

import anyio
import pytest
from sqlalchemy import event

from sendarix_backends.readiness import check_database
from sendarix_backends.sql import SqlStore
from sendarix_backends.sql import store as sql_store
from sendarix_core.errors import StorageError
from tests.storage.conftest import T0, Factory
from tests.storage.test_api_keys import make_key

pytestmark = pytest.mark.anyio


async def test_new_store_ready(store: SqlStore) -> None:
    await store.check_database()

    assert store.last_write_failure is None
    assert await check_database(store) is None


async def test_duplicate_key_not_counted(store: SqlStore) -> None:
    # A constraint violation comes from the caller's data, not the database.
    await store.create_api_key(make_key())
    with pytest.raises(StorageError):
        await store.create_api_key(make_key())

    assert store.last_write_failure is None


def reject_writes(dbapi_connection: Any, _record: Any) -> None:
    """Make a new connection reject writes, as a read-only database does."""
    if isinstance(dbapi_connection, sqlite3.Connection):
        dbapi_connection.execute("PRAGMA query_only=ON")
        return
    dbapi_connection.execute("SET default_transaction_read_only = on")
    # Committed, or the pool's rollback on return would undo the SET.
    dbapi_connection.commit()


async def test_failed_write_recorded(store: SqlStore, factory: Factory) -> None:
    event.listen(store._engine, "connect", reject_writes)
    store._engine.dispose()
    try:
        with pytest.raises(StorageError):
            await store.create_messages([factory.submission()], T0)
        failure = store.last_write_failure
        problem = await check_database(store)
    finally:
        event.remove(store._engine, "connect", reject_writes)
        store._engine.dispose()
    await store.create_messages([factory.submission()], T0)

    assert failure is not None
    assert failure.operation == "create_messages"
    assert problem is not None
    assert "create_messages" in problem.summary
    assert store.last_write_failure is None


async def test_one_database_check_at_a_time(
    store: SqlStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A read that hangs, as on a database that stopped responding.
    release = threading.Event()
    running = []

    def hanging_read(connection: Any) -> None:
        running.append(1)
        release.wait(5)

    monkeypatch.setattr(sql_store, "_read_schema_version", hanging_read)
    outcomes: list[str] = []

    async def probe() -> None:
        try:
            await store.check_database()
        except TimeoutError:
            outcomes.append("refused")
        else:
            outcomes.append("read")

    async with anyio.create_task_group() as tasks:
        for _ in range(4):
            tasks.start_soon(probe)
        await anyio.wait_all_tasks_blocked()
        await anyio.sleep(0.2)
        release.set()

    assert len(running) == 1
    assert sorted(outcomes) == ["read", "refused", "refused", "refused"]
    await store.check_database()
