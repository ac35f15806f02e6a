"""Idempotency and suppression hold across nodes: two engines, each with its
own connection pool, on one PostgreSQL schema."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.settings import Settings
from sendarix_core.ports import MessageQuery
from sendarix_core.states import MessageStatus
from tests.engine.conftest import message_body

pytestmark = [pytest.mark.anyio, pytest.mark.postgresql]


@pytest.fixture
async def nodes(pg_url: str) -> AsyncIterator[tuple[Engine, Engine]]:
    settings = Settings(database_url=pg_url, delivery_mode="sink")
    async with (
        Engine.from_settings(settings, workers=False) as first,
        Engine.from_settings(settings, workers=False) as second,
    ):
        yield first, second


async def test_idempotency_across_nodes(nodes: tuple[Engine, Engine]) -> None:
    results = []

    async def send(engine: Engine) -> None:
        results.append(await engine.send(message_body(), idempotency_key="otp-42"))

    async with anyio.create_task_group() as task_group:
        for _ in range(5):
            for engine in nodes:
                task_group.start_soon(send, engine)

    assert len({result.message_id for result in results}) == 1
    assert sum(not result.replayed for result in results) == 1
    page = await nodes[0].list_messages(MessageQuery(limit=100))
    assert len(page.items) == 1


async def test_suppression_across_nodes(nodes: tuple[Engine, Engine]) -> None:
    first, second = nodes
    await first.suppress("ada@example.test")
    result = await second.send(message_body())

    await second.deliver_due()

    message = await first.get_message(result.message_id)
    assert message.status == MessageStatus.SUPPRESSED
