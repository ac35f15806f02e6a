"""JSON Schemas of routing rules, destination sites and the queue endpoints.

Request schemas are no stricter than the validation in
``sendarix_core.route_requests`` and ``sendarix_core.queue_filter``, which
also checks what a schema can't say (domain names, URLs, IP addresses).
"""

from __future__ import annotations

from typing import Any

from sendarix_core.route_requests import MAX_ATTEMPTS, MAX_PATTERNS, MAX_SECONDS
from sendarix_core.routing import TlsPolicy, TransportKind
from sendarix_core.states import MessageStatus, Priority
from sendarix_http.schemas import define, list_of, nullable, time

__all__ = [
    "CANCEL_REQUEST",
    "EXPLANATION",
    "PAUSE_REQUEST",
    "PAUSE_RESULT",
    "QUEUE",
    "QUEUE_COUNT",
    "REORDER_REQUEST",
    "RETRY_REQUEST",
    "ROUTE",
    "ROUTE_LIST",
    "ROUTE_REQUEST",
    "ROUTE_UPDATE",
    "SITE_LIST",
]

Schema = dict[str, Any]


def _object(properties: Schema, *, required: tuple[str, ...] = ()) -> Schema:
    return {
        "type": "object",
        "properties": properties,
        "required": list(required),
        "additionalProperties": False,
    }


def _optional(schema: Schema) -> Schema:
    """Return ``schema`` widened to accept null, for an optional field."""
    return nullable(schema)


def _strings(item: Schema | None = None) -> Schema:
    return {
        "type": "array",
        "maxItems": MAX_PATTERNS,
        "items": item or {"type": "string", "minLength": 1},
    }


_PRIORITY = {"enum": [str(priority) for priority in Priority]}
_TAG = {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"}
_WHOLE_SECONDS = {"type": "integer", "minimum": 1, "maximum": MAX_SECONDS}
_COUNT = {"type": "integer", "minimum": 1}
_RATE = {"type": "number", "exclusiveMinimum": 0}

_MATCH_LISTS = {
    "recipient_domains": _strings(),
    "mx_hosts": _strings(),
    "sender_domains": _strings(),
    "tags": _strings(_TAG),
    "priorities": _strings(_PRIORITY),
}
MATCH_REQUEST = define(
    "RouteMatchRequest",
    _object({name: _optional(schema) for name, schema in _MATCH_LISTS.items()}),
)
MATCH = define(
    "RouteMatch",
    _object(_MATCH_LISTS, required=tuple(_MATCH_LISTS)),
)

_PACING_FIELDS: dict[str, Schema] = {
    "max_connections": _COUNT,
    "messages_per_connection": _COUNT,
    "messages_per_second": _RATE,
    "messages_per_minute": _RATE,
    "connections_per_minute": _RATE,
}
PACING = define(
    "RoutePacing",
    _object(
        {name: _optional(schema) for name, schema in _PACING_FIELDS.items()},
    ),
)
_RETRY_FIELDS: dict[str, Schema] = {
    "intervals": {
        "type": "array",
        "minItems": 1,
        "maxItems": MAX_ATTEMPTS,
        "items": _WHOLE_SECONDS,
        "description": "seconds to wait after the 1st, 2nd, … temporary failure",
    },
    "max_attempts": {"type": "integer", "minimum": 1, "maximum": MAX_ATTEMPTS},
    "max_age": {
        **_WHOLE_SECONDS,
        "description": "seconds after creation past which no retry is made",
    },
}
RETRY = define(
    "RouteRetry",
    _object({name: _optional(schema) for name, schema in _RETRY_FIELDS.items()}),
)
_ACTION_FIELDS: dict[str, Schema] = {
    "transport": {"enum": [str(kind) for kind in TransportKind]},
    "smarthost": {
        "type": "string",
        "description": "smtp://user:pass@host:port or smtps://…; shown with "
        "the password as ***",
    },
    "source_address": {
        "type": "string",
        "description": "local IPv4 or IPv6 address outgoing connections bind",
    },
    "tls": {"enum": [str(policy) for policy in TlsPolicy]},
    "pacing": PACING,
    "retry": RETRY,
}
ACTION = define(
    "RouteAction",
    _object({name: _optional(schema) for name, schema in _ACTION_FIELDS.items()}),
)

ROUTE_REQUEST = define(
    "RouteRequest",
    _object(
        {
            "description": _optional({"type": "string", "maxLength": 500}),
            "match": _optional(MATCH_REQUEST),
            "action": _optional(ACTION),
            "position": _optional({"type": "integer", "minimum": 0}),
        }
    ),
)
ROUTE_UPDATE = define(
    "RouteUpdate",
    _object(
        {
            "description": _optional({"type": "string", "maxLength": 500}),
            "match": _optional(MATCH_REQUEST),
            "action": ACTION,
        }
    ),
)
REORDER_REQUEST = define(
    "RouteOrder",
    _object(
        {"order": {"type": "array", "items": {"type": "string"}}},
        required=("order",),
    ),
)

_ACTION_SHOWN = _object(
    {
        "transport": _ACTION_FIELDS["transport"],
        "smarthost": nullable({"type": "string"}),
        "source_address": nullable({"type": "string"}),
        "tls": _ACTION_FIELDS["tls"],
        "pacing": _object(
            {name: nullable(schema) for name, schema in _PACING_FIELDS.items()},
            required=tuple(_PACING_FIELDS),
        ),
        "retry": nullable(
            _object(
                {name: nullable(schema) for name, schema in _RETRY_FIELDS.items()},
                required=tuple(_RETRY_FIELDS),
            )
        ),
    },
    required=tuple(_ACTION_FIELDS),
)
_ROUTE_FIELDS = {
    "id": {"type": "string"},
    "position": {"type": "integer", "minimum": 0},
    "default": {"type": "boolean"},
    "description": {"type": "string"},
    "match": MATCH,
    "action": _ACTION_SHOWN,
    "created_at": nullable(time()),
    "updated_at": nullable(time()),
}
ROUTE = define("Route", _object(_ROUTE_FIELDS, required=tuple(_ROUTE_FIELDS)))
ROUTE_LIST = list_of("RouteList", ROUTE, paged=False)

_CONDITION = _object(
    {
        "condition": {
            "enum": ["recipient_domain", "mx_host", "sender_domain", "tag", "priority"]
        },
        "matched": {"type": "boolean"},
        "detail": {"type": "string"},
    },
    required=("condition", "matched", "detail"),
)
_CHECK = _object(
    {
        "rule_id": {"type": "string"},
        "matched": {"type": "boolean"},
        "conditions": {"type": "array", "items": _CONDITION},
    },
    required=("rule_id", "matched", "conditions"),
)
_EXPLANATION_FIELDS = {
    "rule": ROUTE,
    "site": {"type": "string"},
    "mx_hosts": {"type": "array", "items": {"type": "string"}},
    "mx_error": nullable({"type": "string"}),
    "checks": {"type": "array", "items": _CHECK},
}
EXPLANATION = define(
    "RouteExplanation",
    _object(_EXPLANATION_FIELDS, required=tuple(_EXPLANATION_FIELDS)),
)

_SITE_FIELDS = {
    "site": {"type": "string"},
    "factor": {"type": "number", "minimum": 0, "maximum": 1},
    "throttled": {"type": "boolean"},
    "slots_held": {"type": "integer", "minimum": 0},
    "throttled_count": {"type": "integer", "minimum": 0},
    "last_throttled_at": nullable(time()),
    "last_throttle_reply": nullable({"type": "string"}),
    "updated_at": time(),
}
SITE_LIST = list_of(
    "RouteSiteList",
    define("RouteSite", _object(_SITE_FIELDS, required=tuple(_SITE_FIELDS))),
    paged=False,
)

_FILTER_LIST = {
    "anyOf": [
        {"type": "string", "minLength": 1},
        {
            "type": "array",
            "minItems": 1,
            "maxItems": 100,
            "items": {"type": "string", "minLength": 1},
        },
    ]
}
FILTER = define(
    "QueueFilter",
    _object(
        {
            "status": _optional(_FILTER_LIST),
            "priority": _optional(_FILTER_LIST),
            "recipient_domain": _optional(_FILTER_LIST),
            "site": _optional(_FILTER_LIST),
            "sender_domain": _optional(_FILTER_LIST),
            "tag": _optional(_FILTER_LIST),
            "created_before": _optional(time()),
            "created_after": _optional(time()),
        }
    ),
)
RETRY_REQUEST = define(
    "QueueRetryRequest",
    _object({"filter": _optional(FILTER), "dry_run": {"type": "boolean"}}),
)
CANCEL_REQUEST = define(
    "QueueCancelRequest",
    _object(
        {
            "filter": FILTER,
            "dry_run": {"type": "boolean"},
            "limit": _optional({"type": "integer", "minimum": 1, "maximum": 100_000}),
        },
        required=("filter",),
    ),
)
QUEUE_COUNT = define(
    "QueueOperationResult",
    _object(
        {
            "count": {"type": "integer", "minimum": 0},
            "dry_run": {"type": "boolean"},
            "more": {"type": "boolean"},
        },
        required=("count", "dry_run", "more"),
    ),
)
PAUSE_REQUEST = define(
    "QueuePauseRequest",
    _object({"priority": _optional(_PRIORITY), "site": _optional({"type": "string"})}),
)
PAUSE_RESULT = define(
    "QueuePauseResult",
    _object(
        {
            "kind": {"enum": ["priority", "site"]},
            "value": {"type": "string"},
            "paused": {"type": "boolean"},
            "unparked": {"type": "integer", "minimum": 0},
        },
        required=("kind", "value", "paused", "unparked"),
    ),
)

_SITE_COUNT = _object(
    {
        "site": nullable({"type": "string"}),
        "recipient_domains": {"type": "array", "items": {"type": "string"}},
        "waiting": {"type": "integer", "minimum": 0},
        "parked": {"type": "integer", "minimum": 0},
        "paused": {"type": "boolean"},
    },
    required=("site", "recipient_domains", "waiting", "parked", "paused"),
)
_WAITING_STATES = [str(status) for status in MessageStatus if not status.is_terminal]
_QUEUE_FIELDS = {
    "counts": _object(
        {
            "total": {"type": "integer", "minimum": 0},
            "status": _object(
                {name: {"type": "integer", "minimum": 0} for name in _WAITING_STATES},
                required=tuple(_WAITING_STATES),
            ),
            "priority": _object(
                {str(p): {"type": "integer", "minimum": 0} for p in Priority},
                required=tuple(str(p) for p in Priority),
            ),
        },
        required=("total", "status", "priority"),
    ),
    "sites": {"type": "array", "items": _SITE_COUNT},
    "oldest_created_at": nullable(time()),
    "oldest_age_seconds": nullable({"type": "number", "minimum": 0}),
    "next_retries": {
        "type": "array",
        "items": _object(
            {"message_id": {"type": "string"}, "next_attempt_at": time()},
            required=("message_id", "next_attempt_at"),
        ),
    },
    "paused": _object(
        {
            "priorities": {"type": "array", "items": _PRIORITY},
            "sites": {"type": "array", "items": {"type": "string"}},
        },
        required=("priorities", "sites"),
    ),
}
QUEUE = define("Queue", _object(_QUEUE_FIELDS, required=tuple(_QUEUE_FIELDS)))
