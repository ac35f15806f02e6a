"""Migrations against the SQLAlchemy tables, and opening a store."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from sendarix_backends.sql import SqlStore, current_revision, head_revision, upgrade
from sendarix_backends.sql.engine import make_engine
from sendarix_backends.sql.schema import idempotency_keys, metadata, to_micros
from sendarix_backends.sql.webhooks import get_endpoint
from sendarix_backends.webhooks.model import PreviousSecret
from sendarix_core.errors import ConfigurationError, StorageError
from tests.storage.conftest import POSTGRESQL_URL, schema_url

pytestmark = pytest.mark.anyio


def test_migration_matches_tables(database_url: str) -> None:
    upgrade(database_url)
    engine = make_engine(database_url, pool_size=1)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True}
            )
            differences = compare_metadata(context, metadata)
    finally:
        engine.dispose()

    assert differences == []


def test_upgrade_sets_head(database_url: str) -> None:
    upgrade(database_url)
    upgrade(database_url)

    assert current_revision(database_url) == head_revision()


def test_fresh_database_has_no_revision(tmp_path: Path) -> None:
    assert current_revision(f"sqlite:///{tmp_path / 'new.db'}") is None


async def test_open_creates_schema(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"

    async with SqlStore(url) as store:
        assert await store.next_due_at() is None

    assert current_revision(url) == head_revision()


async def test_open_without_create_raises(tmp_path: Path) -> None:
    store = SqlStore(f"sqlite:///{tmp_path / 'new.db'}")

    with pytest.raises(StorageError, match="sendarix migrate"):
        await store.open(create=False)
    await store.aclose()


async def test_newer_revision_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'newer.db'}"
    upgrade(url)
    engine = make_engine(url, pool_size=1)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text("UPDATE alembic_version SET version_num = '0099_future'")
            )
    finally:
        engine.dispose()
    store = SqlStore(url)

    with pytest.raises(StorageError, match="a newer release migrated it"):
        await store.open()
    await store.aclose()
    with pytest.raises(StorageError, match="a newer release migrated it"):
        upgrade(url)


async def test_unreachable_server_raises() -> None:
    store = SqlStore("postgresql://postgres@127.0.0.1:1/test")

    with pytest.raises(StorageError, match="open failed"):
        await store.open()
    await store.aclose()


@pytest.mark.parametrize(
    "url",
    ["sqlite://", "sqlite:///:memory:", "mysql://root@127.0.0.1/test", "not a url"],
)
def test_unsupported_url_raises(url: str) -> None:
    with pytest.raises(ConfigurationError):
        SqlStore(url)


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]
)
def unmigrated_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """Return the URL of an empty database that no test has migrated yet."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'old.db'}"
        return
    request.getfixturevalue("postgresql_schema")
    schema = f"sx_{secrets.token_hex(6)}"
    with psycopg.connect(POSTGRESQL_URL, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            yield schema_url(schema)
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def test_batch_keys_move_to_own_namespace(unmigrated_url: str) -> None:
    upgrade(unmigrated_url, "0005_analytics_test_mode")
    batch_response = {"data": [{"message_id": "msg_1", "status": "queued"}]}
    message_response = {"message_id": "msg_2", "status": "queued"}
    engine = make_engine(unmigrated_url, pool_size=1)
    try:
        with engine.begin() as connection:
            for key, response in (("k1", batch_response), ("k2", message_response)):
                connection.execute(
                    idempotency_keys.insert().values(
                        api_key_id="key_1",
                        key=key,
                        fingerprint="f",
                        status_code=202,
                        response=response,
                        created_at=datetime(2026, 12, 5, tzinfo=UTC),
                    )
                )

        upgrade(unmigrated_url)

        with engine.connect() as connection:
            keys = set(connection.execute(sa.select(idempotency_keys.c.key)).scalars())
    finally:
        engine.dispose()
    assert keys == {"batch k1", "k2"}


def test_relay_recipient_keys_move_to_own_namespace(unmigrated_url: str) -> None:
    upgrade(unmigrated_url, "0009_webhook_subscriptions")
    rows = [
        ("order-7", 250, {"message_id": "msg_1", "status": "queued"}),
        ("order-7 bob@example.com", 250, {"message_id": "msg_2", "status": "queued"}),
        ("batch k1", 202, {"data": [{"message_id": "msg_3", "status": "queued"}]}),
        ("k2", 202, {"message_id": "msg_4", "status": "queued"}),
    ]
    engine = make_engine(unmigrated_url, pool_size=1)
    try:
        with engine.begin() as connection:
            for key, status_code, response in rows:
                connection.execute(
                    idempotency_keys.insert().values(
                        api_key_id="key_1",
                        key=key,
                        fingerprint="f",
                        status_code=status_code,
                        response=response,
                        created_at=datetime(2026, 12, 6, tzinfo=UTC),
                    )
                )

        upgrade(unmigrated_url)

        with engine.connect() as connection:
            keys = set(connection.execute(sa.select(idempotency_keys.c.key)).scalars())
    finally:
        engine.dispose()
    assert keys == {"order-7", "smtp order-7 bob@example.com", "batch k1", "k2"}


def test_previous_secret_moves_to_list(unmigrated_url: str) -> None:
    url = unmigrated_url
    upgrade(url, "0005_analytics_test_mode")
    expires_at = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
    engine = make_engine(url, pool_size=1)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO webhook_endpoints (id, url, description, enabled, "
                    "secret, previous_secret, previous_secret_expires_at, "
                    "created_at, updated_at) VALUES ('whk_1', 'http://127.0.0.1:9/', "
                    "'', true, 'whsec_new', 'whsec_old', :expires, 0, 0)"
                ),
                {"expires": to_micros(expires_at)},
            )
        upgrade(url)
        with engine.connect() as connection:
            endpoint = get_endpoint(connection, "whk_1")
    finally:
        engine.dispose()

    assert endpoint is not None
    assert endpoint.previous_secrets == (PreviousSecret("whsec_old", expires_at),)
    assert endpoint.signing_secrets(expires_at - timedelta(seconds=1)) == (
        "whsec_new",
        "whsec_old",
    )
