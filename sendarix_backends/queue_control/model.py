"""Values of queue control: pauses, released claims and the queue summary."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum

import attrs

from sendarix_core.model import Message
from sendarix_core.states import Priority

__all__ = ["PARK_HORIZON", "PauseKind", "Pauses", "QueueSummary", "Release", "park"]

# A parked message is claimed again after this long, so one left behind by
# a race with a resume is sent within the hour.
PARK_HORIZON = timedelta(hours=1)


class PauseKind(StrEnum):
    PRIORITY = "priority"
    SITE = "site"


@attrs.frozen
class Pauses:
    """What claims skip: whole priority tiers, and sites whose messages are
    parked when claimed."""

    priorities: frozenset[Priority] = frozenset()
    sites: frozenset[str] = frozenset()


@attrs.frozen
class Release:
    """A claimed message handed back unchanged, claimable again at ``due_at``."""

    message_id: str
    version: int
    due_at: datetime


def park(message: Message, now: datetime) -> Release:
    """Return the release that parks ``message``: claimable again at its
    ``expires_at`` (so it expires on time) or after ``PARK_HORIZON``."""
    due_at = now + PARK_HORIZON
    if message.expires_at is not None and message.expires_at < due_at:
        due_at = message.expires_at
    return Release(message.id, message.version, due_at)


@attrs.frozen(kw_only=True)
class QueueSummary:
    """Raw counts of waiting messages, as storage returns them.

    ``counts`` is by (status, priority rank); ``by_domain`` the recipient
    domains with the most waiting messages; ``domain_sites`` the site each
    of them last resolved to; ``parked`` the parked messages by site.
    """

    counts: Mapping[tuple[str, int], int]
    by_domain: Sequence[tuple[str, int]]
    domain_sites: Mapping[str, str]
    parked: Mapping[str, int]
    oldest_created_at: datetime | None
    next_retries: Sequence[tuple[str, datetime]]
    pauses: Pauses
