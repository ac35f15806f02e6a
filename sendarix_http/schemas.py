"""JSON Schemas of the API's bodies, named for ``components.schemas``.

``define`` adds a named schema and returns a ``$ref`` to it, so a route
module declares the schemas of its own resource next to its handlers. The
request schema of a message comes from ``sendarix_core.request_schema``,
which is built from the validation tables. Response schemas describe the
dictionaries of ``sendarix_core.representation``; the Schemathesis run
checks every response against them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sendarix_core.request_schema import send_request_schema
from sendarix_core.states import EventType, MessageStatus, Priority
from sendarix_core.suppression import SuppressionReason

__all__ = [
    "SCHEMAS",
    "define",
    "list_of",
    "nullable",
    "ref",
    "time",
]

Schema = dict[str, Any]

SCHEMAS: dict[str, Schema] = {}


def define(name: str, schema: Schema) -> Schema:
    """Add ``schema`` as ``components.schemas[name]``; return a ``$ref`` to it.

    Raises ``ValueError`` when ``name`` is taken by a different schema.
    """
    existing = SCHEMAS.setdefault(name, schema)
    if existing != schema:
        raise ValueError(f"the schema name {name!r} is already defined differently")
    return ref(name)


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Mapping[str, Any]) -> Schema:
    return {"anyOf": [dict(schema), {"type": "null"}]}


def time() -> Schema:
    """A UTC time as the API writes it: ISO 8601 with ``Z``, in milliseconds."""
    return {"type": "string", "format": "date-time"}


def list_of(name: str, item: Schema, *, paged: bool) -> Schema:
    """Define ``name`` as a ``{"data": [item…]}`` listing; return a ``$ref``.

    A ``paged`` listing has ``next_cursor``.
    """
    properties: Schema = {"data": {"type": "array", "items": item}}
    required = ["data"]
    if paged:
        properties["next_cursor"] = {
            "type": ["string", "null"],
            "description": "pass as `cursor` for the next page; null on the last",
        }
        required.append("next_cursor")
    listing = {"type": "object", "properties": properties, "required": required}
    return define(name, listing)


def _closed(properties: Schema, *, optional: tuple[str, ...] = ()) -> Schema:
    """An object with exactly these properties, all required but ``optional``."""
    return {
        "type": "object",
        "properties": properties,
        "required": [name for name in properties if name not in optional],
        "additionalProperties": False,
    }


FIELD_ERROR = define(
    "FieldError",
    _closed(
        {
            "field": {
                "type": "string",
                "description": "dotted path into the request, such as "
                "`attachments.0.content` or `messages.3.recipient`",
            },
            "code": {"type": "string"},
            "message": {"type": "string"},
        }
    ),
)

ERROR = define(
    "Error",
    _closed(
        {
            "error": _closed(
                {
                    "code": {"type": "string", "examples": ["validation_failed"]},
                    "message": {"type": "string"},
                    "errors": {"type": "array", "items": FIELD_ERROR},
                    "scope": {
                        "type": "string",
                        "description": "the scope the key lacks (403 only)",
                    },
                },
                optional=("errors", "scope"),
            )
        }
    ),
)

SEND_REQUEST = define("SendRequest", send_request_schema())

ACCEPTED = define(
    "Accepted",
    _closed(
        {
            "message_id": {
                "type": "string",
                "examples": ["msg_01kpk2byj0f6exkfg4w47cc66n"],
            },
            "status": {
                "enum": [str(MessageStatus.QUEUED), str(MessageStatus.SCHEDULED)]
            },
            "recipient": {"type": "string"},
            "created_at": time(),
            "warnings": {"type": "array", "items": {"type": "string"}},
        },
        optional=("warnings",),
    ),
)

_SMTP_REPLY = _closed(
    {
        "code": {"type": ["integer", "null"]},
        "enhanced_code": {"type": ["string", "null"]},
        "text": {"type": "string"},
        "mx_host": {"type": ["string", "null"]},
    }
)

MESSAGE = define(
    "Message",
    _closed(
        {
            "message_id": {"type": "string"},
            "status": {"enum": [str(status) for status in MessageStatus]},
            "recipient": {"type": "string"},
            "from": {"type": "string"},
            "subject": {"type": "string"},
            "priority": {"enum": [str(priority) for priority in Priority]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "metadata": {"type": "object", "additionalProperties": {"type": "string"}},
            "created_at": time(),
            "updated_at": time(),
            "scheduled_time": nullable(time()),
            "expires_at": nullable(time()),
            "next_attempt_at": nullable(time()),
            "attempts": {"type": "integer", "minimum": 0},
            "last_smtp_reply": nullable(_SMTP_REPLY),
            "message_id_header": {"type": "string"},
            "test_mode": {"type": "boolean"},
        }
    ),
)

EVENT = define(
    "Event",
    _closed(
        {
            "event_id": {"type": "string"},
            "type": {"enum": [str(event_type) for event_type in EventType]},
            "created_at": time(),
            "message_id": {
                "type": ["string", "null"],
                "description": "null for an event about a recipient, such as "
                "recipient.unsubscribed",
            },
            "recipient": {"type": "string"},
            "data": {
                "type": "object",
                "description": "type-specific: SMTP reply code, enhanced status "
                "code, reply text, MX host, attempt number, bounce class",
            },
        }
    ),
)

SUPPRESSION = define(
    "Suppression",
    _closed(
        {
            "recipient": {"type": "string"},
            "reason": {"enum": [str(reason) for reason in SuppressionReason]},
            "created_at": time(),
            "message_id": {"type": ["string", "null"]},
        }
    ),
)
