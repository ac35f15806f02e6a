"""A delivery's outcome that the database rejects at first is saved on a
later try, so the accepted message is not sent again."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import anyio
import pytest
from sqlalchemy import event

from sendarix_backends.engine import Engine
from sendarix_backends.sql import SqlStore
from sendarix_core.clock import ManualClock
from sendarix_core.states import MessageStatus
from tests.engine.conftest import message_body
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.anyio


class ReadOnlySwitch:
    """A switch that makes the store's new connections read-only."""

    def __init__(self, store: SqlStore) -> None:
        self._engine = store._engine
        if store.dialect == "sqlite":
            self._statement = "PRAGMA query_only=ON"
        else:
            self._statement = "SET default_transaction_read_only = on"

    def _on_connect(self, dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(self._statement)
        cursor.close()
        # A rollback would undo PostgreSQL's SET.
        dbapi_connection.commit()

    def make_read_only(self) -> None:
        event.listen(self._engine, "connect", self._on_connect)
        self._engine.dispose()

    def make_writable(self) -> None:
        if event.contains(self._engine, "connect", self._on_connect):
            event.remove(self._engine, "connect", self._on_connect)
        self._engine.dispose()


@pytest.fixture
def writes(engine: Engine) -> Iterator[ReadOnlySwitch]:
    assert isinstance(engine.store, SqlStore)
    switch = ReadOnlySwitch(engine.store)
    yield switch
    switch.make_writable()


async def test_outcome_saved_after_read_only(
    engine: Engine,
    smtp_server: SmtpServer,
    clock: ManualClock,
    writes: ReadOnlySwitch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent = await engine.send(message_body())
    # The server delays its reply to DATA, so the database is read-only by
    # the time the worker saves the outcome.
    smtp_server.delay_data_reply(1.0)

    async def read_only_while_sending() -> None:
        await anyio.to_thread.run_sync(smtp_server.wait_for_messages, 1)
        writes.make_read_only()
        await anyio.sleep(2.0)
        writes.make_writable()

    with caplog.at_level(logging.INFO, logger="sendarix.delivery"):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(read_only_while_sending)
            await engine.deliver_due()

    actions = [getattr(record, "action", None) for record in caplog.records]
    assert "outcome_retry" in actions
    assert "outcome_failed" not in actions
    message = await engine.get_message(sent.message_id)
    assert message.status == MessageStatus.DELIVERED

    clock.advance(timedelta(minutes=5))
    assert await engine.deliver_due() == 0
    assert len(smtp_server.messages) == 1
