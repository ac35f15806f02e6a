"""``GET /v1/events``: search the event log."""

from __future__ import annotations

import attrs
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from sendarix_backends.events.query import EventOrder, EventQuery
from sendarix_backends.events.services import EventServices
from sendarix_core.addresses import quote_value
from sendarix_core.errors import FieldError, ValidationError
from sendarix_core.keys import ApiKey, Environment, Scope
from sendarix_core.representation import event_to_dict
from sendarix_core.states import EventType
from sendarix_http.errors import HttpError
from sendarix_http.http_io import (
    JsonResponse,
    check_time_range,
    engine_of,
    parse_query,
    query_address,
    query_int,
    query_time,
)
from sendarix_http.registry import Parameter, Reply, operation
from sendarix_http.schemas import EVENT, list_of

__all__ = ["event_services_of", "operations"]

# ``metadata[user_id]=42`` filters on a metadata key and value. The key is
# the text between the first "[" and the last "]", so it may contain brackets.
_METADATA_PREFIX = "metadata["
_MAX_METADATA_KEY_LENGTH = 256


def event_services_of(request: Request) -> EventServices:
    """Return the engine's event services; 501 when the store has none."""
    services = engine_of(request).events
    if services is None:
        raise HttpError(
            501,
            "not_supported",
            "events, webhooks and analytics need the SQL storage backend "
            "(sqlite:// or postgresql:// in SENDARIX_DATABASE_URL)",
        )
    return services


async def search_events(request: Request) -> Response:
    query = _event_query(request.query_params)
    key: ApiKey = request.state.api_key
    # As with messages, test keys see only the events of test messages and
    # live keys only the others.
    query = attrs.evolve(query, test_mode=key.environment == Environment.TEST)
    page = await event_services_of(request).search(query)
    return JsonResponse(
        {
            "data": [event_to_dict(event) for event in page.items],
            "next_cursor": page.next_cursor,
        }
    )


def _event_query(params: QueryParams) -> EventQuery:
    parsed = parse_query(
        types=lambda: _types(params),
        created_after=lambda: query_time(params, "created_after"),
        created_before=lambda: query_time(params, "created_before"),
        order=lambda: _order(params),
        limit=lambda: query_int(params, "limit", default=25, low=1, high=100),
        metadata=lambda: _metadata(params),
        recipient=lambda: query_address(params, "recipient"),
    )
    check_time_range(
        params,
        ("created_after", parsed["created_after"]),
        ("created_before", parsed["created_before"]),
    )
    return EventQuery(
        **parsed,
        message_id=params.get("message_id"),
        tag=params.get("tag"),
        cursor=params.get("cursor"),
    )


def _types(params: QueryParams) -> frozenset[str]:
    raw_values = params.getlist("type")
    if any(not raw.replace(",", "").strip() for raw in raw_values):
        # Taken as no filter, a type left empty by a client's bug would
        # return every event.
        message = "type is empty; name one or more event types, or leave it out"
        raise ValidationError([FieldError("type", "invalid_event_type", message)])
    values = [
        value.strip() for raw in raw_values for value in raw.split(",") if value.strip()
    ]
    known = {str(event_type) for event_type in EventType}
    unknown = [value for value in values if value not in known]
    if unknown:
        allowed = ", ".join(sorted(known))
        message = f"{unknown[0]!r} is not an event type; expected one of {allowed}"
        raise ValidationError([FieldError("type", "invalid_event_type", message)])
    return frozenset(values)


def _metadata(params: QueryParams) -> dict[str, str]:
    """Return the ``metadata[KEY]`` filters, or raise ValidationError.

    A parameter that starts with ``metadata[`` but does not end with ``]``,
    or whose key is empty or too long, is rejected, because ignoring it would
    return unfiltered events.
    """
    found: dict[str, str] = {}
    errors: list[FieldError] = []
    for name, value in params.multi_items():
        if not name.startswith(_METADATA_PREFIX):
            continue
        key = name[len(_METADATA_PREFIX) : -1]
        if name.endswith("]") and 1 <= len(key) <= _MAX_METADATA_KEY_LENGTH:
            found[key] = value
            continue
        message = (
            f"the query parameter {quote_value(name)} is not metadata[KEY]; "
            f"write metadata[KEY]=VALUE with a key of 1 to "
            f"{_MAX_METADATA_KEY_LENGTH} characters and percent-encode & = # "
            "and + in it"
        )
        errors.append(FieldError(name, "invalid_parameter", message))
    if errors:
        raise ValidationError(errors)
    return found


def _order(params: QueryParams) -> EventOrder:
    raw = params.get("order", EventOrder.NEWEST_FIRST.value)
    try:
        return EventOrder(raw)
    except ValueError:
        message = f"{raw!r} is not an order; expected desc (newest first) or asc"
        raise ValidationError([FieldError("order", "invalid_order", message)]) from None


_PARAMETERS = (
    Parameter(
        name="type",
        location="query",
        description="event types, comma-separated or repeated; any matches",
        repeated=True,
    ),
    Parameter(
        name="recipient",
        location="query",
        description="the recipient, compared case-insensitively",
    ),
    Parameter(name="message_id", location="query", description="one message"),
    Parameter(
        name="tag", location="query", description="events of messages with this tag"
    ),
    Parameter(
        name="metadata[KEY]",
        location="query",
        description="events of messages whose metadata KEY has this value; "
        "repeat for several keys",
    ),
    Parameter(
        name="created_after",
        location="query",
        description="inclusive lower bound, ISO 8601 with a timezone",
        schema={"type": "string", "format": "date-time"},
    ),
    Parameter(
        name="created_before",
        location="query",
        description="exclusive upper bound, ISO 8601 with a timezone",
        schema={"type": "string", "format": "date-time"},
    ),
    Parameter(
        name="order",
        location="query",
        description="desc (newest first, the default) or asc (oldest first)",
        schema={"enum": ["desc", "asc"]},
    ),
    Parameter(
        name="limit",
        location="query",
        description="page size, 1 to 100 (default 25)",
        schema={"type": "integer", "minimum": 1, "maximum": 100},
    ),
    Parameter(
        name="cursor", location="query", description="`next_cursor` of the last page"
    ),
)

operations = [
    operation(
        "GET",
        "/v1/events",
        search_events,
        summary="Search the event log",
        description="Every filter given must match. Pages never repeat or skip "
        "an event that was stored when the first page was read.",
        tag="events",
        scope=Scope.MESSAGES_READ,
        parameters=_PARAMETERS,
        errors=(501,),
        replies=Reply(
            status=200,
            description="one page",
            schema=list_of("EventPage", EVENT, paged=True),
        ),
    ),
]
