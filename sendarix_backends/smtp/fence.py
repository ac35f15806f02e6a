"""A hook that runs right before a message's DATA is sent.

The delivery worker sets ``DATA_FENCE`` in the task of one delivery. Once
DATA is on its way, the destination may accept the message at any moment,
so the worker uses the hook to allow only one message at a time between
sending DATA and saving the outcome (see ``sendarix_backends.delivery``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar

__all__ = ["DATA_FENCE", "before_data"]

DATA_FENCE: ContextVar[Callable[[], Awaitable[None]] | None] = ContextVar(
    "sendarix_data_fence", default=None
)


async def before_data() -> None:
    """Run the hook of the current delivery, if it has one."""
    hook = DATA_FENCE.get()
    if hook is not None:
        await hook()
