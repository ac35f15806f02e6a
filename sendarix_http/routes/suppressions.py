"""``/v1/suppressions`` and ``/v1/unsubscribes``.

The unsubscribe endpoints are a view of the suppression list restricted to
the unsubscribe reasons; an entry created there has ``user_unsubscribed``.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sendarix_backends.engine import Engine
from sendarix_core.addresses import AddressError, parse_address
from sendarix_core.checks import reject_unknown_fields
from sendarix_core.errors import (
    FieldError,
    NotFoundError,
    ValidationError,
)
from sendarix_core.keys import Scope
from sendarix_core.ports import SuppressionQuery
from sendarix_core.representation import suppression_to_dict
from sendarix_core.suppression import (
    UNSUBSCRIBE_REASONS,
    SuppressionReason,
    check_reason,
)
from sendarix_http.http_io import (
    JsonResponse,
    authorize,
    authorize_live,
    engine_of,
    query_int,
    read_json_object,
)
from sendarix_http.registry import Endpoint, Operation, Parameter, Reply, operation
from sendarix_http.schemas import SUPPRESSION, define, list_of

__all__ = ["operations"]

SUPPRESSION_REQUEST = define(
    "SuppressionRequest",
    {
        "type": "object",
        "properties": {
            "recipient": {"type": "string", "examples": ["user@example.com"]},
            "reason": {
                # null counts as absent, as for every optional field.
                "enum": [*(str(reason) for reason in SuppressionReason), None],
                "default": str(SuppressionReason.MANUAL),
            },
        },
        "required": ["recipient"],
    },
)

UNSUBSCRIBE_REQUEST = define(
    "UnsubscribeRequest",
    {
        "type": "object",
        "properties": {
            "recipient": {"type": "string", "examples": ["user@example.com"]},
        },
        "required": ["recipient"],
    },
)


_FIELDS = frozenset({"recipient", "reason"})


_CHANGE = "change the suppression list, which live mail uses"


async def _exists(engine: Engine, recipient: str) -> bool:
    try:
        await engine.get_suppression(recipient)
    except NotFoundError:
        return False
    return True


def _recipient_of(body: dict[str, Any]) -> str:
    value = body.get("recipient")
    if value is None:
        message = "recipient is required: an email address such as user@example.com"
        raise ValidationError([FieldError("recipient", "missing_field", message)])
    if not isinstance(value, str | dict):
        message = f"expected an address string or object, got {type(value).__name__}"
        raise ValidationError([FieldError("recipient", "invalid_type", message)])
    try:
        return parse_address(value).email
    except AddressError as exc:
        raise ValidationError([FieldError("recipient", exc.code, str(exc))]) from exc


def _reason_of(body: dict[str, Any], default: SuppressionReason) -> SuppressionReason:
    # A field set to null counts as absent, as everywhere in the API.
    reason = body.get("reason")
    return default if reason is None else check_reason(reason)


def _reasons_query(
    request: Request, unsubscribes: bool
) -> frozenset[SuppressionReason] | None:
    if unsubscribes:
        return frozenset(UNSUBSCRIBE_REASONS)
    raw = request.query_params.get("reason")
    if raw is None:
        return None
    return frozenset({_reason_of({"reason": raw}, SuppressionReason.MANUAL)})


def _make_handlers(unsubscribes: bool) -> list[Operation]:
    prefix = "/v1/unsubscribes" if unsubscribes else "/v1/suppressions"
    default_reason = (
        SuppressionReason.USER_UNSUBSCRIBED
        if unsubscribes
        else SuppressionReason.MANUAL
    )

    async def create(request: Request) -> Response:
        await authorize_live(request, Scope.SUPPRESSIONS_WRITE, _CHANGE)
        body, _ = await read_json_object(request)
        reject_unknown_fields(body, {"recipient"} if unsubscribes else _FIELDS)
        reason = default_reason if unsubscribes else _reason_of(body, default_reason)
        recipient = _recipient_of(body)
        engine = engine_of(request)
        existed = await _exists(engine, recipient)
        if reason is SuppressionReason.USER_UNSUBSCRIBED:
            # Also records the recipient.unsubscribed event.
            entry = await engine.unsubscribe(recipient)
        else:
            entry = await engine.suppress(recipient, reason)
        status = 200 if existed else 201
        return JsonResponse(suppression_to_dict(entry), status_code=status)

    async def list_entries(request: Request) -> Response:
        await authorize(request, Scope.MESSAGES_READ)
        query = SuppressionQuery(
            reasons=_reasons_query(request, unsubscribes),
            limit=query_int(request.query_params, "limit", default=25, low=1, high=100),
            cursor=request.query_params.get("cursor"),
        )
        page = await engine_of(request).list_suppressions(query)
        data = [suppression_to_dict(entry) for entry in page.items]
        return JsonResponse({"data": data, "next_cursor": page.next_cursor})

    async def read(request: Request) -> Response:
        await authorize(request, Scope.MESSAGES_READ)
        entry = await _visible_entry(request)
        return JsonResponse(suppression_to_dict(entry))

    async def remove(request: Request) -> Response:
        await authorize_live(request, Scope.SUPPRESSIONS_WRITE, _CHANGE)
        entry = await _visible_entry(request)
        await engine_of(request).unsuppress(entry.recipient)
        return Response(status_code=204)

    async def _visible_entry(request: Request) -> Any:
        recipient = request.path_params["recipient"]
        try:
            entry = await engine_of(request).get_suppression(recipient)
        except NotFoundError:
            if unsubscribes:
                raise NotFoundError("unsubscribe", recipient) from None
            raise
        if unsubscribes and entry.reason not in UNSUBSCRIBE_REASONS:
            raise NotFoundError("unsubscribe", recipient)
        return entry

    return _declare(prefix, unsubscribes, (create, list_entries, read, remove))


def _declare(
    prefix: str, unsubscribes: bool, handlers: tuple[Endpoint, ...]
) -> list[Operation]:
    create, list_entries, read, remove = handlers
    noun = "unsubscribe" if unsubscribes else "suppression"
    tag = "unsubscribes" if unsubscribes else "suppressions"
    recipient = Parameter(
        name="recipient",
        location="path",
        description="the address, compared case-insensitively",
        required=True,
    )
    page: tuple[Parameter, ...] = (
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
    )
    if not unsubscribes:
        page = (
            Parameter(
                name="reason",
                location="query",
                description="only entries with this reason",
                schema={"enum": [str(reason) for reason in SuppressionReason]},
            ),
            *page,
        )
    return [
        operation(
            "POST",
            prefix,
            create,
            operation_id=f"create_{noun}",
            summary=f"Add an {noun}" if unsubscribes else f"Add a {noun}",
            description="Future messages to the recipient end `suppressed`.",
            tag=tag,
            scope=Scope.SUPPRESSIONS_WRITE,
            request_schema=UNSUBSCRIBE_REQUEST if unsubscribes else SUPPRESSION_REQUEST,
            request_example={"recipient": "user@example.com"},
            replies=(
                Reply(status=201, description="the new entry", schema=SUPPRESSION),
                Reply(
                    status=200,
                    description="the recipient already had an entry, returned as is",
                    schema=SUPPRESSION,
                ),
            ),
        ),
        operation(
            "GET",
            prefix,
            list_entries,
            operation_id=f"list_{noun}s",
            summary=f"List {noun}s",
            tag=tag,
            scope=Scope.MESSAGES_READ,
            parameters=page,
            replies=Reply(
                status=200,
                description="one page",
                schema=list_of("SuppressionPage", SUPPRESSION, paged=True),
            ),
        ),
        operation(
            "GET",
            prefix + "/{recipient}",
            read,
            operation_id=f"get_{noun}",
            summary=f"Look up the {noun} of a recipient",
            tag=tag,
            scope=Scope.MESSAGES_READ,
            parameters=(recipient,),
            replies=Reply(status=200, description="the entry", schema=SUPPRESSION),
        ),
        operation(
            "DELETE",
            prefix + "/{recipient}",
            remove,
            operation_id=f"delete_{noun}",
            summary=f"Remove the {noun} of a recipient",
            tag=tag,
            scope=Scope.SUPPRESSIONS_WRITE,
            parameters=(recipient,),
            replies=Reply(status=204, description="removed"),
        ),
    ]


operations = _make_handlers(unsubscribes=False) + _make_handlers(unsubscribes=True)
