"""The event loop of the reference runs: the one ``sendarix serve`` picks.

``sendarix serve`` and ``sendarix worker`` run on uvloop where it is
installed (``SENDARIX_EVENT_LOOP=auto``). The bare Starlette app, the bare
aiosmtpd server and the raw aiosmtplib client run on the same loop, so a
ratio compares the work done rather than the loops. They follow
``SENDARIX_EVENT_LOOP`` too when it is set, as the Sendarix processes
inherit it.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar, TypeVarTuple

import anyio

from sendarix_backends.settings import EventLoop
from sendarix_http import event_loop

__all__ = ["run", "run_coroutine"]

T = TypeVar("T")
Arguments = TypeVarTuple("Arguments")


def run(function: Callable[[*Arguments], Awaitable[T]], *arguments: *Arguments) -> T:
    """Run ``function(*arguments)`` with anyio on the loop of ``sendarix serve``."""
    factory = event_loop.loop_factory(_configured_loop())
    return anyio.run(function, *arguments, backend_options={"loop_factory": factory})


def run_coroutine(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on the loop of ``sendarix serve``."""
    return event_loop.run(_configured_loop(), main)


def _configured_loop() -> EventLoop:
    return EventLoop(os.environ.get("SENDARIX_EVENT_LOOP", "auto").strip().lower())
