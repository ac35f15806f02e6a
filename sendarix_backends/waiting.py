"""Tasks waiting in line on the event loop, oldest first.

A waiter is a future in a deque. The task that frees a resource sets the
oldest waiter's result, and may hand the resource over with it. A waiter
cancelled after it was woken but before it ran passes the wake-up on, so
that none is lost.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

__all__ = ["wait_in_line", "wake_one"]


def wake_one(waiters: deque[asyncio.Future[None]]) -> bool:
    """Wake the longest waiting task; return False when none waits."""
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return True
    return False


async def wait_in_line(
    waiters: deque[asyncio.Future[None]], pass_on: Callable[[], object]
) -> None:
    """Wait until the future this call appends to ``waiters`` is woken.

    ``pass_on`` runs when the task is cancelled after it was woken but
    before it ran. It gives what the wake-up handed over to the next waiter.
    """
    waiter = asyncio.get_running_loop().create_future()
    waiters.append(waiter)
    try:
        await waiter
    except BaseException:
        if waiter.done() and not waiter.cancelled():
            pass_on()
        elif waiter in waiters:
            waiters.remove(waiter)
        raise
