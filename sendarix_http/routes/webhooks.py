"""``/v1/webhooks``: endpoints, their delivery attempts, rotation and replay.

The signing secret is in the response to creation and rotation only; every
other response leaves it out.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

from starlette.requests import Request
from starlette.responses import Response

from sendarix_backends.webhooks.model import (
    DeliveryStatus,
    EndpointChanges,
    WebhookAttempt,
    WebhookEndpoint,
)
from sendarix_backends.webhooks.service import WebhookService, check_event_types
from sendarix_core.checks import describe, json_excerpt, reject_unknown_fields
from sendarix_core.errors import FieldError, ValidationError
from sendarix_core.keys import Scope
from sendarix_core.representation import format_time
from sendarix_core.route_requests import MAX_DESCRIPTION
from sendarix_core.states import EventType
from sendarix_http.http_io import (
    JsonResponse,
    authorize_live,
    check_time_range,
    collect_fields,
    parse_query,
    query_int,
    query_time,
    read_json_object,
)
from sendarix_http.registry import Parameter, Reply, operation
from sendarix_http.routes.events import event_services_of
from sendarix_http.schemas import define, list_of, nullable, time

__all__ = ["operations"]


# Every endpoint receives the events of live messages as well as test ones.
_CHANGE = "change webhooks, which receive the events of live mail"


def endpoint_to_dict(endpoint: WebhookEndpoint) -> dict[str, Any]:
    events = None if endpoint.event_types is None else list(endpoint.event_types)
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description,
        "events": events,
        "enabled": endpoint.enabled,
        "created_at": format_time(endpoint.created_at),
        "updated_at": format_time(endpoint.updated_at),
        "failing_since": format_time(endpoint.failing_since),
        "disabled_at": format_time(endpoint.disabled_at),
        "disabled_reason": endpoint.disabled_reason,
        "previous_secret_expires_at": format_time(endpoint.previous_secret_expires_at),
    }


def attempt_to_dict(attempt: WebhookAttempt) -> dict[str, Any]:
    return {
        "delivery_id": attempt.delivery_id,
        "event_id": attempt.event_id,
        "event_type": attempt.event_type,
        "message_id": attempt.message_id,
        "attempt": attempt.attempt,
        "attempted_at": format_time(attempt.attempted_at),
        "status_code": attempt.status_code,
        "latency_ms": attempt.latency_ms,
        "response": attempt.response,
        "error": attempt.error,
        "outcome": str(attempt.outcome),
        "delivery_status": str(attempt.delivery_status),
    }


async def create_webhook(request: Request) -> Response:
    await authorize_live(request, Scope.WEBHOOKS_WRITE, _CHANGE)
    body, _ = await read_json_object(request)
    webhooks = event_services_of(request).webhooks
    fields = await _parse_fields(
        webhooks,
        known=lambda: reject_unknown_fields(body, ("url", "events", "description")),
        url=lambda: _url(body, required=True),
        events=lambda: _event_types(body),
        description=lambda: _string(body, "description"),
    )
    endpoint = await webhooks.create(
        fields["url"] or "",
        event_types=fields["events"],
        description=fields["description"] or "",
    )
    content = endpoint_to_dict(endpoint)
    content["secret"] = endpoint.secret
    return JsonResponse(content, status_code=201)


async def list_webhooks(request: Request) -> Response:
    endpoints = await event_services_of(request).webhooks.list()
    return JsonResponse({"data": [endpoint_to_dict(e) for e in endpoints]})


async def get_webhook(request: Request) -> Response:
    endpoint_id = request.path_params["webhook_id"]
    endpoint = await event_services_of(request).webhooks.get(endpoint_id)
    return JsonResponse(endpoint_to_dict(endpoint))


async def update_webhook(request: Request) -> Response:
    await authorize_live(request, Scope.WEBHOOKS_WRITE, _CHANGE)
    body, _ = await read_json_object(request)
    webhooks = event_services_of(request).webhooks
    fields = await _parse_fields(
        webhooks,
        known=lambda: reject_unknown_fields(
            body, ("url", "events", "description", "enabled")
        ),
        url=lambda: _url(body, required=False, nullable=False),
        events=lambda: _event_types(body),
        description=lambda: _string(body, "description"),
        enabled=lambda: _enabled(body),
    )
    event_types = fields["events"]
    # A null description clears it, as an empty one does.
    clears_description = "description" in body and body["description"] is None
    changes = EndpointChanges(
        url=fields["url"],
        description="" if clears_description else fields["description"],
        event_types=None if event_types is None else tuple(event_types),
        all_event_types="events" in body and event_types is None,
        enabled=fields["enabled"],
    )
    endpoint_id = request.path_params["webhook_id"]
    endpoint = await webhooks.update(endpoint_id, changes)
    return JsonResponse(endpoint_to_dict(endpoint))


async def delete_webhook(request: Request) -> Response:
    await authorize_live(request, Scope.WEBHOOKS_WRITE, _CHANGE)
    await event_services_of(request).webhooks.delete(request.path_params["webhook_id"])
    return Response(status_code=204)


async def rotate_webhook_secret(request: Request) -> Response:
    await authorize_live(request, Scope.WEBHOOKS_WRITE, _CHANGE)
    endpoint_id = request.path_params["webhook_id"]
    endpoint = await event_services_of(request).webhooks.rotate_secret(endpoint_id)
    content = endpoint_to_dict(endpoint)
    content["secret"] = endpoint.secret
    return JsonResponse(content)


async def list_webhook_deliveries(request: Request) -> Response:
    params = request.query_params
    page = await event_services_of(request).webhooks.attempts(
        request.path_params["webhook_id"],
        limit=query_int(params, "limit", default=25, low=1, high=100),
        cursor=params.get("cursor"),
    )
    return JsonResponse(
        {
            "data": [attempt_to_dict(attempt) for attempt in page.items],
            "next_cursor": page.next_cursor,
        }
    )


async def replay_webhook_delivery(request: Request) -> Response:
    await authorize_live(request, Scope.WEBHOOKS_WRITE, _CHANGE)
    delivery_id = request.path_params["delivery_id"]
    queued = await event_services_of(request).webhooks.replay(
        request.path_params["webhook_id"], delivery_id
    )
    return JsonResponse(
        {"delivery_id": delivery_id, "queued": int(queued)}, status_code=202
    )


async def replay_webhook_range(request: Request) -> Response:
    await authorize_live(request, Scope.WEBHOOKS_WRITE, _CHANGE)
    body, _ = await read_json_object(request)
    parsed = parse_query(
        known=lambda: reject_unknown_fields(body, ("from", "to", "statuses")),
        start=lambda: _required_time(body, "from"),
        end=lambda: _required_time(body, "to"),
        statuses=lambda: _statuses(body),
    )
    check_time_range(body, ("from", parsed["start"]), ("to", parsed["end"]))
    count = await event_services_of(request).webhooks.replay_range(
        request.path_params["webhook_id"],
        parsed["start"],
        parsed["end"],
        parsed["statuses"],
    )
    return JsonResponse({"queued": count}, status_code=202)


def _required_time(body: dict[str, Any], name: str) -> datetime:
    value = body.get(name)
    if value is None:
        message = f"{name} is required: an ISO 8601 time such as 2026-04-19T00:00Z"
        raise ValidationError([FieldError(name, "missing_field", message)])
    if not isinstance(value, str):
        message = (
            f"{name} must be an ISO 8601 time string such as 2026-04-19T00:00Z, "
            f"not {json_excerpt(value)}"
        )
        raise ValidationError([FieldError(name, "invalid_type", message)])
    # query_time returns None only for an absent value, and this one is given.
    return cast(datetime, query_time({name: value}, name))


def _statuses(body: dict[str, Any]) -> tuple[DeliveryStatus, ...]:
    raw = body.get("statuses", [str(DeliveryStatus.FAILED)])
    finished = {str(DeliveryStatus.FAILED), str(DeliveryStatus.SUCCEEDED)}
    valid = isinstance(raw, list) and bool(raw)
    valid = valid and all(isinstance(v, str) and v in finished for v in raw)
    if not valid:
        message = (
            f"statuses must be a list of failed and succeeded, not {json_excerpt(raw)}"
        )
        raise ValidationError([FieldError("statuses", "invalid_statuses", message)])
    return tuple(DeliveryStatus(value) for value in raw)


def _string(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        message = f"{name} must be a string, not {describe(value)}"
        raise ValidationError([FieldError(name, "invalid_type", message)])
    return value


async def _parse_fields(
    webhooks: WebhookService, **parsers: Callable[[], Any]
) -> dict[str, Any]:
    """Run every parser and return their values by name.

    Raises one ValidationError listing every invalid field. When a field's
    type is wrong, the fields that parsed are also checked as ``create``
    and ``update`` would check them, so that error lists them too.
    """
    values, errors = collect_fields(**parsers)
    if not errors:
        return values
    errors.extend(
        await webhooks.field_errors(
            url=values.get("url"),
            event_types=values.get("events"),
            description=values.get("description"),
        )
    )
    raise ValidationError(errors)


def _enabled(body: dict[str, Any]) -> bool | None:
    if "enabled" in body and body["enabled"] is None:
        message = "enabled can't be null; leave it out instead"
        raise ValidationError([FieldError("enabled", "invalid_type", message)])
    enabled = body.get("enabled")
    if enabled is not None and not isinstance(enabled, bool):
        message = f"enabled must be true or false, not {json_excerpt(enabled)}"
        raise ValidationError([FieldError("enabled", "invalid_type", message)])
    return enabled


def _url(body: dict[str, Any], *, required: bool, nullable: bool = True) -> str | None:
    """Return the ``url`` field, rejecting an absent, null or empty one."""
    value = body.get("url")
    if not nullable and "url" in body and value is None:
        message = "url can't be null; leave it out instead"
        raise ValidationError([FieldError("url", "invalid_type", message)])
    if value is None and not required:
        return None
    if value is None or value == "":
        code = "missing_field" if value is None else "invalid_value"
        problem = "is required" if value is None else "can't be empty"
        message = (
            f"url {problem}; expected an absolute http or https URL such as "
            "https://example.com/webhooks"
        )
        raise ValidationError([FieldError("url", code, message)])
    return _string(body, "url")


def _event_types(body: dict[str, Any]) -> list[object] | None:
    """Return the ``events`` field; ``WebhookService`` checks its elements."""
    value = body.get("events")
    if isinstance(value, str):
        # Raises an error that suggests the list the client meant.
        check_event_types(value)
    if value is None or isinstance(value, list):
        return value
    message = (
        "events must be a list of event types, or null for all types, "
        f"not {json_excerpt(value)}"
    )
    raise ValidationError([FieldError("events", "invalid_type", message)])


_EVENT_TYPES = {"enum": [str(event_type) for event_type in EventType]}

WEBHOOK_REQUEST = define(
    "WebhookRequest",
    {
        "type": "object",
        "properties": {
            "url": {"type": "string", "format": "uri"},
            "events": {
                "type": ["array", "null"],
                "items": _EVENT_TYPES,
                "minItems": 1,
                "description": "event types to receive; omitted or null: all",
            },
            "description": {"type": "string", "maxLength": MAX_DESCRIPTION},
        },
        "required": ["url"],
    },
)

WEBHOOK_UPDATE = define(
    "WebhookUpdate",
    {
        "type": "object",
        "properties": {
            "url": {"type": "string", "format": "uri"},
            "events": {
                "type": ["array", "null"],
                "items": _EVENT_TYPES,
                "minItems": 1,
                "description": "event types to receive; null: all",
            },
            "description": {
                "type": ["string", "null"],
                "maxLength": MAX_DESCRIPTION,
                "description": "null or an empty string clears it",
            },
            "enabled": {"type": "boolean"},
        },
    },
)

_ENDPOINT_PROPERTIES = {
    "id": {"type": "string"},
    "url": {"type": "string"},
    "description": {"type": "string"},
    "events": {"type": ["array", "null"], "items": _EVENT_TYPES},
    "enabled": {"type": "boolean"},
    "created_at": time(),
    "updated_at": time(),
    "failing_since": nullable(time()),
    "disabled_at": nullable(time()),
    "disabled_reason": {"type": ["string", "null"]},
    "previous_secret_expires_at": nullable(time()),
}

WEBHOOK = define(
    "Webhook",
    {
        "type": "object",
        "properties": _ENDPOINT_PROPERTIES,
        "required": list(_ENDPOINT_PROPERTIES),
    },
)

WEBHOOK_WITH_SECRET = define(
    "WebhookWithSecret",
    {
        "type": "object",
        "properties": {
            **_ENDPOINT_PROPERTIES,
            "secret": {
                "type": "string",
                "pattern": "^whsec_",
                "description": "shown only here; verify signatures with it",
            },
        },
        "required": [*_ENDPOINT_PROPERTIES, "secret"],
    },
)

WEBHOOK_ATTEMPT = define(
    "WebhookAttempt",
    {
        "type": "object",
        "properties": {
            "delivery_id": {"type": "string", "description": "the webhook-id header"},
            "event_id": {"type": "string"},
            "event_type": _EVENT_TYPES,
            "message_id": {"type": ["string", "null"]},
            "attempt": {"type": "integer"},
            "attempted_at": time(),
            "status_code": {"type": ["integer", "null"]},
            "latency_ms": {"type": "integer"},
            "response": {"type": "string", "description": "at most 1 KB"},
            "error": {"type": ["string", "null"]},
            "outcome": {"enum": ["succeeded", "retrying", "failed"]},
            "delivery_status": {"enum": ["pending", "succeeded", "failed"]},
        },
    },
)

REPLAY_REQUEST = define(
    "WebhookReplayRequest",
    {
        "type": "object",
        "properties": {
            "from": {"type": "string", "format": "date-time"},
            "to": {"type": "string", "format": "date-time"},
            "statuses": {
                "type": "array",
                "items": {"enum": ["failed", "succeeded"]},
                "default": ["failed"],
            },
        },
        "required": ["from", "to"],
    },
)

REPLAY_RESULT = define(
    "WebhookReplayResult",
    {
        "type": "object",
        "properties": {
            "delivery_id": {"type": "string", "description": "the webhook-id header"},
            "queued": {
                "enum": [0, 1],
                "description": "0 when the delivery is being posted and is left "
                "to finish",
            },
        },
        "required": ["delivery_id", "queued"],
    },
)

REPLAY_RANGE_RESULT = define(
    "WebhookReplayRangeResult",
    {
        "type": "object",
        "properties": {
            "queued": {
                "type": "integer",
                "minimum": 0,
                "description": "how many deliveries were queued",
            },
        },
        "required": ["queued"],
    },
)

_WEBHOOK_ID = Parameter(
    name="webhook_id", location="path", description="the endpoint", required=True
)
_SCOPE = Scope.WEBHOOKS_WRITE

operations = [
    operation(
        "POST",
        "/v1/webhooks",
        create_webhook,
        summary="Create a webhook endpoint",
        description="The response holds the signing secret; it is never shown "
        "again. URLs to private, loopback and link-local addresses are "
        "rejected unless SENDARIX_WEBHOOK_ALLOW_PRIVATE is true.",
        tag="webhooks",
        scope=_SCOPE,
        request_schema=WEBHOOK_REQUEST,
        request_example={
            "url": "https://hooks.example.com/sendarix",
            "events": ["message.delivered", "message.bounced"],
            "description": "CRM sync",
        },
        errors=(501,),
        replies=Reply(
            status=201, description="the endpoint", schema=WEBHOOK_WITH_SECRET
        ),
    ),
    operation(
        "GET",
        "/v1/webhooks",
        list_webhooks,
        summary="List webhook endpoints",
        tag="webhooks",
        scope=_SCOPE,
        errors=(501,),
        replies=Reply(
            status=200,
            description="every endpoint",
            schema=list_of("WebhookList", WEBHOOK, paged=False),
        ),
    ),
    operation(
        "GET",
        "/v1/webhooks/{webhook_id}",
        get_webhook,
        summary="Read a webhook endpoint",
        tag="webhooks",
        scope=_SCOPE,
        parameters=(_WEBHOOK_ID,),
        errors=(501,),
        replies=Reply(status=200, description="the endpoint", schema=WEBHOOK),
    ),
    operation(
        "PATCH",
        "/v1/webhooks/{webhook_id}",
        update_webhook,
        summary="Change a webhook endpoint",
        description="Fields left out keep their value; `events: null` "
        "subscribes to every type; `description: null` clears the description; "
        "`enabled: true` re-enables a disabled "
        "endpoint and clears its failure record.",
        tag="webhooks",
        scope=_SCOPE,
        parameters=(_WEBHOOK_ID,),
        request_schema=WEBHOOK_UPDATE,
        errors=(501,),
        replies=Reply(status=200, description="the endpoint", schema=WEBHOOK),
    ),
    operation(
        "DELETE",
        "/v1/webhooks/{webhook_id}",
        delete_webhook,
        summary="Delete a webhook endpoint and its delivery history",
        tag="webhooks",
        scope=_SCOPE,
        parameters=(_WEBHOOK_ID,),
        errors=(501,),
        replies=Reply(status=204, description="deleted"),
    ),
    operation(
        "POST",
        "/v1/webhooks/{webhook_id}/rotate-secret",
        rotate_webhook_secret,
        summary="Rotate the signing secret",
        description="Deliveries carry signatures by the new and the old "
        "secret for 24 hours, then by the new one only.",
        tag="webhooks",
        scope=_SCOPE,
        parameters=(_WEBHOOK_ID,),
        errors=(501,),
        replies=Reply(
            status=200, description="the endpoint", schema=WEBHOOK_WITH_SECRET
        ),
    ),
    operation(
        "GET",
        "/v1/webhooks/{webhook_id}/deliveries",
        list_webhook_deliveries,
        summary="List delivery attempts, newest first",
        tag="webhooks",
        scope=_SCOPE,
        parameters=(
            _WEBHOOK_ID,
            Parameter(
                name="limit",
                location="query",
                description="page size, 1 to 100 (default 25)",
                schema={"type": "integer", "minimum": 1, "maximum": 100},
            ),
            Parameter(
                name="cursor",
                location="query",
                description="`next_cursor` of the last page",
            ),
        ),
        errors=(501,),
        replies=Reply(
            status=200,
            description="one page",
            schema=list_of("WebhookAttemptPage", WEBHOOK_ATTEMPT, paged=True),
        ),
    ),
    operation(
        "POST",
        "/v1/webhooks/{webhook_id}/deliveries/{delivery_id}/replay",
        replay_webhook_delivery,
        summary="Post a delivery again",
        tag="webhooks",
        scope=_SCOPE,
        parameters=(
            _WEBHOOK_ID,
            Parameter(
                name="delivery_id",
                location="path",
                description="the delivery (its webhook-id)",
                required=True,
            ),
        ),
        errors=(501,),
        replies=Reply(status=202, description="queued", schema=REPLAY_RESULT),
    ),
    operation(
        "POST",
        "/v1/webhooks/{webhook_id}/replay",
        replay_webhook_range,
        summary="Post again the deliveries of a time range",
        description="Queues the finished deliveries (failed ones by default) "
        "of events created in [from, to).",
        tag="webhooks",
        scope=_SCOPE,
        parameters=(_WEBHOOK_ID,),
        request_schema=REPLAY_REQUEST,
        errors=(501,),
        replies=Reply(
            status=202,
            description="how many were queued",
            schema=REPLAY_RANGE_RESULT,
        ),
    ),
]
