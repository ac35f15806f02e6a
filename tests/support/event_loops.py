"""Parameters that run a test directory on asyncio's loop and on uvloop.

``sendarix serve`` and ``sendarix worker`` run on uvloop by default, while
a library user's application usually runs asyncio's own loop. The SMTP
client and server code reads and writes transports directly (STARTTLS,
pipelined replies), where the two loops differ most.
"""

from __future__ import annotations

import importlib.util

import pytest

__all__ = ["EVENT_LOOPS"]

EVENT_LOOPS = [
    pytest.param("asyncio", id="asyncio"),
    pytest.param(
        ("asyncio", {"use_uvloop": True}),
        id="uvloop",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("uvloop") is None, reason="needs uvloop"
        ),
    ),
]
