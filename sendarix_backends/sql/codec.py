"""Conversion between the core's value objects and table rows.

Message content is stored as one JSON document, attachments as base64
strings. Rows come back as SQLAlchemy ``RowMapping`` objects.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import cattrs
import orjson

from sendarix_backends.sql.schema import from_micros, messages
from sendarix_core.idempotency import IdempotencyRecord
from sendarix_core.keys import ApiKey, Environment, Scope
from sendarix_core.model import Address, Event, Message, MessageContent, SmtpReply
from sendarix_core.states import EventType, MessageStatus, Priority
from sendarix_core.suppression import (
    Suppression,
    SuppressionReason,
    normalize_recipient,
)

__all__ = [
    "STATE_COLUMNS",
    "api_key_from_row",
    "api_key_row",
    "due_at",
    "event_from_row",
    "event_row",
    "idempotency_from_row",
    "idempotency_row",
    "message_from_row",
    "message_from_values",
    "message_row",
    "suppression_from_row",
    "suppression_row",
]

# A row as SQLAlchemy returns it, or as a dict built from driver values.
Row = Mapping[Any, Any]

_converter = cattrs.Converter()
_converter.register_unstructure_hook(
    bytes, lambda value: base64.b64encode(value).decode("ascii")
)
_converter.register_structure_hook(
    bytes, lambda value, _type: base64.b64decode(value, validate=True)
)
_unstructure_content = _converter.get_unstructure_hook(MessageContent)
_structure_content = _converter.get_structure_hook(MessageContent)


def due_at(message: Message) -> datetime | None:
    """Return when a worker may claim ``message``; ``None`` once it is terminal.

    A message with an ``expires_at`` is due no later than that, so a worker
    picks it up in time to expire it. An ``accepted`` message is due when its
    lease runs out, which only the claim sets, so it raises ValueError.
    """
    status = message.status
    if status.is_terminal:
        return None
    if status is MessageStatus.ACCEPTED:
        raise ValueError(
            f"message {message.id} is accepted; its due time is its lease expiry"
        )

    if status is MessageStatus.SCHEDULED:
        due = message.scheduled_at or message.created_at
    elif status is MessageStatus.DEFERRED:
        due = message.next_attempt_at or message.updated_at
    else:
        due = message.created_at
    if message.expires_at is not None and message.expires_at < due:
        return message.expires_at
    return due


def message_row(message: Message) -> dict[str, Any]:
    """Return every column of ``message`` for an insert (lease owner unset)."""
    row = {
        "id": message.id,
        "priority": message.priority.rank,
        "sender_name": message.sender.display_name,
        "sender_local_part": message.sender.local_part,
        "sender_domain": message.sender.domain,
        "recipient_name": message.recipient.display_name,
        "recipient_local_part": message.recipient.local_part,
        "recipient_domain": message.recipient.domain,
        "recipient": normalize_recipient(message.recipient.email),
        "subject": message.content.subject,
        "content": _unstructure_content(message.content),
        "metadata": dict(message.metadata),
        "tags": list(message.tags),
        "api_key_id": message.api_key_id,
        "test_mode": message.test_mode,
        "message_id_header": message.message_id_header,
        "created_at": message.created_at,
        "scheduled_at": message.scheduled_at,
        "expires_at": message.expires_at,
        "lease_owner": None,
    }
    row.update(message_state_row(message))
    row["due_at"] = due_at(message)
    return row


# The columns ``message_state_row`` returns.
STATE_COLUMNS = (
    "status",
    "updated_at",
    "next_attempt_at",
    "attempts",
    "last_reply_code",
    "last_enhanced_code",
    "last_reply_text",
    "last_mx_host",
    "version",
)


def message_state_row(message: Message) -> dict[str, Any]:
    """Return the columns a lifecycle transition may change, except ``due_at``."""
    reply = message.last_reply
    return {
        "status": message.status.value,
        "updated_at": message.updated_at,
        "next_attempt_at": message.next_attempt_at,
        "attempts": message.attempts,
        "last_reply_code": reply.code if reply else None,
        "last_enhanced_code": reply.enhanced_code if reply else None,
        "last_reply_text": reply.text if reply else None,
        "last_mx_host": reply.mx_host if reply else None,
        "version": message.version,
    }


def message_from_row(row: Row) -> Message:
    last_reply = None
    if row["last_reply_text"] is not None:
        last_reply = SmtpReply(
            code=row["last_reply_code"],
            enhanced_code=row["last_enhanced_code"],
            text=row["last_reply_text"],
            mx_host=row["last_mx_host"],
        )
    return Message(
        id=row["id"],
        status=MessageStatus(row["status"]),
        priority=Priority.from_rank(row["priority"]),
        sender=Address(
            row["sender_local_part"], row["sender_domain"], row["sender_name"]
        ),
        recipient=Address(
            row["recipient_local_part"], row["recipient_domain"], row["recipient_name"]
        ),
        content=_structure_content(row["content"], MessageContent),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        scheduled_at=row["scheduled_at"],
        expires_at=row["expires_at"],
        next_attempt_at=row["next_attempt_at"],
        attempts=row["attempts"],
        last_reply=last_reply,
        metadata=row["metadata"],
        tags=tuple(row["tags"]),
        api_key_id=row["api_key_id"],
        test_mode=bool(row["test_mode"]),
        message_id_header=row["message_id_header"],
        version=row["version"],
    )


# Positions of the ``messages`` columns in a row that contains all of them
# in table order, as ``SELECT *`` or ``RETURNING`` of every column give it.
_AT = {column.name: index for index, column in enumerate(messages.columns)}


def message_from_values(values: Sequence[Any]) -> Message:
    """Return the message in a driver row of every column in table order.

    The queue decodes hundreds of claimed rows a batch, so this reads the
    values by position and skips the dict that ``message_from_row`` needs.
    """
    at = _AT
    last_reply = None
    if values[at["last_reply_text"]] is not None:
        last_reply = SmtpReply(
            code=values[at["last_reply_code"]],
            enhanced_code=values[at["last_enhanced_code"]],
            text=values[at["last_reply_text"]],
            mx_host=values[at["last_mx_host"]],
        )
    return Message(
        id=values[at["id"]],
        status=_STATUSES[values[at["status"]]],
        priority=Priority.from_rank(values[at["priority"]]),
        sender=Address(
            values[at["sender_local_part"]],
            values[at["sender_domain"]],
            values[at["sender_name"]],
        ),
        recipient=Address(
            values[at["recipient_local_part"]],
            values[at["recipient_domain"]],
            values[at["recipient_name"]],
        ),
        content=_content(_json(values[at["content"]])),
        created_at=from_micros(values[at["created_at"]]),
        updated_at=from_micros(values[at["updated_at"]]),
        scheduled_at=_time(values[at["scheduled_at"]]),
        expires_at=_time(values[at["expires_at"]]),
        next_attempt_at=_time(values[at["next_attempt_at"]]),
        attempts=values[at["attempts"]],
        last_reply=last_reply,
        metadata=_json(values[at["metadata"]]),
        tags=tuple(_json(values[at["tags"]])),
        api_key_id=values[at["api_key_id"]],
        test_mode=bool(values[at["test_mode"]]),
        message_id_header=values[at["message_id_header"]],
        version=values[at["version"]],
    )


_STATUSES = {status.value: status for status in MessageStatus}


def _content(document: dict[str, Any]) -> MessageContent:
    """Return the content a stored document describes.

    Most messages have no attachments, headers or raw bytes; their content
    is built directly, which costs a third of cattrs' generic structuring.
    """
    get = document.get
    if get("attachments") or get("headers") or get("raw") is not None:
        content: MessageContent = _structure_content(document, MessageContent)
        return content
    # Documents stored before a field existed lack its key; the field's
    # default applies, as in cattrs.
    return MessageContent(
        subject=document["subject"],
        text=get("text"),
        html=get("html"),
        template=get("template"),
        template_data=get("template_data") or {},
        template_version=get("template_version"),
    )


def _time(micros: int | None) -> datetime | None:
    return None if micros is None else from_micros(micros)


def _json(value: Any) -> Any:
    # psycopg parses json and jsonb itself; SQLite returns the text.
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def event_row(event: Event) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "message_id": event.message_id,
        "type": event.type.value,
        "created_at": event.created_at,
        "recipient": event.recipient,
        "data": dict(event.data),
    }


def event_from_row(row: Row) -> Event:
    return Event(
        event_id=row["event_id"],
        type=EventType(row["type"]),
        created_at=row["created_at"],
        message_id=row["message_id"],
        recipient=row["recipient"],
        data=row["data"],
    )


def suppression_row(suppression: Suppression) -> dict[str, Any]:
    return {
        "recipient": suppression.recipient,
        "reason": suppression.reason.value,
        "created_at": suppression.created_at,
        "message_id": suppression.message_id,
    }


def suppression_from_row(row: Row) -> Suppression:
    return Suppression(
        recipient=row["recipient"],
        reason=SuppressionReason(row["reason"]),
        created_at=row["created_at"],
        message_id=row["message_id"],
    )


def idempotency_row(record: IdempotencyRecord) -> dict[str, Any]:
    return {
        "api_key_id": record.api_key_id,
        "key": record.key,
        "fingerprint": record.fingerprint,
        "status_code": record.status_code,
        "response": dict(record.response),
        "created_at": record.created_at,
    }


def idempotency_from_row(row: Row) -> IdempotencyRecord:
    return IdempotencyRecord(
        api_key_id=row["api_key_id"],
        key=row["key"],
        fingerprint=row["fingerprint"],
        status_code=row["status_code"],
        response=row["response"],
        created_at=row["created_at"],
    )


def api_key_row(key: ApiKey) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "key_hash": key.key_hash,
        "prefix": key.prefix,
        "scopes": sorted(scope.value for scope in key.scopes),
        "environment": key.environment.value,
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
        "expires_at": key.expires_at,
        "last_used_at": key.last_used_at,
        "rate_limit": key.rate_limit,
        "sender_domains": list(key.sender_domains),
    }


def api_key_from_row(row: Row) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        key_hash=row["key_hash"],
        prefix=row["prefix"],
        scopes=frozenset(Scope(value) for value in row["scopes"]),
        environment=Environment(row["environment"]),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        expires_at=row["expires_at"],
        last_used_at=row["last_used_at"],
        rate_limit=row["rate_limit"],
        sender_domains=tuple(row["sender_domains"]),
    )
