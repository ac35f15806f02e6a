"""Destination pacing: limits per destination site, token buckets, slow-down.

A destination site is the set of MX hosts a recipient domain resolves to
(``site_key``), so every domain hosted by one set of servers shares one
budget. Limits come from the routing rule of a message. The state that
workers share (tokens, the slow-down factor, connection slots) lives in the
database. This module only computes; time is always a parameter.

A token bucket admits at most ``burst + rate * T`` messages in any window
of ``T`` seconds, where ``burst`` is one second's worth of the rate and at
least one message. A throttling reply halves the site's factor, which scales
both its message rate and its connection cap, and the factor then recovers
linearly to 1 (additive increase, multiplicative decrease).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from datetime import datetime, timedelta

import attrs

__all__ = [
    "DECREASE_HOLD",
    "MIN_FACTOR",
    "RECOVERY_PER_SECOND",
    "THROTTLED_BASE_CONNECTIONS",
    "Grant",
    "PacingLimits",
    "SiteRecord",
    "Slowdown",
    "TokenBucket",
    "burst_for",
    "effective_connections",
    "effective_rate",
    "grant_messages",
    "is_throttling_reply",
    "messages_per_slot",
    "release_delays",
    "site_key",
    "take_connection_token",
    "take_tokens",
]

# The factor never drops below 1/64 of the configured limits.
MIN_FACTOR = 1 / 64
# The factor grows back by 0.01 a second: from 0.5 to 1 in 50 seconds.
RECOVERY_PER_SECOND = 0.01
# Throttling replies within this time after a decrease cause no further one,
# because the messages already in flight were sent into the same overload.
DECREASE_HOLD = timedelta(seconds=5)
# The connection cap that a throttled site without ``max_connections`` gets
# scaled from; 10 is also the default per-process pool size per host.
THROTTLED_BASE_CONNECTIONS = 10

# Released messages come back no sooner than this and no later than the cap.
MIN_RELEASE_DELAY = 0.2
MAX_RELEASE_DELAY = 600.0

# A worker admits enough messages per connection slot of a capped site to
# keep the slot busy for this many seconds, and they wait in the process
# for a free slot. The time is longer than MIN_RELEASE_DELAY, so sessions
# stay busy until the messages handed back are claimed again.
SLOT_BACKLOG_SECONDS = 0.5
MAX_MESSAGES_PER_SLOT = 50


_POSITIVE = attrs.validators.optional(attrs.validators.gt(0))


@attrs.frozen(kw_only=True)
class PacingLimits:
    """Limits a routing rule sets per destination site; ``None`` is no limit.

    ``max_connections`` and the rates hold across every worker that shares
    the database. ``messages_per_connection`` is applied by each process's
    connection pool.
    """

    max_connections: int | None = attrs.field(default=None, validator=_POSITIVE)
    messages_per_connection: int | None = attrs.field(default=None, validator=_POSITIVE)
    messages_per_second: float | None = attrs.field(default=None, validator=_POSITIVE)
    messages_per_minute: float | None = attrs.field(default=None, validator=_POSITIVE)
    connections_per_minute: float | None = attrs.field(
        default=None, validator=_POSITIVE
    )

    @property
    def message_rate(self) -> float | None:
        """Messages per second: the stricter of the two message limits."""
        rates = [
            rate
            for rate in (
                self.messages_per_second,
                None
                if self.messages_per_minute is None
                else self.messages_per_minute / 60,
            )
            if rate is not None
        ]
        return min(rates, default=None)

    @property
    def connection_rate(self) -> float | None:
        """New connections per second."""
        if self.connections_per_minute is None:
            return None
        return self.connections_per_minute / 60

    @property
    def is_shared(self) -> bool:
        """Whether the limits need state shared between workers."""
        return (
            self.max_connections is not None
            or self.message_rate is not None
            or self.connection_rate is not None
        )


def site_key(mx_hosts: Sequence[str]) -> str:
    """Return the destination site of a domain with these MX hosts.

    The key is the host names, lower-cased, without a trailing dot, sorted
    and joined with commas. A domain without MX records is delivered to its
    own address records, so its MX host is the domain itself.
    """
    names = sorted({host.lower().rstrip(".") for host in mx_hosts if host})
    if not names:
        raise ValueError("a destination site needs at least one MX host name")
    return ",".join(names)


def burst_for(rate: float) -> float:
    """Return a bucket's capacity: one second's worth of ``rate``, at least 1."""
    return max(1.0, rate)


@attrs.frozen
class TokenBucket:
    """Tokens left at ``refilled_at``; one token admits one message."""

    tokens: float
    refilled_at: datetime


def take_tokens(
    bucket: TokenBucket | None,
    *,
    rate: float,
    wanted: int,
    now: datetime,
) -> tuple[TokenBucket, int]:
    """Refill ``bucket`` up to ``now`` and take up to ``wanted`` whole tokens.

    A missing bucket starts full. Returns the bucket after the grant and the
    number of tokens granted. A ``now`` earlier than ``refilled_at`` (clocks
    of two nodes that disagree) refills nothing.
    """
    if rate <= 0:
        raise ValueError(f"rate must be positive, not {rate}")
    burst = burst_for(rate)
    if bucket is None:
        available = burst
    else:
        elapsed = max(0.0, (now - bucket.refilled_at).total_seconds())
        available = min(burst, bucket.tokens + elapsed * rate)

    granted = max(0, min(wanted, math.floor(available)))
    return TokenBucket(tokens=available - granted, refilled_at=now), granted


@attrs.frozen(kw_only=True)
class Slowdown:
    """How far throttling replies slowed a site: ``factor`` at ``changed_at``.

    The factor recovers by ``RECOVERY_PER_SECOND`` after ``changed_at``;
    ``factor_at`` computes it, so nothing has to run to recover a site.
    """

    factor: float = 1.0
    changed_at: datetime | None = None

    def factor_at(self, now: datetime) -> float:
        if self.changed_at is None or self.factor >= 1.0:
            return 1.0
        elapsed = max(0.0, (now - self.changed_at).total_seconds())
        return min(1.0, self.factor + RECOVERY_PER_SECOND * elapsed)

    def is_slowed(self, now: datetime) -> bool:
        return self.factor_at(now) < 1.0

    def throttled(self, now: datetime) -> Slowdown:
        """Return the state after a throttling reply at ``now``: the factor
        halves, unless it already did within ``DECREASE_HOLD``."""
        recent = self.changed_at is not None and now - self.changed_at < DECREASE_HOLD
        if recent and self.factor < 1.0:
            return self
        halved = max(MIN_FACTOR, self.factor_at(now) / 2)
        return Slowdown(factor=halved, changed_at=now)


def effective_rate(limits: PacingLimits, factor: float) -> float | None:
    """Messages per second the site may take now; ``None`` is unlimited."""
    rate = limits.message_rate
    return None if rate is None else rate * factor


def effective_connections(limits: PacingLimits, factor: float) -> int | None:
    """Connections the site may have open now, across all workers.

    A site without ``max_connections`` has no cap until a throttling reply
    slows it, and then a cap scaled from ``THROTTLED_BASE_CONNECTIONS``.
    """
    base = limits.max_connections
    if base is None:
        if factor >= 1.0:
            return None
        base = THROTTLED_BASE_CONNECTIONS
    return max(1, math.floor(base * factor))


@attrs.frozen(kw_only=True)
class SiteRecord:
    """The state of one site that every worker shares."""

    bucket: TokenBucket | None = None
    connection_bucket: TokenBucket | None = None
    slowdown: Slowdown = attrs.field(factory=Slowdown)


@attrs.frozen(kw_only=True)
class Grant:
    """Permission for one worker at a site now.

    ``messages`` may start; ``slots`` is the number of connections the
    worker may hold in total (0 when the site has no cap), and ``usable``
    how many of them it may send on now: fewer than ``slots`` while it has
    more sessions busy than its share. ``rate`` and ``connections`` are the
    site's effective limits, ``None`` when unlimited.
    """

    messages: int
    slots: int
    rate: float | None
    connections: int | None
    usable: int = 0


def messages_per_slot(seconds_per_message: float) -> int:
    """Return how many messages a worker may admit per connection slot when
    a session spends ``seconds_per_message`` on each: enough for
    ``SLOT_BACKLOG_SECONDS``, from 1 to ``MAX_MESSAGES_PER_SLOT``."""
    if seconds_per_message <= 0:
        return MAX_MESSAGES_PER_SLOT
    wanted = math.ceil(SLOT_BACKLOG_SECONDS / seconds_per_message)
    return max(1, min(MAX_MESSAGES_PER_SLOT, wanted))


def grant_messages(
    record: SiteRecord,
    *,
    limits: PacingLimits,
    wanted: int,
    in_flight: int,
    held_by_others: int,
    held: int = 0,
    sending: int = 0,
    per_slot: int = 1,
    beyond_slots: int | None = None,
    holders: int = 0,
    waiting: int = 0,
    now: datetime,
) -> tuple[SiteRecord, Grant]:
    """Decide how many of ``wanted`` messages a worker may start at a site.

    The worker has ``in_flight`` deliveries there, of which ``sending`` use
    a connection slot now, and holds ``held`` slots. ``holders`` other
    workers hold ``held_by_others`` slots and ``waiting`` others asked for
    slots and got none. Slots are granted first, up to the site's cap and,
    while others wait, up to an equal share of it. A worker alone at the
    site keeps the slots it holds within that limit, because their sessions
    may be open and idle. Otherwise it keeps a slot for each delivery
    sending, so it may end up with fewer slots than before but never with
    fewer than ``sending``.

    Each usable slot takes up to ``per_slot`` deliveries, which wait in the
    worker for a free slot, and ``beyond_slots`` caps the deliveries that
    may wait (None: no cap). A worker with more sessions busy than it may
    use gets no more messages until they fit. Tokens are taken only for the
    messages the slots leave room for, so no token is wasted.
    """
    factor = record.slowdown.factor_at(now)
    cap = effective_connections(limits, factor)
    slots = usable = 0
    room = wanted
    if cap is not None:
        limit = cap - held_by_others
        if waiting:
            limit = min(limit, max(1, cap // (holders + waiting + 1)))
        alone = not held_by_others and not waiting
        kept = held if alone else 0
        slots = max(sending, min(max(in_flight + wanted, kept), limit))
        share = max(0, min(slots, limit))
        # A worker keeps one session while it holds a slot, so its waiting
        # deliveries go on even when others hold the whole cap.
        usable = max(min(slots, 1), share)
        room = 0
        if sending <= share:
            room = max(0, min(wanted, share * per_slot - in_flight))
        if beyond_slots is not None:
            room = min(room, max(0, share + beyond_slots - in_flight))

    rate = effective_rate(limits, factor)
    bucket = record.bucket
    granted = room
    if rate is not None and room > 0:
        bucket, granted = take_tokens(bucket, rate=rate, wanted=room, now=now)
    grant = Grant(
        messages=granted, slots=slots, rate=rate, connections=cap, usable=usable
    )
    return attrs.evolve(record, bucket=bucket), grant


def take_connection_token(
    record: SiteRecord, *, limits: PacingLimits, now: datetime
) -> tuple[SiteRecord, bool]:
    """Take a token for one new connection; return whether there was one."""
    rate = limits.connection_rate
    if rate is None:
        return record, True
    rate *= record.slowdown.factor_at(now)
    bucket, granted = take_tokens(
        record.connection_bucket, rate=rate, wanted=1, now=now
    )
    return attrs.evolve(record, connection_bucket=bucket), granted == 1


# Reply texts that servers use for rate and volume limits, at the start of
# a word, so that "corporate" or "separate" do not count as "rate".
# "Try again later" is left out: servers send it with any temporary
# failure, greylisting and full disks included.
_RATE_LIMIT_TEXT = re.compile(
    r"\b(?:rate|too many|throttl|slow down|exceeded|limit|reputation)",
    re.IGNORECASE,
)
_GREYLISTING_TEXT = re.compile(r"grey|gray", re.IGNORECASE)


def is_throttling_reply(code: int | None, enhanced_code: str | None, text: str) -> bool:
    """Return whether a temporary failure requests that the sender slow down.

    These are ``421`` (the server closes the session, often for too many
    connections), RFC 3463 security and policy codes ``4.7.x`` (``4.7.0``,
    ``4.7.1``, Gmail's ``4.7.28``), and ``450``/``451`` replies whose text
    speaks of rates or limits. Greylisting (a reply whose text mentions grey
    or gray listing) asks for a later retry, not a lower rate, and ``454``
    (TLS or authentication not available now, RFC 3207 and RFC 4954) is
    about the session, whatever its enhanced code.
    """
    if code == 421:
        return True
    if code == 454:
        return False
    if _GREYLISTING_TEXT.search(text) is not None:
        return False
    if enhanced_code is not None and enhanced_code.startswith("4.7."):
        return True
    if code in {450, 451}:
        return _RATE_LIMIT_TEXT.search(text) is not None
    return False


def release_delays(
    count: int,
    *,
    rate: float | None,
    connections: int | None,
    seconds_per_message: float | None,
) -> list[float]:
    """Return, in seconds, when each of ``count`` messages that were not
    admitted should be claimed again.

    The messages are spread over the time the site needs to take them at
    its current rate, or at ``connections`` sessions that each spend
    ``seconds_per_message`` on a message, so claims do not keep returning
    messages that can't be sent yet. Before the first delivery to the site
    has told how long one takes (``seconds_per_message`` is None), only the
    rate spreads them.
    """
    throughputs = []
    if rate is not None:
        throughputs.append(rate)
    if connections is not None and seconds_per_message is not None:
        throughputs.append(connections / max(seconds_per_message, 0.001))
    throughput = min(throughputs, default=None)

    delays = []
    for position in range(count):
        delay = MIN_RELEASE_DELAY
        if throughput is not None:
            delay = max(delay, (position + 1) / throughput)
        delays.append(min(delay, MAX_RELEASE_DELAY))
    return delays
