"""Token buckets, the slow-down factor and throttling replies, without I/O."""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sendarix_core.pacing import (
    MIN_FACTOR,
    PacingLimits,
    SiteRecord,
    Slowdown,
    TokenBucket,
    effective_connections,
    effective_rate,
    grant_messages,
    is_throttling_reply,
    messages_per_slot,
    release_delays,
    site_key,
    take_connection_token,
    take_tokens,
)
from tests.core.factories import T0


def seconds(value: float) -> timedelta:
    return timedelta(seconds=value)


def test_new_bucket_grants_one_second() -> None:
    bucket, granted = take_tokens(None, rate=10, wanted=50, now=T0)

    assert granted == 10
    assert bucket.tokens == 0


def test_bucket_refills_at_rate() -> None:
    empty = TokenBucket(tokens=0, refilled_at=T0)

    bucket, granted = take_tokens(empty, rate=10, wanted=50, now=T0 + seconds(0.5))

    assert granted == 5
    assert bucket.refilled_at == T0 + seconds(0.5)


def test_bucket_capped_at_burst() -> None:
    empty = TokenBucket(tokens=0, refilled_at=T0)

    _, granted = take_tokens(empty, rate=10, wanted=50, now=T0 + seconds(3600))

    assert granted == 10


def test_slow_rate_bursts_one_message() -> None:
    _, first = take_tokens(None, rate=1 / 60, wanted=5, now=T0)

    assert first == 1


def test_bucket_keeps_fractions() -> None:
    empty = TokenBucket(tokens=0, refilled_at=T0)

    bucket, granted = take_tokens(empty, rate=1, wanted=1, now=T0 + seconds(0.6))
    assert granted == 0
    _, later = take_tokens(bucket, rate=1, wanted=1, now=T0 + seconds(1.0))
    assert later == 1


def test_bucket_ignores_clock_behind() -> None:
    bucket = TokenBucket(tokens=2.5, refilled_at=T0)

    after, granted = take_tokens(bucket, rate=10, wanted=9, now=T0 - seconds(5))

    assert granted == 2
    assert after.tokens == pytest.approx(0.5)


def test_bucket_rate_holds_over_window() -> None:
    """Over any run of claims, no more than burst + rate * T tokens go out."""
    bucket = None
    granted_total = 0
    for step in range(1, 101):
        bucket, granted = take_tokens(
            bucket, rate=20, wanted=7, now=T0 + seconds(step * 0.05)
        )
        granted_total += granted

    assert granted_total <= 20 + 20 * 5


def test_slowdown_halves_once_per_hold() -> None:
    first = Slowdown().throttled(T0)
    second = first.throttled(T0 + seconds(1))
    third = second.throttled(T0 + seconds(6))

    assert first.factor == 0.5
    assert second == first
    assert third.factor == pytest.approx((0.5 + 0.06) / 2)


def test_slowdown_recovers_linearly() -> None:
    slowed = Slowdown().throttled(T0)

    assert slowed.factor_at(T0 + seconds(25)) == pytest.approx(0.75)
    assert slowed.factor_at(T0 + seconds(50)) == 1.0
    assert not slowed.is_slowed(T0 + seconds(60))


def test_slowdown_has_floor() -> None:
    state = Slowdown()
    for step in range(20):
        state = state.throttled(T0 + seconds(step * 10))

    assert state.factor >= MIN_FACTOR


def test_effective_rate_scales() -> None:
    limits = PacingLimits(messages_per_second=10, messages_per_minute=300)

    assert effective_rate(limits, 1.0) == 5
    assert effective_rate(limits, 0.5) == 2.5
    assert effective_rate(PacingLimits(), 0.5) is None


def test_effective_connections_scale() -> None:
    assert effective_connections(PacingLimits(max_connections=5), 0.5) == 2
    assert effective_connections(PacingLimits(max_connections=1), 0.1) == 1
    assert effective_connections(PacingLimits(), 1.0) is None
    assert effective_connections(PacingLimits(), 0.5) == 5


def test_limits_reject_zero() -> None:
    with pytest.raises(ValueError, match="max_connections"):
        PacingLimits(max_connections=0)


def test_limits_shared_state() -> None:
    assert not PacingLimits(messages_per_connection=10).is_shared
    assert PacingLimits(connections_per_minute=6).is_shared


@pytest.mark.parametrize(
    ("code", "enhanced", "text", "expected"),
    [
        (421, "4.7.0", "4.7.0 Too many connections", True),
        (421, None, "Service not available", True),
        (451, "4.7.1", "4.7.1 rate limited, slow down", True),
        (450, "4.7.28", "4.7.28 unusual rate of unsolicited mail", True),
        (451, "4.7.1", "4.7.1 greylisted, try later", False),
        (451, "4.3.0", "4.3.0 mailbox busy", False),
        (451, None, "too many messages from your IP", True),
        (451, "4.3.0", "4.3.0 Try again later", False),
        (450, "4.2.0", "4.2.0 Greylisted, please try again later", False),
        (452, "4.2.2", "mailbox full", False),
        (454, "4.7.0", "4.7.0 TLS not available due to temporary reason", False),
        (None, "4.4.1", "connection refused", False),
        (451, "4.7.1", "4.7.1 ratelimited", True),
        (451, "4.3.0", "4.3.0 failure at corporate gateway, try later", False),
        (451, "4.3.0", "4.3.0 separate queue busy", False),
        (451, "4.3.0", "4.3.0 unlimited retries", False),
    ],
)
def test_throttling_replies(
    code: int | None, enhanced: str | None, text: str, expected: bool
) -> None:
    assert is_throttling_reply(code, enhanced, text) is expected


def test_site_key_sorts_hosts() -> None:
    key = site_key(["MX2.Example.test.", "mx1.example.test", "mx2.example.test"])

    assert key == "mx1.example.test,mx2.example.test"


def test_site_key_needs_host() -> None:
    with pytest.raises(ValueError, match="MX host"):
        site_key([])


def test_release_spread_by_rate() -> None:
    delays = release_delays(4, rate=2, connections=None, seconds_per_message=1)

    assert delays == [0.5, 1.0, 1.5, 2.0]


def test_release_spread_by_connections() -> None:
    delays = release_delays(3, rate=None, connections=2, seconds_per_message=0.5)

    assert delays == [0.25, 0.5, 0.75]


def test_release_without_limits_waits_floor() -> None:
    delays = release_delays(2, rate=None, connections=None, seconds_per_message=1)

    assert delays == [0.2, 0.2]


def test_release_delay_capped() -> None:
    [delay] = release_delays(1, rate=1 / 3600, connections=None, seconds_per_message=1)

    assert delay == 600


def test_grant_caps_slots_first() -> None:
    limits = PacingLimits(max_connections=3, messages_per_second=100)

    record, grant = grant_messages(
        SiteRecord(),
        limits=limits,
        wanted=10,
        in_flight=0,
        held_by_others=1,
        holders=1,
        now=T0,
    )

    assert grant.slots == 2
    assert grant.messages == 2
    assert record.bucket is not None
    assert record.bucket.tokens == 98


def test_grant_keeps_slots_in_flight() -> None:
    limits = PacingLimits(max_connections=2)

    _, grant = grant_messages(
        SiteRecord(),
        limits=limits,
        wanted=5,
        in_flight=2,
        sending=2,
        held=2,
        held_by_others=2,
        holders=1,
        now=T0,
    )

    assert grant.slots == 2
    assert grant.messages == 0


def test_grant_fills_each_slot() -> None:
    limits = PacingLimits(max_connections=3, messages_per_second=100)

    record, grant = grant_messages(
        SiteRecord(),
        limits=limits,
        wanted=50,
        in_flight=4,
        sending=3,
        held=3,
        per_slot=10,
        held_by_others=0,
        now=T0,
    )

    assert grant.slots == 3
    assert grant.messages == 26
    assert record.bucket is not None
    assert record.bucket.tokens == 74


def test_grant_over_share_drains_first() -> None:
    limits = PacingLimits(max_connections=4)

    _, grant = grant_messages(
        SiteRecord(),
        limits=limits,
        wanted=10,
        in_flight=12,
        sending=4,
        held=4,
        per_slot=5,
        held_by_others=0,
        waiting=1,
        now=T0,
    )

    # Its share is 2 slots of 5 messages; it holds 4 busy sessions and 12
    # deliveries, so it keeps its slots and gets nothing until they drain.
    assert grant.slots == 4
    assert grant.messages == 0


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [(0.25, 2), (0.5, 1), (30.0, 1), (0.01, 50), (0.001, 50), (0.0, 50), (0.1, 5)],
)
def test_messages_per_slot(seconds: float, expected: int) -> None:
    assert messages_per_slot(seconds) == expected


def test_grant_shares_with_waiting() -> None:
    limits = PacingLimits(max_connections=4)

    _, holder = grant_messages(
        SiteRecord(),
        limits=limits,
        wanted=10,
        in_flight=1,
        held_by_others=0,
        waiting=1,
        now=T0,
    )
    _, waiter = grant_messages(
        SiteRecord(),
        limits=limits,
        wanted=10,
        in_flight=0,
        held_by_others=2,
        holders=1,
        now=T0,
    )

    assert holder.slots == 2
    assert waiter.slots == 2


def test_grant_keeps_held_slots() -> None:
    _, grant = grant_messages(
        SiteRecord(),
        limits=PacingLimits(max_connections=5),
        wanted=1,
        in_flight=0,
        held=4,
        held_by_others=0,
        now=T0,
    )

    assert grant.slots == 4
    assert grant.messages == 1


def test_grant_held_slots_shrink_to_cap() -> None:
    record = SiteRecord(slowdown=Slowdown().throttled(T0))

    _, grant = grant_messages(
        record,
        limits=PacingLimits(max_connections=6),
        wanted=1,
        in_flight=0,
        held=6,
        held_by_others=0,
        now=T0,
    )

    assert grant.slots == 3
    assert grant.messages == 1


def test_grant_held_slots_freed_for_holder() -> None:
    # Another worker has one slot and requests more, so idle slots go back.
    _, grant = grant_messages(
        SiteRecord(),
        limits=PacingLimits(max_connections=10),
        wanted=1,
        in_flight=0,
        held=9,
        held_by_others=1,
        holders=1,
        now=T0,
    )

    assert grant.slots == 1
    assert grant.messages == 1


def test_grant_held_slots_freed_for_waiting() -> None:
    _, grant = grant_messages(
        SiteRecord(),
        limits=PacingLimits(max_connections=4),
        wanted=1,
        in_flight=0,
        held=4,
        held_by_others=0,
        waiting=1,
        now=T0,
    )

    assert grant.slots == 1
    assert grant.messages == 1


def test_grant_rate_only() -> None:
    _, grant = grant_messages(
        SiteRecord(),
        limits=PacingLimits(messages_per_minute=120),
        wanted=5,
        in_flight=0,
        held_by_others=0,
        now=T0,
    )

    assert grant.messages == 2
    assert grant.slots == 0
    assert grant.connections is None


def test_grant_slowed_site_gets_cap() -> None:
    record = SiteRecord(slowdown=Slowdown().throttled(T0))

    _, grant = grant_messages(
        record,
        limits=PacingLimits(),
        wanted=20,
        in_flight=0,
        held_by_others=0,
        now=T0,
    )

    assert grant.connections == 5
    assert grant.messages == 5


def test_connection_token_rate() -> None:
    limits = PacingLimits(connections_per_minute=60)

    record, first = take_connection_token(SiteRecord(), limits=limits, now=T0)
    record, second = take_connection_token(record, limits=limits, now=T0)
    _, third = take_connection_token(record, limits=limits, now=T0 + seconds(1))

    assert first
    assert not second
    assert third


@given(
    cap=st.integers(1, 20),
    wanted=st.integers(0, 200),
    in_flight=st.integers(0, 200),
    held=st.integers(0, 20),
    sending=st.integers(0, 20),
    per_slot=st.integers(1, 50),
    beyond_slots=st.none() | st.integers(0, 100),
    held_by_others=st.integers(0, 20),
    holders=st.integers(0, 5),
    waiting=st.integers(0, 5),
)
def test_grant_stays_within_cap(
    cap: int,
    wanted: int,
    in_flight: int,
    held: int,
    sending: int,
    per_slot: int,
    beyond_slots: int | None,
    held_by_others: int,
    holders: int,
    waiting: int,
) -> None:
    sending = min(sending, in_flight)
    _, grant = grant_messages(
        SiteRecord(),
        limits=PacingLimits(max_connections=cap),
        wanted=wanted,
        in_flight=in_flight,
        held=held,
        sending=sending,
        per_slot=per_slot,
        beyond_slots=beyond_slots,
        held_by_others=held_by_others,
        holders=holders,
        waiting=waiting,
        now=T0,
    )

    # Slots beyond the cap are only those whose sessions are busy now.
    assert grant.slots <= max(sending, cap - held_by_others)
    assert grant.slots >= sending
    assert grant.usable <= grant.slots
    assert grant.usable >= min(grant.slots, 1)
    assert 0 <= grant.messages <= wanted
    if grant.messages:
        # Every delivery admitted has a slot to wait for, within the cap.
        assert sending <= grant.usable
        assert in_flight + grant.messages <= grant.usable * per_slot
        assert grant.usable <= cap - held_by_others
    if grant.messages and beyond_slots is not None:
        assert in_flight + grant.messages <= grant.usable + beyond_slots


def test_lowered_cap_admits_nothing() -> None:
    _, grant = grant_messages(
        SiteRecord(),
        limits=PacingLimits(max_connections=2),
        wanted=10,
        in_flight=20,
        sending=4,
        held=4,
        per_slot=25,
        held_by_others=0,
        now=T0,
    )

    # Its four busy sessions are above the cap of 2: it keeps their slots,
    # sends on two, and gets no messages until the rest are done.
    assert grant.slots == 4
    assert grant.usable == 2
    assert grant.messages == 0


def test_grant_keeps_one_session_going() -> None:
    _, grant = grant_messages(
        SiteRecord(),
        limits=PacingLimits(max_connections=2),
        wanted=10,
        in_flight=5,
        sending=1,
        held=1,
        per_slot=5,
        held_by_others=2,
        holders=1,
        now=T0,
    )

    assert grant.slots == 1
    assert grant.usable == 1
    assert grant.messages == 0


def test_waiting_budget_caps_grant() -> None:
    _, grant = grant_messages(
        SiteRecord(),
        limits=PacingLimits(max_connections=3),
        wanted=100,
        in_flight=0,
        per_slot=50,
        beyond_slots=7,
        held_by_others=0,
        now=T0,
    )

    assert grant.usable == 3
    assert grant.messages == 10


def test_release_before_first_delivery_not_spread() -> None:
    delays = release_delays(3, rate=None, connections=2, seconds_per_message=None)

    assert delays == [0.2, 0.2, 0.2]
