"""JSON representations of messages, events and suppressions.

These dictionaries are what the HTTP API returns and what idempotent replays
store, so their field names are part of the public contract.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sendarix_core.model import Event, Message, SmtpReply
from sendarix_core.suppression import Suppression

__all__ = [
    "accepted_response",
    "event_to_dict",
    "format_time",
    "message_to_dict",
    "suppression_to_dict",
]


def format_time(value: datetime | None) -> str | None:
    """Format a UTC time as ISO 8601 with a ``Z`` suffix and millisecond precision."""
    if value is None:
        return None
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def accepted_response(message: Message) -> dict[str, Any]:
    """Return the body of the ``202`` answer to a submission."""
    return {
        "message_id": message.id,
        "status": str(message.status),
        "recipient": message.recipient.email,
        "created_at": format_time(message.created_at),
    }


def message_to_dict(message: Message) -> dict[str, Any]:
    return {
        "message_id": message.id,
        "status": str(message.status),
        "recipient": str(message.recipient),
        "from": str(message.sender),
        "subject": message.content.subject,
        "priority": str(message.priority),
        "tags": list(message.tags),
        "metadata": dict(message.metadata),
        "created_at": format_time(message.created_at),
        "updated_at": format_time(message.updated_at),
        "scheduled_time": format_time(message.scheduled_at),
        "expires_at": format_time(message.expires_at),
        "next_attempt_at": format_time(message.next_attempt_at),
        "attempts": message.attempts,
        "last_smtp_reply": _reply_to_dict(message.last_reply),
        "message_id_header": message.message_id_header,
        "test_mode": message.test_mode,
    }


def event_to_dict(event: Event) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "type": str(event.type),
        "created_at": format_time(event.created_at),
        "message_id": event.message_id,
        "recipient": event.recipient,
        "data": dict(event.data),
    }


def suppression_to_dict(suppression: Suppression) -> dict[str, Any]:
    return {
        "recipient": suppression.recipient,
        "reason": str(suppression.reason),
        "created_at": format_time(suppression.created_at),
        "message_id": suppression.message_id,
    }


def _reply_to_dict(reply: SmtpReply | None) -> dict[str, Any] | None:
    if reply is None:
        return None
    return {
        "code": reply.code,
        "enhanced_code": reply.enhanced_code,
        "text": reply.text,
        "mx_host": reply.mx_host,
    }
