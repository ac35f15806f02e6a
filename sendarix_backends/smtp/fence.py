"""Hooks that run right before a message's DATA, and before its content.

The delivery worker sets ``DATA_FENCE`` in the task of one delivery. Once
DATA is on its way, the destination may accept the message at any moment,
so the worker uses the hook to allow only one message at a time between
sending DATA and saving the outcome (see ``sendarix_backends.delivery``).

``CONTENT_CHECK`` runs after the server's ``354``, right before the content.
With PIPELINING, DATA goes out with MAIL and RCPT, and their replies may
take long, so this is the last moment to keep a message from going out. A
check that raises makes the SMTP client drop the session. That aborts the
transaction: a server takes a message only once its content has ended with
the final dot.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextvars import ContextVar

__all__ = ["CONTENT_CHECK", "DATA_FENCE", "before_content", "before_data"]

DATA_FENCE: ContextVar[Callable[[], Awaitable[None]] | None] = ContextVar(
    "sendarix_data_fence", default=None
)


async def before_data() -> None:
    """Run the hook of the current delivery, if it has one."""
    hook = DATA_FENCE.get()
    if hook is not None:
        await hook()


CONTENT_CHECK: ContextVar[Callable[[], None] | None] = ContextVar(
    "sendarix_content_check", default=None
)


def before_content() -> None:
    """Run the content check of the current delivery, if it has one."""
    check = CONTENT_CHECK.get()
    if check is not None:
        check()
