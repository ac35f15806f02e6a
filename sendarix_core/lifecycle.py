"""The message lifecycle state machine.

Every function here takes a message and returns a ``Transition``: the message
after the change, with ``version`` one higher, and the one event the change
caused. Nothing is mutated and nothing is stored; the caller persists the
transition, using ``before.version`` to detect a concurrent change.

    scheduled ─┐
               ├─> accepted ─┬─> delivered
    queued ────┘     ^  │    ├─> bounced
                     │  v    └─> expired
                   deferred
    scheduled, queued   ─> cancelled, suppressed, expired
    deferred            ─> suppressed, expired
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from sendarix_core.errors import InvalidTransitionError, MessageNotCancellableError
from sendarix_core.model import Event, Message, SmtpReply
from sendarix_core.retry import (
    DEFAULT_RETRY_POLICY,
    BounceClass,
    RetryPolicy,
    classify_reply,
)
from sendarix_core.states import (
    CANCELLABLE_STATES,
    EventType,
    MessageStatus,
)
from sendarix_core.suppression import (
    Suppression,
    SuppressionReason,
    normalize_recipient,
)

__all__ = [
    "ALLOWED_TRANSITIONS",
    "Transition",
    "accept",
    "bounce",
    "cancel",
    "create",
    "decide_claimed",
    "defer_or_bounce",
    "deliver",
    "expire",
    "suppress",
]

S = MessageStatus

ALLOWED_TRANSITIONS: Mapping[MessageStatus, frozenset[MessageStatus]] = {
    S.SCHEDULED: frozenset({S.ACCEPTED, S.CANCELLED, S.SUPPRESSED, S.EXPIRED}),
    S.QUEUED: frozenset({S.ACCEPTED, S.CANCELLED, S.SUPPRESSED, S.EXPIRED}),
    S.ACCEPTED: frozenset({S.DELIVERED, S.DEFERRED, S.BOUNCED, S.EXPIRED}),
    S.DEFERRED: frozenset({S.ACCEPTED, S.SUPPRESSED, S.EXPIRED}),
    S.DELIVERED: frozenset(),
    S.BOUNCED: frozenset(),
    S.SUPPRESSED: frozenset(),
    S.CANCELLED: frozenset(),
    S.EXPIRED: frozenset(),
}

_EVENT_FOR_STATUS = {
    S.SCHEDULED: EventType.SCHEDULED,
    S.QUEUED: EventType.QUEUED,
    S.ACCEPTED: EventType.ACCEPTED,
    S.DEFERRED: EventType.DEFERRED,
    S.DELIVERED: EventType.DELIVERED,
    S.BOUNCED: EventType.BOUNCED,
    S.SUPPRESSED: EventType.SUPPRESSED,
    S.CANCELLED: EventType.CANCELLED,
    S.EXPIRED: EventType.EXPIRED,
}


@attrs.frozen
class Transition:
    """A persisted change: ``before`` and ``after`` one message, and its event.

    ``suppression`` is set when the change also puts the recipient on the
    suppression list (a bounce whose enhanced code says the mailbox is bad).
    """

    before: Message | None
    after: Message
    event: Event
    suppression: Suppression | None = None


def create(message: Message, *, event_id: str) -> Transition:
    """Record a newly accepted message as ``scheduled`` or ``queued``."""
    if message.status not in {S.SCHEDULED, S.QUEUED}:
        raise InvalidTransitionError(message.id, "new", message.status)
    data: dict[str, Any] = {}
    if message.scheduled_at is not None:
        data["scheduled_at"] = _timestamp(message.scheduled_at)
    event = _event(message, message.status, message.created_at, event_id, data)
    return Transition(before=None, after=message, event=event)


def accept(message: Message, *, now: datetime, event_id: str) -> Transition:
    """Start a delivery attempt: the message passed suppression and routing."""
    attempt = message.attempts + 1
    return _move(
        message,
        S.ACCEPTED,
        now=now,
        event_id=event_id,
        data={"attempt": attempt},
        attempts=attempt,
        next_attempt_at=None,
    )


def deliver(
    message: Message, reply: SmtpReply, *, now: datetime, event_id: str
) -> Transition:
    """Record that the destination server accepted the message after DATA."""
    return _move(
        message,
        S.DELIVERED,
        now=now,
        event_id=event_id,
        data=_reply_data(message, reply),
        last_reply=reply,
    )


def defer_or_bounce(
    message: Message,
    reply: SmtpReply,
    *,
    now: datetime,
    event_id: str,
    policy: RetryPolicy = DEFAULT_RETRY_POLICY,
) -> Transition:
    """Record a temporary failure: defer for the next attempt or, when the
    attempts are exhausted, bounce with ``retries_exhausted``."""
    _require_edge(message, S.DEFERRED)
    delay = policy.delay_after(message.attempts)
    if delay is None:
        return bounce(
            message,
            reply,
            now=now,
            event_id=event_id,
            bounce_class=BounceClass.RETRIES_EXHAUSTED,
        )

    next_attempt_at = now + delay
    # A message that would be retried after its deadline is picked up at the
    # deadline instead, so it expires on time rather than being sent late.
    if message.expires_at is not None and next_attempt_at > message.expires_at:
        next_attempt_at = message.expires_at
    data = _reply_data(message, reply)
    data["next_attempt_at"] = _timestamp(next_attempt_at)
    return _move(
        message,
        S.DEFERRED,
        now=now,
        event_id=event_id,
        data=data,
        last_reply=reply,
        next_attempt_at=next_attempt_at,
    )


def bounce(
    message: Message,
    reply: SmtpReply,
    *,
    now: datetime,
    event_id: str,
    bounce_class: BounceClass | None = None,
    to_mail: bool = False,
) -> Transition:
    """Record a permanent failure.

    Without ``bounce_class`` the reply decides it, and a ``5.1.x`` enhanced
    code about the recipient also puts the recipient on the suppression
    list. ``to_mail`` marks a reply that refused ``MAIL FROM``, which is about
    the sender.
    """
    suppression = None
    if bounce_class is None:
        classification = classify_reply(
            reply.code or 550, reply.enhanced_code, to_mail=to_mail
        )
        bounce_class = classification.bounce_class or BounceClass.OTHER
        if classification.suppress:
            suppression = Suppression(
                recipient=normalize_recipient(message.recipient.email),
                reason=SuppressionReason.HARD_BOUNCE,
                created_at=now,
                message_id=message.id,
            )
    data = _reply_data(message, reply)
    data["bounce_class"] = str(bounce_class)
    data["suppressed_recipient"] = suppression is not None
    transition = _move(
        message,
        S.BOUNCED,
        now=now,
        event_id=event_id,
        data=data,
        last_reply=reply,
        next_attempt_at=None,
    )
    return attrs.evolve(transition, suppression=suppression)


def suppress(
    message: Message, suppression: Suppression, *, now: datetime, event_id: str
) -> Transition:
    """Drop a message whose recipient is on the suppression list."""
    return _move(
        message,
        S.SUPPRESSED,
        now=now,
        event_id=event_id,
        data={"reason": str(suppression.reason)},
        next_attempt_at=None,
    )


def cancel(message: Message, *, now: datetime, event_id: str) -> Transition:
    """Cancel a message before delivery starts.

    Raises ``MessageNotCancellableError`` once a worker has taken it.
    """
    if message.status not in CANCELLABLE_STATES:
        raise MessageNotCancellableError(message.id, message.status)
    return _move(message, S.CANCELLED, now=now, event_id=event_id, next_attempt_at=None)


def expire(message: Message, *, now: datetime, event_id: str) -> Transition:
    """Drop a message whose ``expires_at`` passed before it was delivered."""
    data = {"expires_at": _timestamp(message.expires_at)} if message.expires_at else {}
    return _move(
        message, S.EXPIRED, now=now, event_id=event_id, data=data, next_attempt_at=None
    )


def decide_claimed(
    message: Message,
    suppression: Suppression | None,
    *,
    now: datetime,
    event_id: str,
) -> Transition | None:
    """Decide what a worker does with a message it just claimed.

    Returns the transition to persist before any delivery: ``expired``,
    ``suppressed`` or ``accepted``. Returns ``None`` for a message already
    ``accepted``, which a worker resumes after another worker's lease ran out.
    """
    if message.expires_at is not None and now >= message.expires_at:
        return expire(message, now=now, event_id=event_id)
    if message.status == S.ACCEPTED:
        return None
    if suppression is not None:
        return suppress(message, suppression, now=now, event_id=event_id)
    return accept(message, now=now, event_id=event_id)


def _move(
    message: Message,
    target: MessageStatus,
    *,
    now: datetime,
    event_id: str,
    data: Mapping[str, Any] | None = None,
    **changes: Any,
) -> Transition:
    _require_edge(message, target)
    after = attrs.evolve(
        message, status=target, updated_at=now, version=message.version + 1, **changes
    )
    event = _event(after, target, now, event_id, data or {})
    return Transition(before=message, after=after, event=event)


def _require_edge(message: Message, target: MessageStatus) -> None:
    if target not in ALLOWED_TRANSITIONS[message.status]:
        raise InvalidTransitionError(message.id, message.status, target)


def _event(
    message: Message,
    status: MessageStatus,
    now: datetime,
    event_id: str,
    data: Mapping[str, Any],
) -> Event:
    return Event(
        event_id=event_id,
        type=_EVENT_FOR_STATUS[status],
        created_at=now,
        message_id=message.id,
        recipient=message.recipient.email,
        data=dict(data),
    )


def _reply_data(message: Message, reply: SmtpReply) -> dict[str, Any]:
    return {
        "attempt": message.attempts,
        "smtp_code": reply.code,
        "enhanced_code": reply.enhanced_code,
        "reply": reply.text,
        "mx_host": reply.mx_host,
    }


def _timestamp(value: datetime) -> str:
    """Format a UTC time as the API does: milliseconds and a ``Z``."""
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")
