"""VERP return paths: ``bounces+<message_id>@<return path domain>``.

Each message goes out with its own envelope sender, so a bounce report
sent to that address names the message it is about (variable envelope
return path).
"""

from __future__ import annotations

import re

__all__ = ["VERP_PREFIX", "message_id_of", "return_path"]

VERP_PREFIX = "bounces+"
MESSAGE_ID = re.compile(r"^msg_[0-9a-z]{26}$")


def return_path(message_id: str, domain: str) -> str:
    """Return the VERP envelope sender of a message."""
    return f"{VERP_PREFIX}{message_id}@{domain}"


def message_id_of(address: str) -> str | None:
    """Return the message id a VERP address names, or ``None``."""
    local_part = address.rpartition("@")[0].lower()
    if not local_part.startswith(VERP_PREFIX):
        return None
    candidate = local_part.removeprefix(VERP_PREFIX)
    return candidate if MESSAGE_ID.match(candidate) else None
