"""A background task that fails on an unexpected error is reported, not hidden.

A queue plugin wraps the real SQL store and fails every read of the next
due time with ``RuntimeError``, which the worker does not retry.
"""

from __future__ import annotations

import traceback
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.hookspecs import hookimpl
from sendarix_backends.plugins import get_plugin_manager
from sendarix_backends.settings import Settings
from sendarix_core.errors import SendarixError
from sendarix_core.ports import MessageStore
from sendarix_http import cli
from sendarix_http.app import create_app
from tests.engine.conftest import message_body

pytestmark = pytest.mark.anyio


# Kept before a test replaces Engine.from_settings for the worker command.
build_engine = Engine.from_settings


class FailingQueue:
    """The SQL store's queue, except that ``next_due_at`` always fails."""

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def next_due_at(self) -> datetime | None:
        raise RuntimeError("next_due_at is broken on purpose")


class FailingOnStopQueue(FailingQueue):
    """A queue whose ``next_due_at`` waits, and fails once it is cancelled."""

    async def next_due_at(self) -> datetime | None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            raise RuntimeError("next_due_at failed while stopping") from None
        return None


class FailingQueuePlugin:
    def __init__(self, queue: type[FailingQueue]) -> None:
        self._queue = queue

    @hookimpl
    def sendarix_queue(self, settings: Settings, storage: MessageStore) -> Any:
        return self._queue(storage)


def failing_engine(
    database_url: str, queue: type[FailingQueue] = FailingQueue
) -> Engine:
    manager = get_plugin_manager()
    manager.register(FailingQueuePlugin(queue))
    settings = Settings(
        database_url=database_url, delivery_mode="sink", poll_interval=0.05
    )
    return build_engine(settings, plugin_manager=manager)


async def test_failed_worker_is_listed(tmp_path: Path) -> None:
    async with failing_engine(f"sqlite:///{tmp_path / 'sendarix.db'}") as engine:
        with anyio.fail_after(10):
            await engine.wait_for_stopped_task()
        result = await engine.send(message_body())

        assert engine.stopped_tasks == ("delivery worker",)
        assert result.message_id.startswith("msg_")


async def test_failure_while_stopping_raises(tmp_path: Path) -> None:
    engine = failing_engine(f"sqlite:///{tmp_path / 'sendarix.db'}", FailingOnStopQueue)

    with pytest.raises(Exception) as raised:  # noqa: PT011
        async with engine:
            await anyio.sleep(0.3)

    formatted = "".join(traceback.format_exception(raised.value))
    assert "next_due_at failed while stopping" in formatted
    assert engine.stopped_tasks == ()


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
async def test_probe_503_after_failure(tmp_path: Path, path: str) -> None:
    async with failing_engine(f"sqlite:///{tmp_path / 'sendarix.db'}") as engine:
        with anyio.fail_after(10):
            await engine.wait_for_stopped_task()
        transport = httpx.ASGITransport(app=create_app(engine))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://sendarix.test"
        ) as client:
            response = await client.get(path)

    assert response.status_code == 503
    assert response.json()["error"]["code"] == "task_stopped"
    assert "delivery worker" in response.json()["error"]["message"]


async def test_worker_command_stops_after_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database_url = f"sqlite:///{tmp_path / 'sendarix.db'}"
    monkeypatch.setattr(
        cli.Engine, "from_settings", lambda settings: failing_engine(database_url)
    )

    with anyio.fail_after(10), pytest.raises(SendarixError, match="delivery worker"):
        await cli._run_worker(Settings(database_url=database_url))
