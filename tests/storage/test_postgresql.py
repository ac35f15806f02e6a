"""PostgreSQL connection settings: the lock timeout, and a URL's own."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import httpx
import psycopg
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.settings import Settings
from sendarix_backends.sql import SqlStore, upgrade
from sendarix_backends.sql.engine import make_engine
from sendarix_backends.sql.migrate import current_revision
from sendarix_core.errors import StorageError
from sendarix_http.app import create_app
from tests.http.conftest import message_body
from tests.storage.conftest import POSTGRESQL_URL, T0, Factory, schema_url

pytestmark = [pytest.mark.anyio, pytest.mark.postgresql]

# The first key of the advisory lock that serializes a schema's migrations.
MIGRATION_LOCK = 0x53454E44


def show(url: str, setting: str) -> str:
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as connection:
            return str(connection.exec_driver_sql(f"SHOW {setting}").scalar())
    finally:
        engine.dispose()


def hold_migration_lock(holder: psycopg.Connection[Any], schema: str) -> None:
    """Take the advisory lock that migrations of ``schema`` wait for."""
    holder.execute(
        "SELECT pg_advisory_lock(%s, hashtext(%s))", (MIGRATION_LOCK, schema)
    )


def test_lock_timeout_default(postgresql_schema: str) -> None:
    url = schema_url(postgresql_schema)

    assert show(url, "lock_timeout") == "30s"
    assert show(url, "search_path") == postgresql_schema


def test_url_lock_timeout_kept(postgresql_schema: str) -> None:
    url = schema_url(postgresql_schema) + "%20-clock_timeout%3D250"

    assert show(url, "lock_timeout") == "250ms"
    assert show(url, "search_path") == postgresql_schema


def test_pgoptions_lock_timeout_kept(
    postgresql_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGOPTIONS", "-c lock_timeout=700")

    assert show(POSTGRESQL_URL, "lock_timeout") == "700ms"


def test_other_url_options_get_lock_timeout(postgresql_schema: str) -> None:
    url = schema_url(postgresql_schema) + "%20-cdeadlock_timeout%3D2s"

    assert show(url, "lock_timeout") == "30s"
    assert show(url, "deadlock_timeout") == "2s"


async def test_locked_table_fails_write(
    postgresql_schema: str, factory: Factory
) -> None:
    url = schema_url(postgresql_schema) + "%20-clock_timeout%3D200"
    with psycopg.connect(POSTGRESQL_URL) as locker:
        locker.execute(f"LOCK TABLE {postgresql_schema}.messages IN EXCLUSIVE MODE")
        async with SqlStore(url, pool_size=1) as store:
            with pytest.raises(StorageError, match="lock_timeout") as caught:
                await store.create_messages([factory.submission(factory.message())], T0)

    assert "pg_locks" in str(caught.value)


def test_migration_waits_past_lock_timeout(postgresql_schema: str) -> None:
    url = schema_url(postgresql_schema) + "%20-clock_timeout%3D100"
    with psycopg.connect(POSTGRESQL_URL, autocommit=True) as holder:
        hold_migration_lock(holder, postgresql_schema)
        release = threading.Timer(
            0.5, holder.execute, ("SELECT pg_advisory_unlock_all()",)
        )
        release.start()
        try:
            upgrade(url)
        finally:
            release.join()

    assert current_revision(url) is not None


def test_migration_keeps_lock_timeout_for_ddl(postgresql_schema: str) -> None:
    url = schema_url(postgresql_schema) + "%20-clock_timeout%3D200"
    with psycopg.connect(POSTGRESQL_URL) as holder:
        # A migration's statements still give up on a busy table.
        holder.execute(
            f"LOCK TABLE {postgresql_schema}.alembic_version IN ACCESS EXCLUSIVE MODE"
        )
        with pytest.raises(StorageError, match="lock_timeout"):
            upgrade(url)


async def test_storage_failure_hides_database(postgresql_schema: str) -> None:
    url = schema_url(postgresql_schema) + "%20-clock_timeout%3D200&password=hunter2"
    settings = Settings(database_url=url, delivery_mode="sink")
    async with Engine.from_settings(settings, workers=False) as engine:
        secret, _ = await engine.create_api_key("tests")
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(
            transport=transport,
            base_url="http://sendarix.test",
            headers={"Authorization": f"Bearer {secret}"},
        ) as client:
            with psycopg.connect(POSTGRESQL_URL) as locker:
                locker.execute(
                    f"LOCK TABLE {postgresql_schema}.messages IN EXCLUSIVE MODE"
                )
                response = await client.post("/v1/messages", json=message_body())
                with pytest.raises(StorageError) as caught:
                    await engine.send(message_body())

    error = response.json()["error"]
    assert response.status_code == 503
    assert error["code"] == "storage_unavailable"
    assert "hunter2" not in response.text
    assert "127.0.0.1" not in response.text
    assert response.headers["x-request-id"] in error["message"]
    # The log gets the cause, with the password masked.
    assert "lock_timeout" in str(caught.value)
    assert "hunter2" not in str(caught.value)
    assert "password=hidden" in str(caught.value)


def test_migrations_of_other_schemas_go_on(postgresql_schema: str) -> None:
    url = schema_url(postgresql_schema) + "%20-clock_timeout%3D200"
    with psycopg.connect(POSTGRESQL_URL, autocommit=True) as holder:
        hold_migration_lock(holder, "sx_another_schema")
        # The lock of another schema is no reason to wait.
        migration = threading.Thread(target=upgrade, args=(url,))
        migration.start()
        migration.join(timeout=10)
        waited = migration.is_alive()
        holder.execute("SELECT pg_advisory_unlock_all()")
        migration.join()

    assert not waited


async def test_readyz_read_only_transactions(
    postgresql_schema: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = (
        schema_url(postgresql_schema)
        + "%20-cdefault_transaction_read_only%3Don&password=hunter2"
    )
    settings = Settings(database_url=url, delivery_mode="sink")
    async with Engine.from_settings(settings, workers=False) as engine:
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://sendarix.test"
        ) as client:
            before = await client.get("/readyz")
            with pytest.raises(StorageError, match="read-only"):
                await engine.send(message_body())
            after = await client.get("/readyz")

    error = after.json()["error"]
    logged = [r.exc_info[1] for r in caplog.records if r.exc_info]
    assert before.status_code == 200
    assert after.status_code == 503
    assert error["code"] == "storage_unavailable"
    assert "the last write to the database" in error["message"]
    assert "hunter2" not in after.text
    assert "127.0.0.1" not in after.text
    assert len(logged) == 1
    assert "read-only" in str(logged[0].__cause__)  # type: ignore[union-attr]
    assert "hunter2" not in str(logged[0].__cause__)  # type: ignore[union-attr]


async def test_readyz_hung_database(postgresql_schema: str) -> None:
    settings = Settings(database_url=schema_url(postgresql_schema))
    async with Engine.from_settings(settings, workers=False) as engine:
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://sendarix.test"
        ) as client:
            with psycopg.connect(POSTGRESQL_URL) as locker:
                # Reads of the table now wait for lock_timeout, 30 s.
                locker.execute(
                    f"LOCK TABLE {postgresql_schema}.alembic_version "
                    "IN ACCESS EXCLUSIVE MODE"
                )
                hung = await client.get("/readyz")
                # The first check still waits, so this one does not start.
                again = await client.get("/readyz")
            with anyio.fail_after(10):
                recovered = await client.get("/readyz")
                while recovered.status_code != 200:
                    await anyio.sleep(0.05)
                    recovered = await client.get("/readyz")

    assert hung.status_code == 503
    assert hung.json()["error"]["code"] == "storage_unavailable"
    assert "did not answer a read within 2 s" in hung.json()["error"]["message"]
    assert again.status_code == 503
    assert "did not answer" in again.json()["error"]["message"]
