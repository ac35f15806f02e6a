"""Analytics over the hourly rollups: counts, rates and latency percentiles.

Each processed event adds one to a counter keyed by (dimension, value, hour,
outcome), where the dimension is the total (``""``), a tag, or the recipient
domain. A ``message.delivered`` event also adds its delivery latency, the
time from acceptance (``scheduled_time`` for a scheduled message, else the
creation time) to delivery, to a log-scaled histogram under the same key.
Queries read only these rollups, so their cost grows with hours times
groups, not with events.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import attrs

from sendarix_core.representation import format_time
from sendarix_core.states import EventType

__all__ = [
    "ASYNC_BOUNCE",
    "OUTCOMES",
    "AnalyticsQuery",
    "GroupBy",
    "Interval",
    "LatencySample",
    "OutcomeCount",
    "build_report",
    "latency_bucket",
    "outcome_of",
]


class Interval(StrEnum):
    HOUR = "hour"
    DAY = "day"

    @property
    def length(self) -> timedelta:
        return timedelta(hours=1) if self is Interval.HOUR else timedelta(days=1)


class GroupBy(StrEnum):
    TAG = "tag"
    DOMAIN = "domain"


# Outcome names, in report order: the event type without its prefix.
OUTCOMES = (
    "scheduled",
    "queued",
    "accepted",
    "deferred",
    "delivered",
    "bounced",
    "complained",
    "suppressed",
    "cancelled",
    "expired",
    "unsubscribed",
)

# Bounce reports that arrived after delivery: counted in ``bounced`` too.
ASYNC_BOUNCE = "bounced_async"

# Four histogram buckets per doubling: a bucket spans a factor of 2^(1/4),
# so reporting its geometric middle is off by at most 2^(1/8) - 1, about 9 %.
_BUCKETS_PER_DOUBLING = 4


def outcome_of(event_type: str, data: Mapping[str, Any]) -> list[str]:
    """Return the counters one event adds to."""
    if event_type == EventType.WEBHOOK_DISABLED:
        return []
    if event_type not in _OUTCOME_NAMES:
        raise ValueError(f"{event_type!r} is not an event type")
    name = _OUTCOME_NAMES[event_type]
    if event_type == EventType.BOUNCED and data.get("asynchronous"):
        return [name, ASYNC_BOUNCE]
    return [name]


# The outcome name of each event type: the type without its prefix.
_OUTCOME_NAMES = {str(kind): kind.value.split(".", 1)[1] for kind in EventType}


def latency_bucket(latency: timedelta) -> int:
    """Return the histogram bucket of a latency; bucket 0 holds up to 1 ms."""
    milliseconds = latency.total_seconds() * 1000
    if milliseconds <= 1:
        return 0
    return math.floor(math.log2(milliseconds) * _BUCKETS_PER_DOUBLING) + 1


def bucket_middle_ms(bucket: int) -> float:
    """Return the geometric middle of a bucket, in milliseconds."""
    if bucket <= 0:
        return 0.5
    low = 2 ** ((bucket - 1) / _BUCKETS_PER_DOUBLING)
    return low * 2 ** (0.5 / _BUCKETS_PER_DOUBLING)


@attrs.frozen(kw_only=True)
class AnalyticsQuery:
    """A report request: [start, end) in ``interval`` buckets.

    ``start`` and ``end`` are aligned down to the interval (UTC), so a bucket
    is never partly counted. ``test_mode`` True reports on messages sent
    with test keys, False on the others.
    """

    start: datetime
    end: datetime
    interval: Interval = Interval.DAY
    group_by: GroupBy | None = None
    test_mode: bool = False


@attrs.frozen
class OutcomeCount:
    bucket: datetime
    group: str
    outcome: str
    count: int


@attrs.frozen
class LatencySample:
    bucket: datetime
    group: str
    latency_bucket: int
    count: int


def build_report(
    query: AnalyticsQuery,
    counts: Iterable[OutcomeCount],
    latencies: Iterable[LatencySample],
) -> dict[str, Any]:
    """Return the JSON report: one entry per bucket (and group) with data."""
    totals: dict[tuple[datetime, str], dict[str, int]] = {}
    for row in counts:
        entry = totals.setdefault((row.bucket, row.group), {})
        entry[row.outcome] = entry.get(row.outcome, 0) + row.count
    histograms: dict[tuple[datetime, str], dict[int, int]] = {}
    for sample in latencies:
        histogram = histograms.setdefault((sample.bucket, sample.group), {})
        histogram[sample.latency_bucket] = (
            histogram.get(sample.latency_bucket, 0) + sample.count
        )

    keys = sorted(totals.keys() | histograms.keys())
    data = [
        _bucket_entry(query, key, totals.get(key, {}), histograms.get(key, {}))
        for key in keys
    ]
    return {
        "from": format_time(query.start),
        "to": format_time(query.end),
        "interval": str(query.interval),
        "group_by": None if query.group_by is None else str(query.group_by),
        "data": data,
    }


def _bucket_entry(
    query: AnalyticsQuery,
    key: tuple[datetime, str],
    counts: Mapping[str, int],
    histogram: Mapping[int, int],
) -> dict[str, Any]:
    bucket, group = key
    full = {outcome: counts.get(outcome, 0) for outcome in (*OUTCOMES, ASYNC_BOUNCE)}
    entry: dict[str, Any] = {"start": format_time(bucket)}
    if query.group_by is not None:
        entry[str(query.group_by)] = group
    entry["counts"] = full
    entry["rates"] = rates(full)
    entry["delivery_latency_ms"] = {
        "p50": percentile(histogram, 0.50),
        "p95": percentile(histogram, 0.95),
        "samples": sum(histogram.values()),
    }
    return entry


def rates(counts: Mapping[str, int]) -> dict[str, float | None]:
    """Return the rates of one bucket; ``None`` where the denominator is 0.

    ``sent`` is the number of delivery attempts that ended the message:
    delivered plus bounced, without bounce reports that came after delivery.
    """
    sent = counts["delivered"] + counts["bounced"] - counts[ASYNC_BOUNCE]
    return {
        "delivery_rate": _ratio(counts["delivered"], sent),
        "bounce_rate": _ratio(counts["bounced"], sent),
        "complaint_rate": _ratio(counts["complained"], counts["delivered"]),
        "deferral_rate": _ratio(counts["deferred"], counts["accepted"]),
    }


def _ratio(numerator: int, denominator: int) -> float | None:
    if denominator <= 0:
        return None
    return numerator / denominator


def percentile(histogram: Mapping[int, int], fraction: float) -> float | None:
    """Return the nearest-rank percentile of a histogram, in milliseconds."""
    total = sum(histogram.values())
    if total == 0:
        return None
    rank = max(1, math.ceil(fraction * total))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen >= rank:
            return round(bucket_middle_ms(bucket), 1)
    raise AssertionError("unreachable: the last bucket reaches the total")


def align(value: datetime, interval: Interval) -> datetime:
    """Return the start of the UTC hour or day that contains ``value``."""
    hour = value.replace(minute=0, second=0, microsecond=0)
    if interval is Interval.HOUR:
        return hour
    return hour.replace(hour=0)


def align_query(query: AnalyticsQuery) -> AnalyticsQuery:
    """Return the query with ``start`` aligned down and ``end`` aligned up."""
    start = align(query.start, query.interval)
    end = align(query.end, query.interval)
    if end < query.end:
        # Near the end of year 9999 the next bucket would be past the
        # largest datetime; the last partial bucket is left out then.
        with contextlib.suppress(OverflowError):
            end += query.interval.length
    return attrs.evolve(query, start=start, end=end)


def group_keys(tags: Sequence[str], domain: str) -> list[tuple[str, str]]:
    """Return the (dimension, value) rollup keys of one message's event."""
    keys = [("", ""), ("domain", domain)]
    keys.extend(("tag", tag) for tag in dict.fromkeys(tags))
    return keys
