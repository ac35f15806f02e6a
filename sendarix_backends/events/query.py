"""Filters and order of an event log search."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum

import attrs

__all__ = ["EventOrder", "EventQuery"]


class EventOrder(StrEnum):
    NEWEST_FIRST = "desc"
    OLDEST_FIRST = "asc"


@attrs.frozen(kw_only=True)
class EventQuery:
    """A search of the event log; every filter given must match.

    ``types`` matches any of the listed types. ``recipient`` is compared
    without regard to case. ``tag`` and ``metadata`` match the message the
    event belongs to. ``created_after`` is inclusive, ``created_before``
    exclusive.
    """

    types: frozenset[str] = frozenset()
    recipient: str | None = None
    message_id: str | None = None
    tag: str | None = None
    metadata: Mapping[str, str] = attrs.field(factory=dict)
    created_after: datetime | None = None
    created_before: datetime | None = None
    order: EventOrder = EventOrder.NEWEST_FIRST
    limit: int = 25
    cursor: str | None = None
    test_mode: bool | None = None
    """With True, only events of messages sent with a test key. With False,
    every other event, including those that belong to no message. With None,
    all events."""
