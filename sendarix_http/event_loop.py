"""The event loop that ``sendarix serve`` and ``sendarix worker`` run on.

uvloop is the default where it is installed. Its sockets send and receive
without releasing the GIL, while asyncio's loop releases it around every
``send`` and ``recv``. In a worker the database threads then take the GIL
in between, and the event loop waits to get it back, up to the switch
interval (5 ms) each time. A worker delivering to smtp-sink used less CPU
per message on uvloop in five of six paired runs, 15 to 20% less in four
(docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from sendarix_backends.settings import EventLoop
from sendarix_core.errors import ConfigurationError

__all__ = ["loop_factory", "loop_name", "run"]

T = TypeVar("T")


def loop_factory(choice: EventLoop) -> Callable[[], asyncio.AbstractEventLoop]:
    """Return what creates the event loop ``choice`` names.

    Raises ``ConfigurationError`` when uvloop is asked for by name and is
    not installed.
    """
    if choice is EventLoop.ASYNCIO:
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        if choice is EventLoop.UVLOOP:
            raise ConfigurationError(
                "SENDARIX_EVENT_LOOP is uvloop but uvloop is not installed; "
                "install it (pip install uvloop) or set asyncio"
            ) from None
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def loop_name(choice: EventLoop) -> str:
    """Return the name of the loop that ``choice`` gives here: uvloop or asyncio."""
    return "asyncio" if loop_factory(choice) is asyncio.new_event_loop else "uvloop"


def run(choice: EventLoop, main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new loop of the chosen kind."""
    try:
        factory = loop_factory(choice)
    except ConfigurationError:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
