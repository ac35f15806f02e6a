"""Identifiers that sort by creation time.

An id is a prefix and 26 Crockford base32 characters: 48 bits of Unix time in
milliseconds, then 80 random bits (the ULID layout). Sorting ids sorts by
creation time to the millisecond, which list endpoints use as their order.
The caller passes the random bytes, so the core stays free of I/O.
"""

from __future__ import annotations

from datetime import datetime

__all__ = ["MonotonicIds", "is_id", "new_id"]

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
# Every pair of characters, indexed by the 10 bits it encodes, so encoding
# takes 13 lookups rather than 26.
_PAIRS = tuple(first + second for first in _ALPHABET for second in _ALPHABET)
_PAIR_SHIFTS = tuple(range(120, -1, -10))
_RANDOM_BYTES = 10
_LENGTH = 26


def new_id(prefix: str, now: datetime, random_bytes: bytes) -> str:
    """Return ``prefix_`` followed by a time-ordered ULID string."""
    if len(random_bytes) != _RANDOM_BYTES:
        raise ValueError(
            f"new_id needs {_RANDOM_BYTES} random bytes, got {len(random_bytes)}"
        )
    return _encode(
        prefix, int(now.timestamp() * 1000), int.from_bytes(random_bytes, "big")
    )


def is_id(value: str, prefix: str) -> bool:
    """Return whether ``value`` has the form of an id with ``prefix``."""
    head, separator, tail = value.partition("_")
    return (
        head == prefix
        and bool(separator)
        and len(tail) == _LENGTH
        and all(character in _ALPHABET for character in tail)
    )


def _encode(prefix: str, milliseconds: int, random_part: int) -> str:
    value = (milliseconds << 80) | random_part
    pairs = [_PAIRS[(value >> shift) & 1023] for shift in _PAIR_SHIFTS]
    return f"{prefix}_{''.join(pairs)}"


class MonotonicIds:
    """Ids that also sort by creation order within one millisecond.

    When two ids of one prefix fall in the same millisecond, the second
    reuses the first's random part plus one (the ULID monotonic rule), so
    messages created in a burst by this process list in submission order.
    """

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, int]] = {}

    def new_id(self, prefix: str, now: datetime, random_bytes: bytes) -> str:
        milliseconds = int(now.timestamp() * 1000)
        random_part = int.from_bytes(random_bytes, "big")
        last = self._last.get(prefix)
        if last is not None and last[0] >= milliseconds:
            milliseconds, random_part = last[0], last[1] + 1
            if random_part >= 1 << 80:
                # The random part overflowed: borrow the next millisecond.
                milliseconds, random_part = milliseconds + 1, 0
        self._last[prefix] = (milliseconds, random_part)
        return _encode(prefix, milliseconds, random_part)
