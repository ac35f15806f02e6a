"""Identifiers that sort by creation time.

An id is a prefix and 26 Crockford base32 characters: 48 bits of Unix time in
milliseconds, then 80 random bits (the ULID layout). Sorting ids sorts by
creation time to the millisecond, which list endpoints use as their order.
The caller passes the random bytes, so the core stays free of I/O.
"""

from __future__ import annotations

from datetime import datetime

__all__ = ["new_id"]

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RANDOM_BYTES = 10


def new_id(prefix: str, now: datetime, random_bytes: bytes) -> str:
    """Return ``prefix_`` followed by a time-ordered ULID string."""
    if len(random_bytes) != _RANDOM_BYTES:
        raise ValueError(
            f"new_id needs {_RANDOM_BYTES} random bytes, got {len(random_bytes)}"
        )
    milliseconds = int(now.timestamp() * 1000)
    value = (milliseconds << 80) | int.from_bytes(random_bytes, "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars)).lower()}"
