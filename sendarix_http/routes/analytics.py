"""``GET /v1/analytics``: outcome counts, rates and delivery latency."""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from sendarix_backends.events.analytics import AnalyticsQuery, GroupBy, Interval
from sendarix_core.errors import FieldError, ValidationError
from sendarix_core.keys import ApiKey, Environment, Scope
from sendarix_http.http_io import JsonResponse, parse_query, query_time
from sendarix_http.registry import Parameter, Reply, operation
from sendarix_http.routes.events import event_services_of
from sendarix_http.schemas import define

__all__ = ["operations"]

# Bounds on the buckets one report may hold: about a month of hours, or
# thirteen months of days.
MAX_SPAN = {Interval.HOUR: timedelta(days=31), Interval.DAY: timedelta(days=400)}


async def get_analytics(request: Request) -> Response:
    query = _analytics_query(request.query_params)
    key: ApiKey = request.state.api_key
    # Test keys see only test traffic, live keys only live traffic.
    query = attrs.evolve(query, test_mode=key.environment == Environment.TEST)
    report = await event_services_of(request).analytics(query)
    return JsonResponse(report)


def _analytics_query(params: QueryParams) -> AnalyticsQuery:
    parsed = parse_query(
        start=lambda: _required_time(params, "from"),
        end=lambda: _required_time(params, "to"),
        interval=lambda: _interval(params),
        group_by=lambda: _group_by(params),
    )
    start, end = parsed["start"], parsed["end"]
    interval, group_by = parsed["interval"], parsed["group_by"]
    if end <= start:
        message = f"'to' ({params['to']}) must be later than 'from' ({params['from']})"
        raise ValidationError([FieldError("to", "invalid_range", message)])
    if end - start > MAX_SPAN[interval]:
        days = MAX_SPAN[interval].days
        message = f"with interval={interval} the range may span at most {days} days"
        raise ValidationError([FieldError("to", "range_too_long", message)])
    return AnalyticsQuery(start=start, end=end, interval=interval, group_by=group_by)


def _required_time(params: QueryParams, name: str) -> datetime:
    value = query_time(params, name)
    if value is None:
        message = f"{name} is required: an ISO 8601 time such as 2026-04-19T00:00:00Z"
        raise ValidationError([FieldError(name, "missing_field", message)])
    return value


def _interval(params: QueryParams) -> Interval:
    raw = params.get("interval", str(Interval.DAY))
    try:
        return Interval(raw)
    except ValueError:
        message = f"{raw!r} is not an interval; expected hour or day"
        raise ValidationError(
            [FieldError("interval", "invalid_interval", message)]
        ) from None


def _group_by(params: QueryParams) -> GroupBy | None:
    raw = params.get("group_by")
    if raw is None:
        return None
    try:
        return GroupBy(raw)
    except ValueError:
        message = f"{raw!r} is not a grouping; expected tag or domain"
        raise ValidationError(
            [FieldError("group_by", "invalid_group_by", message)]
        ) from None


_RATE = {"type": ["number", "null"], "minimum": 0}
_MS = {"type": ["number", "null"], "minimum": 0}

ANALYTICS = define(
    "Analytics",
    {
        "type": "object",
        "properties": {
            "from": {"type": "string", "format": "date-time"},
            "to": {"type": "string", "format": "date-time"},
            "interval": {"enum": [str(interval) for interval in Interval]},
            "group_by": {"enum": [*(str(group) for group in GroupBy), None]},
            "data": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "start": {"type": "string", "format": "date-time"},
                        "counts": {
                            "type": "object",
                            "additionalProperties": {"type": "integer"},
                        },
                        "rates": {
                            "type": "object",
                            "properties": {
                                "delivery_rate": _RATE,
                                "bounce_rate": _RATE,
                                "complaint_rate": _RATE,
                                "deferral_rate": _RATE,
                            },
                        },
                        "delivery_latency_ms": {
                            "type": "object",
                            "properties": {
                                "p50": _MS,
                                "p95": _MS,
                                "samples": {"type": "integer"},
                            },
                        },
                    },
                    "required": ["start", "counts", "rates", "delivery_latency_ms"],
                },
            },
        },
        "required": ["from", "to", "interval", "group_by", "data"],
    },
)

operations = [
    operation(
        "GET",
        "/v1/analytics",
        get_analytics,
        summary="Count outcomes per hour or day",
        description="Counts of each outcome, delivery, bounce, complaint and "
        "deferral rates, and acceptance-to-delivery latency (p50, p95) per "
        "bucket, optionally per tag or recipient domain. Buckets without "
        "events are left out.",
        tag="analytics",
        scope=Scope.MESSAGES_READ,
        parameters=(
            Parameter(
                name="from",
                location="query",
                description="start, aligned down to the interval (UTC)",
                schema={"type": "string", "format": "date-time"},
                required=True,
            ),
            Parameter(
                name="to",
                location="query",
                description="end (exclusive), aligned up to the interval (UTC)",
                schema={"type": "string", "format": "date-time"},
                required=True,
            ),
            Parameter(
                name="interval",
                location="query",
                description="hour or day (the default)",
                schema={"enum": ["hour", "day"]},
            ),
            Parameter(
                name="group_by",
                location="query",
                description="tag or domain (the recipient's)",
                schema={"enum": ["tag", "domain"]},
            ),
        ),
        errors=(501,),
        replies=Reply(status=200, description="the report", schema=ANALYTICS),
    ),
]
