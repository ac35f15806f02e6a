"""Time-ordered ids: their encoding, order and monotonic rule."""

from __future__ import annotations

import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sendarix_core.ids import MonotonicIds, is_id, new_id

CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
T0 = datetime(2026, 4, 19, 12, 0, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

moments = st.datetimes(
    min_value=datetime(1970, 1, 1),
    max_value=datetime(9999, 12, 31),
    timezones=st.just(UTC),
)
random_parts = st.binary(min_size=10, max_size=10)


def spelled_out(milliseconds: int, random_bytes: bytes) -> str:
    """The 26 characters of a ULID, five bits at a time from the top."""
    value = (milliseconds << 80) | int.from_bytes(random_bytes, "big")
    return "".join(CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


@given(moments, random_parts)
def test_encoding_matches_ulid_layout(now: datetime, random: bytes) -> None:
    identifier = new_id("msg", now, random)

    milliseconds = (now - EPOCH) // timedelta(milliseconds=1)
    assert identifier == "msg_" + spelled_out(milliseconds, random)
    assert is_id(identifier, "msg")


@given(moments, random_parts)
def test_monotonic_matches_plain_across_milliseconds(
    now: datetime, random: bytes
) -> None:
    ids = MonotonicIds()
    earlier = now - timedelta(milliseconds=1)

    if earlier.year >= 1970:
        ids.new_id("evt", earlier, bytes(10))
    assert ids.new_id("evt", now, random) == new_id("evt", now, random)


def test_time_matches_other_implementations() -> None:
    # Other ULID implementations test that 1469918176385 ms encodes as
    # 01ARYZ6S41.
    moment = datetime.fromtimestamp(1469918176.385, UTC)

    assert new_id("x", moment, bytes(10))[2:12] == "01aryz6s41"


def test_time_is_exact_where_floats_round() -> None:
    # As a float, this moment's timestamp times 1000 is 35186054400048.0.
    moment = datetime(3085, 1, 1, 0, 0, 0, 47_993, tzinfo=UTC)

    assert new_id("x", moment, bytes(10)) == "x_" + spelled_out(
        35_186_054_400_047, bytes(10)
    )


def test_naive_time_counts_as_local_time() -> None:
    naive = datetime(2026, 4, 19, 14, 30, 0, 123_000)
    local = naive.astimezone(UTC)

    assert new_id("x", naive, bytes(10)) == new_id("x", local, bytes(10))
    assert MonotonicIds().new_id("x", naive, bytes(10)) == new_id("x", local, bytes(10))


@given(st.lists(random_parts, min_size=2, max_size=50))
def test_one_millisecond_sorts_in_order(parts: list[bytes]) -> None:
    ids = MonotonicIds()

    generated = [ids.new_id("msg", T0, part) for part in parts]

    assert generated == sorted(generated)
    assert len(set(generated)) == len(generated)


def test_overflow_borrows_next_millisecond() -> None:
    ids = MonotonicIds()

    first = ids.new_id("msg", T0, b"\xff" * 10)
    second = ids.new_id("msg", T0, bytes(10))

    assert second > first
    assert second == new_id("msg", T0 + timedelta(milliseconds=1), bytes(10))


def test_prefixes_count_apart() -> None:
    ids = MonotonicIds()
    random = bytes(range(10))

    message = ids.new_id("msg", T0, random)
    event = ids.new_id("evt", T0, random)

    assert message[4:] == event[4:]


@pytest.mark.parametrize("size", [0, 9, 11, 16])
def test_random_part_needs_ten_bytes(size: int) -> None:
    with pytest.raises(ValueError, match=f"needs 10 random bytes, got {size}"):
        new_id("msg", T0, bytes(size))
    with pytest.raises(ValueError, match=f"needs 10 random bytes, got {size}"):
        MonotonicIds().new_id("msg", T0, bytes(size))


def test_threads_sharing_ids_get_distinct_ones() -> None:
    ids = MonotonicIds()
    per_thread: list[list[str]] = [[] for _ in range(4)]

    def make(into: list[str]) -> None:
        for _ in range(20_000):
            into.append(ids.new_id("evt", T0, bytes(10)))

    # A switch interval of a microsecond makes threads take turns between
    # nearly any two bytecodes.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=make, args=(into,)) for into in per_thread]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)

    every = [identifier for into in per_thread for identifier in into]
    assert len(set(every)) == len(every)
