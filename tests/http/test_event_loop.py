"""Choosing the event loop of ``serve`` and ``worker``."""

from __future__ import annotations

import asyncio
import inspect
import sys

import pytest

from sendarix_backends.settings import EventLoop
from sendarix_core.errors import ConfigurationError
from sendarix_http import event_loop

uvloop = pytest.importorskip("uvloop")


async def _loop_type() -> type:
    return type(asyncio.get_running_loop())


def test_auto_and_uvloop_run_on_uvloop() -> None:
    for choice in (EventLoop.AUTO, EventLoop.UVLOOP):
        assert event_loop.run(choice, _loop_type()) is uvloop.Loop
        assert event_loop.loop_name(choice) == "uvloop"


def test_asyncio_runs_on_the_standard_loop() -> None:
    loop_type = event_loop.run(EventLoop.ASYNCIO, _loop_type())

    assert not issubclass(loop_type, uvloop.Loop)
    assert event_loop.loop_name(EventLoop.ASYNCIO) == "asyncio"


def test_missing_uvloop(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes the import fail, as when it is not installed.
    monkeypatch.setitem(sys.modules, "uvloop", None)

    assert event_loop.loop_name(EventLoop.AUTO) == "asyncio"
    main = _loop_type()
    with pytest.raises(ConfigurationError, match="uvloop is not installed"):
        event_loop.run(EventLoop.UVLOOP, main)
    # The coroutine was closed, so no "never awaited" warning follows.
    assert inspect.getcoroutinestate(main) == inspect.CORO_CLOSED
