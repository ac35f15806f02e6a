"""Fixtures for the storage contract suite, run on SQLite and PostgreSQL.

SQLite tests get a new database file each. PostgreSQL tests share one
schema per test session (``sx_<random>``, dropped at the end), so they can
run beside other users of the database. Its tables are emptied before each
test. Without a server on 127.0.0.1:5432 the PostgreSQL cases are skipped,
unless ``CI=true``, where they fail.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest

from sendarix_backends.sql import SqlStore, upgrade
from sendarix_backends.sql.schema import metadata
from sendarix_core.idempotency import IdempotencyRecord
from sendarix_core.ids import new_id
from sendarix_core.lifecycle import Transition, create
from sendarix_core.model import Address, Message, MessageContent
from sendarix_core.ports import Submission
from sendarix_core.states import MessageStatus, Priority

POSTGRESQL_URL = os.environ.get(
    "SENDARIX_TEST_POSTGRESQL_URL", "postgresql://postgres@127.0.0.1:5432/test"
)

T0 = datetime(2026, 4, 19, 14, 30, tzinfo=UTC)


@pytest.fixture(scope="session")
def postgresql_schema() -> Iterator[str]:
    """Create a migrated schema for this test session; drop it at the end."""
    try:
        admin = psycopg.connect(POSTGRESQL_URL, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        reason = f"PostgreSQL at {POSTGRESQL_URL} is not reachable: {exc}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)

    schema = f"sx_{secrets.token_hex(6)}"
    with admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            upgrade(schema_url(schema))
            yield schema
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


def schema_url(schema: str) -> str:
    """Return the test server's URL with ``schema`` as the search path."""
    separator = "&" if "?" in POSTGRESQL_URL else "?"
    return f"{POSTGRESQL_URL}{separator}options=-csearch_path%3D{schema}"


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgresql)]
)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sendarix.db'}"

    schema: str = request.getfixturevalue("postgresql_schema")
    tables = ", ".join(f"{schema}.{table.name}" for table in metadata.sorted_tables)
    with psycopg.connect(POSTGRESQL_URL, autocommit=True) as connection:
        connection.execute(f"TRUNCATE {tables} RESTART IDENTITY")
    return schema_url(schema)


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[SqlStore]:
    async with SqlStore(database_url, pool_size=8) as opened:
        yield opened


@pytest.fixture
async def second_store(database_url: str, store: SqlStore) -> AsyncIterator[SqlStore]:
    """Another store on the same database, with a connection pool of its own."""
    async with SqlStore(database_url, pool_size=8) as opened:
        yield opened


class Factory:
    """Builder of messages and submissions, made with the lifecycle functions."""

    def __init__(self) -> None:
        self._numbers = count()

    def message_id(self, now: datetime = T0) -> str:
        return new_id("msg", now, secrets.token_bytes(10))

    def event_id(self, now: datetime = T0) -> str:
        return new_id("evt", now, secrets.token_bytes(10))

    def message(self, *, created_at: datetime = T0, **changes: Any) -> Message:
        number = next(self._numbers)
        message = Message(
            id=self.message_id(created_at),
            status=MessageStatus.QUEUED,
            priority=Priority.NORMAL,
            sender=Address("no-reply", "acme.example", "Acme"),
            recipient=Address(f"user{number}", "example.com"),
            content=MessageContent(subject="Your code", text=f"code {number}"),
            created_at=created_at,
            updated_at=created_at,
        )
        return attrs.evolve(message, **changes)

    def created(self, message: Message) -> Transition:
        return create(message, event_id=self.event_id(message.created_at))

    def submission(
        self, message: Message | None = None, *, key: str | None = None, **record: Any
    ) -> Submission:
        message = message or self.message()
        idempotency = None
        if key is not None:
            fields: dict[str, Any] = {
                "api_key_id": "key_1",
                "key": key,
                "fingerprint": "f1",
                "status_code": 202,
                "response": {"message_id": message.id, "status": "queued"},
                "created_at": message.created_at,
            }
            fields.update(record)
            idempotency = IdempotencyRecord(**fields)
        return Submission(transition=self.created(message), idempotency=idempotency)

    def batch(self, size: int, *, start: datetime = T0, **changes: Any) -> list[Any]:
        """Return ``size`` submissions created one millisecond apart."""
        step = timedelta(milliseconds=1)
        return [
            self.submission(self.message(created_at=start + index * step, **changes))
            for index in range(size)
        ]


@pytest.fixture
def factory() -> Factory:
    return Factory()
