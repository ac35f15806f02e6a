"""Settings shared by every listening socket of Sendarix."""

from __future__ import annotations

__all__ = ["LISTEN_BACKLOG"]

# Connections the kernel queues before the server accepts them; uvicorn's
# default. asyncio's default of 100 drops clients of a larger burst, which
# then wait for a greeting that never comes.
LISTEN_BACKLOG = 2048
