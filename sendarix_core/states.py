"""Message states, event types and priority tiers.

Values are lowercase strings because clients script against them: they appear
unchanged in the HTTP API, in webhook payloads and in the database.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "CANCELLABLE_STATES",
    "CLAIMABLE_STATES",
    "TERMINAL_STATES",
    "EventType",
    "MessageStatus",
    "Priority",
]


class MessageStatus(StrEnum):
    SCHEDULED = "scheduled"
    QUEUED = "queued"
    ACCEPTED = "accepted"
    DEFERRED = "deferred"
    DELIVERED = "delivered"
    BOUNCED = "bounced"
    SUPPRESSED = "suppressed"
    CANCELLED = "cancelled"
    EXPIRED = "expired"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATES


TERMINAL_STATES = frozenset(
    {
        MessageStatus.DELIVERED,
        MessageStatus.BOUNCED,
        MessageStatus.SUPPRESSED,
        MessageStatus.CANCELLED,
        MessageStatus.EXPIRED,
    }
)

# States a worker may claim once the message is due. ``accepted`` is here
# because a worker that dies mid-delivery leaves its message accepted with
# an expired lease, and another worker must resume it.
CLAIMABLE_STATES = frozenset(
    {
        MessageStatus.SCHEDULED,
        MessageStatus.QUEUED,
        MessageStatus.DEFERRED,
        MessageStatus.ACCEPTED,
    }
)

CANCELLABLE_STATES = frozenset({MessageStatus.SCHEDULED, MessageStatus.QUEUED})


class EventType(StrEnum):
    SCHEDULED = "message.scheduled"
    QUEUED = "message.queued"
    ACCEPTED = "message.accepted"
    DEFERRED = "message.deferred"
    DELIVERED = "message.delivered"
    BOUNCED = "message.bounced"
    COMPLAINED = "message.complained"
    SUPPRESSED = "message.suppressed"
    CANCELLED = "message.cancelled"
    EXPIRED = "message.expired"
    UNSUBSCRIBED = "recipient.unsubscribed"
    WEBHOOK_DISABLED = "webhook.disabled"


class Priority(StrEnum):
    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        """Claim order: 0 is served first."""
        return _PRIORITY_RANKS[self]

    @classmethod
    def from_rank(cls, rank: int) -> Priority:
        return _PRIORITIES_BY_RANK[rank]


_PRIORITY_RANKS = {Priority.HIGH: 0, Priority.NORMAL: 1, Priority.LOW: 2}
_PRIORITIES_BY_RANK = {rank: priority for priority, rank in _PRIORITY_RANKS.items()}
