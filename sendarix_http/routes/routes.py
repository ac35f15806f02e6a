"""``/v1/routes``: routing rules, the routing dry run and destination sites.

Smarthost URLs are shown with the password replaced by ``***``; sending
the masked URL back in a change keeps the stored password.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sendarix_backends.pacing import SiteState
from sendarix_backends.routing import RouteExplanation, Routes
from sendarix_core.addresses import AddressError, parse_address
from sendarix_core.checks import reject_unknown_fields
from sendarix_core.errors import FieldError, ValidationError
from sendarix_core.keys import Scope
from sendarix_core.representation import format_time
from sendarix_core.route_requests import action_to_document, match_to_document
from sendarix_core.routing import DefaultRouteError, RouteRule
from sendarix_core.states import Priority
from sendarix_http.errors import HttpError
from sendarix_http.http_io import (
    JsonResponse,
    authorize_live,
    engine_of,
    read_json_object,
)
from sendarix_http.registry import Parameter, Reply, operation
from sendarix_http.route_schemas import (
    EXPLANATION,
    REORDER_REQUEST,
    ROUTE,
    ROUTE_LIST,
    ROUTE_REQUEST,
    ROUTE_UPDATE,
    SITE_LIST,
)

__all__ = ["operations", "rule_to_dict", "site_to_dict"]


_CHANGE = "change routing rules, which live mail uses"


def routes_of(request: Request) -> Routes:
    return engine_of(request).control.routes


def rule_to_dict(rule: RouteRule, position: int) -> dict[str, Any]:
    return {
        "id": rule.id,
        "position": position,
        "default": rule.is_default,
        "description": rule.description,
        "match": match_to_document(rule.match),
        "action": action_to_document(rule.action, reveal_password=False),
        "created_at": format_time(rule.created_at),
        "updated_at": format_time(rule.updated_at),
    }


def site_to_dict(state: SiteState) -> dict[str, Any]:
    return {
        "site": state.site,
        "factor": round(state.factor, 4),
        "throttled": state.factor < 1.0,
        "slots_held": state.slots_held,
        "throttled_count": state.throttled_count,
        "last_throttled_at": format_time(state.last_throttled_at),
        "last_throttle_reply": state.last_throttle_reply,
        "updated_at": format_time(state.updated_at),
    }


def _listing(rules: list[RouteRule]) -> dict[str, Any]:
    return {"data": [rule_to_dict(rule, index) for index, rule in enumerate(rules)]}


async def list_routes(request: Request) -> Response:
    return JsonResponse(_listing(await routes_of(request).list_rules()))


async def create_route(request: Request) -> Response:
    await authorize_live(request, Scope.ROUTES_WRITE, _CHANGE)
    body, _ = await read_json_object(request)
    routes = routes_of(request)
    rule = await routes.create(body)
    return JsonResponse(await _with_position(routes, rule), status_code=201)


async def get_route(request: Request) -> Response:
    routes = routes_of(request)
    rule = await routes.get_rule(request.path_params["route_id"])
    return JsonResponse(await _with_position(routes, rule))


async def update_route(request: Request) -> Response:
    await authorize_live(request, Scope.ROUTES_WRITE, _CHANGE)
    body, _ = await read_json_object(request)
    routes = routes_of(request)
    with _conflict():
        rule = await routes.update(request.path_params["route_id"], body)
    return JsonResponse(await _with_position(routes, rule))


async def delete_route(request: Request) -> Response:
    await authorize_live(request, Scope.ROUTES_WRITE, _CHANGE)
    with _conflict():
        await routes_of(request).delete(request.path_params["route_id"])
    return Response(status_code=204)


async def reorder_routes(request: Request) -> Response:
    await authorize_live(request, Scope.ROUTES_WRITE, _CHANGE)
    body, _ = await read_json_object(request)
    reject_unknown_fields(body, {"order"})
    order = body.get("order")
    valid = isinstance(order, list) and all(isinstance(item, str) for item in order)
    if not valid:
        raise ValidationError(
            [
                FieldError(
                    "order",
                    "invalid_order",
                    "expected {'order': [rule ids]}, every rule but 'default' once",
                )
            ]
        )
    with _conflict():
        rules = await routes_of(request).reorder(order)  # type: ignore[arg-type]
    return JsonResponse(_listing(rules))


async def explain_route(request: Request) -> Response:
    params = request.query_params
    recipient = _address(params.get("recipient"), "recipient", required=True)
    sender = _address(params.get("from"), "from", required=False)
    tags = tuple(tag for tag in (params.get("tags") or "").split(",") if tag)
    priority = _priority(params.get("priority"))
    router = engine_of(request).control.router
    result = await router.explain(
        recipient,
        sender_domain=sender,
        tags=tags,
        priority=priority,
    )
    return JsonResponse(_explanation(result))


async def list_sites(request: Request) -> Response:
    control = engine_of(request).control
    if not control.has_queue_control:
        raise HttpError(
            501,
            "not_supported",
            "pacing needs the SQL storage backend (sqlite:// or postgresql://)",
        )
    states = await control.sites()
    return JsonResponse({"data": [site_to_dict(state) for state in states]})


async def _with_position(routes: Routes, rule: RouteRule) -> dict[str, Any]:
    rules = await routes.list_rules()
    position = next(
        (index for index, item in enumerate(rules) if item.id == rule.id), 0
    )
    return rule_to_dict(rules[position] if rules else rule, position)


def _explanation(result: RouteExplanation) -> dict[str, Any]:
    explanation = result.explanation
    return {
        "rule": rule_to_dict(
            explanation.rule,
            [check.rule_id for check in explanation.checks].index(explanation.rule.id),
        ),
        "site": result.site,
        "mx_hosts": list(result.mx_hosts),
        "mx_error": result.mx_error,
        "checks": [
            {
                "rule_id": check.rule_id,
                "matched": check.matched,
                "conditions": [
                    {
                        "condition": condition.condition,
                        "matched": condition.matched,
                        "detail": condition.detail,
                    }
                    for condition in check.conditions
                ],
            }
            for check in explanation.checks
        ],
    }


def _address(value: str | None, field: str, *, required: bool) -> str:
    """Return the domain of an address query parameter."""
    if value is None:
        if required:
            raise ValidationError(
                [FieldError(field, "missing_field", f"{field} is required")]
            )
        return ""
    try:
        return parse_address(value).domain
    except AddressError as exc:
        raise ValidationError(
            [FieldError(field, "invalid_address", str(exc))]
        ) from None


def _priority(value: str | None) -> Priority:
    if value is None:
        return Priority.NORMAL
    if value not in {priority.value for priority in Priority}:
        raise ValidationError(
            [
                FieldError(
                    "priority",
                    "invalid_priority",
                    f"{value!r} is not a priority; expected high, normal or low",
                )
            ]
        )
    return Priority(value)


@contextmanager
def _conflict() -> Iterator[None]:
    """Turn ``DefaultRouteError`` into a ``409``."""
    try:
        yield
    except DefaultRouteError as exc:
        raise HttpError(409, "default_route_protected", str(exc)) from exc


_ROUTE_ID = Parameter(
    name="route_id",
    location="path",
    description="a rule id, or `default` for the default rule",
    required=True,
)
_ROUTE_REPLY = Reply(status=200, description="the rule", schema=ROUTE)
_READ = Scope.MESSAGES_READ
_WRITE = Scope.ROUTES_WRITE
_EXAMPLE = {
    "description": "Google-hosted domains through the warm IP",
    "match": {"mx_hosts": ["*.google.com"]},
    "action": {
        "transport": "mx",
        "source_address": "192.0.2.10",
        "tls": "required",
        "pacing": {"max_connections": 5, "messages_per_second": 20},
        "retry": {"intervals": [60, 300, 1800], "max_age": 86400},
    },
}

operations = [
    operation(
        "GET",
        "/v1/routes",
        list_routes,
        summary="List routing rules",
        description="In evaluation order: the first rule whose conditions all "
        "hold routes the message. The default rule is always last.",
        tag="routes",
        scope=_READ,
        replies=Reply(status=200, description="every rule", schema=ROUTE_LIST),
    ),
    operation(
        "POST",
        "/v1/routes",
        create_route,
        summary="Create a routing rule",
        description="`position` 0 puts the rule first; without it the rule "
        "comes last before the default rule.",
        tag="routes",
        scope=_WRITE,
        request_schema=ROUTE_REQUEST,
        request_example=_EXAMPLE,
        replies=Reply(status=201, description="the rule", schema=ROUTE),
    ),
    operation(
        "POST",
        "/v1/routes/reorder",
        reorder_routes,
        summary="Reorder routing rules",
        description="`order` lists every rule id but `default` exactly once.",
        tag="routes",
        scope=_WRITE,
        request_schema=REORDER_REQUEST,
        request_example={"order": ["rte_b", "rte_a"]},
        replies=Reply(status=200, description="every rule", schema=ROUTE_LIST),
        errors=(409,),
    ),
    operation(
        "GET",
        "/v1/routes/explain",
        explain_route,
        summary="Explain how a message would be routed",
        description="Tests every rule against the recipient, sender, tags and "
        "priority, resolving the recipient domain's MX hosts when a rule "
        "needs them. Sends nothing.",
        tag="routes",
        scope=_READ,
        parameters=(
            Parameter(
                name="recipient",
                location="query",
                description="the recipient address",
                required=True,
            ),
            Parameter(name="from", location="query", description="the sender address"),
            Parameter(
                name="tags", location="query", description="comma-separated tags"
            ),
            Parameter(
                name="priority",
                location="query",
                description="high, normal (default) or low",
                schema={"enum": [str(priority) for priority in Priority]},
            ),
        ),
        replies=Reply(status=200, description="the rule and why", schema=EXPLANATION),
    ),
    operation(
        "GET",
        "/v1/routes/sites",
        list_sites,
        summary="Destination sites and their pacing state",
        description="Sites active most recently first. `factor` below 1 "
        "means throttling replies slowed the site down; it recovers by 0.01 "
        "a second.",
        tag="routes",
        scope=_READ,
        replies=Reply(status=200, description="the sites", schema=SITE_LIST),
        errors=(501,),
    ),
    operation(
        "GET",
        "/v1/routes/{route_id}",
        get_route,
        summary="Read a routing rule",
        tag="routes",
        scope=_READ,
        parameters=(_ROUTE_ID,),
        replies=_ROUTE_REPLY,
    ),
    operation(
        "PATCH",
        "/v1/routes/{route_id}",
        update_route,
        summary="Change a routing rule",
        description="Replaces `description` and `match` when given and merges "
        "the fields of `action`; `action.pacing` and `action.retry` are each "
        "replaced as a whole, so send every field of them to keep. The "
        "default rule's match can't be set.",
        tag="routes",
        scope=_WRITE,
        parameters=(_ROUTE_ID,),
        request_schema=ROUTE_UPDATE,
        request_example={"action": {"pacing": {"messages_per_minute": 600}}},
        replies=_ROUTE_REPLY,
        errors=(409,),
    ),
    operation(
        "DELETE",
        "/v1/routes/{route_id}",
        delete_route,
        summary="Delete a routing rule",
        description="The default rule can't be deleted (`409`).",
        tag="routes",
        scope=_WRITE,
        parameters=(_ROUTE_ID,),
        replies=Reply(status=204, description="deleted"),
        errors=(409,),
    ),
]
