"""JSON Schema (draft 2020-12) of a ``POST /v1/messages`` body.

The schema is built from the tables ``sendarix_core.validation`` checks
against: its field names, limits and patterns. It never rejects a body that
validation accepts, but it is looser: rules that need more than a schema
(address syntax, reserved header names, UTF-8 byte sizes, time ranges, the
server's default sender) are checked only by ``validate_send_request``.
Null counts as absent for every optional field, as in validation.
"""

from __future__ import annotations

from typing import Any

from sendarix_core.attachment_checks import (
    _ATTACHMENT_FIELDS,
    _CONTENT_ID,
    _CONTENT_TYPE,
    _MAX_CONTENT_ID_LENGTH,
)
from sendarix_core.header_checks import (
    _HEADER_NAME,
    _MAX_HEADER_NAME_LENGTH,
    TAG_PATTERN,
)
from sendarix_core.states import Priority
from sendarix_core.validation import (
    DEFAULT_LIMITS,
    FIELDS,
    Limits,
)

__all__ = ["address_schema", "send_request_schema"]

Schema = dict[str, Any]

# One header line: no CR, LF or NUL, the characters that
# ``sendarix_core.addresses.find_header_injection`` rejects.
_ONE_LINE = "^[^\\r\\n\\u0000]*$"


def send_request_schema(limits: Limits = DEFAULT_LIMITS) -> Schema:
    """Return the schema of a message body under ``limits``."""
    properties: Schema = {
        "recipient": {**address_schema(), "description": "one address"},
        "from": {
            **_nullable(address_schema()),
            "description": "required unless the server has a default sender",
        },
        "subject": _nullable(_line(limits.max_subject_length)),
        "text": _nullable({"type": "string"}),
        "html": _nullable({"type": "string"}),
        "template": _nullable({"type": "string", "pattern": _ONE_LINE}),
        "template_data": _nullable({"type": "object"}),
        "attachments": _nullable(_attachments_schema(limits)),
        "headers": _nullable(_headers_schema(limits)),
        "priority": {"enum": [*(str(p) for p in Priority), None]},
        "scheduled_time": _nullable({"type": "string", "format": "date-time"}),
        "expires_at": _nullable({"type": "string", "format": "date-time"}),
        "metadata": _nullable(_metadata_schema(limits)),
        "tags": _nullable(_tags_schema(limits)),
        "list_unsubscribe": {
            "type": "boolean",
            "description": "add one-click List-Unsubscribe header fields (RFC 8058)",
        },
    }
    return {
        "type": "object",
        "properties": _restrict(properties, FIELDS),
        "required": ["recipient"],
        "additionalProperties": False,
        "allOf": [
            {
                "anyOf": [
                    {"required": ["text"]},
                    {"required": ["html"]},
                    {"required": ["template"]},
                ]
            },
            {"anyOf": [{"required": ["subject"]}, {"required": ["template"]}]},
        ],
    }


def address_schema() -> Schema:
    """Return the schema of an address: a string or ``{"name", "email"}``."""
    return {
        "oneOf": [
            {"type": "string", "minLength": 1, "examples": ["Ada <ada@example.com>"]},
            {
                "type": "object",
                "properties": {
                    "name": _nullable({"type": "string"}),
                    "email": {"type": "string", "minLength": 1},
                },
                "required": ["email"],
                "additionalProperties": False,
            },
        ]
    }


def _attachments_schema(limits: Limits) -> Schema:
    properties: Schema = {
        "filename": {
            "type": "string",
            "minLength": 1,
            "maxLength": limits.max_filename_length,
            "pattern": "^[^/\\\\\\r\\n\\u0000\\u202a-\\u202e\\u2066-\\u2069]*$",
        },
        "content_type": {
            "type": "string",
            "pattern": f"^{_either_case(_CONTENT_TYPE.pattern)}$",
        },
        "content": {"type": "string", "contentEncoding": "base64"},
        "content_id": _nullable(
            {
                "type": "string",
                "maxLength": _MAX_CONTENT_ID_LENGTH,
                "pattern": f"^{_CONTENT_ID.pattern}$",
            }
        ),
        "inline": _nullable({"type": "boolean"}),
    }
    item = {
        "type": "object",
        "properties": _restrict(properties, _ATTACHMENT_FIELDS),
        "required": ["filename", "content_type", "content"],
        "additionalProperties": False,
    }
    return {"type": "array", "maxItems": limits.max_attachments, "items": item}


def _headers_schema(limits: Limits) -> Schema:
    return {
        "type": "object",
        "description": "extra message headers; X-Idempotency-Key sets the "
        "idempotency key and does not count against the maximum",
        "propertyNames": {
            "pattern": f"^{_HEADER_NAME.pattern}$",
            "maxLength": _MAX_HEADER_NAME_LENGTH,
        },
        "additionalProperties": _line(limits.max_header_value_length),
        "maxProperties": limits.max_headers + 1,
    }


def _metadata_schema(limits: Limits) -> Schema:
    return {
        "type": "object",
        "propertyNames": {
            "minLength": 1,
            "maxLength": limits.max_metadata_key_length,
        },
        "additionalProperties": {
            "type": "string",
            "maxLength": limits.max_metadata_value_length,
        },
        "maxProperties": limits.max_metadata_keys,
    }


def _tags_schema(limits: Limits) -> Schema:
    return {
        "type": "array",
        "maxItems": limits.max_tags,
        "uniqueItems": True,
        "items": {
            "type": "string",
            "maxLength": limits.max_tag_length,
            "pattern": f"^{TAG_PATTERN.pattern}$",
        },
    }


def _line(max_length: int) -> Schema:
    return {"type": "string", "maxLength": max_length, "pattern": _ONE_LINE}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _either_case(pattern: str) -> str:
    """Return a lowercase-only pattern that also matches uppercase letters.

    Validation lowercases a content type before it matches the pattern.
    """
    return pattern.replace("a-z", "a-zA-Z")


def _restrict(properties: Schema, fields: frozenset[str]) -> Schema:
    """Return the schemas of exactly the fields validation accepts.

    A field validation accepts but this module does not describe gets the
    empty schema, which accepts any value, so the document never rejects a
    body that validation accepts; a test fails until it is described.
    """
    described = {name: schema for name, schema in properties.items() if name in fields}
    undescribed: Schema = {name: {} for name in sorted(fields - properties.keys())}
    return {**described, **undescribed}
