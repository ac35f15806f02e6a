"""``/v1/messages``: submit, list, read, cancel, and the event timeline."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from sendarix_core.errors import FieldError, ValidationError
from sendarix_core.keys import Scope
from sendarix_core.ports import MessageQuery
from sendarix_core.representation import event_to_dict, message_to_dict
from sendarix_core.states import MessageStatus
from sendarix_http.http_io import (
    WARN_BODY_BYTES,
    JsonResponse,
    authorize,
    engine_of,
    query_int,
    query_time,
    read_json_object,
)

__all__ = ["routes"]


async def create_message(request: Request) -> Response:
    key = await authorize(request, Scope.MESSAGES_SEND)
    body, size = await read_json_object(request)
    result = await engine_of(request).send(
        body, api_key=key, idempotency_key=request.headers.get("idempotency-key")
    )
    headers = {}
    content = dict(result.response)
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    if size > WARN_BODY_BYTES:
        warning = "the message is larger than 25 MB; many receiving servers refuse it"
        headers["Warning"] = f'299 sendarix "{warning}"'
        content["warnings"] = [warning]
    return JsonResponse(content, status_code=202, headers=headers)


async def list_messages(request: Request) -> Response:
    await authorize(request, Scope.MESSAGES_READ)
    params = request.query_params
    status = params.get("status")
    if status is not None and status not in MessageStatus.__members__.values():
        allowed = ", ".join(MessageStatus)
        raise ValidationError(
            [
                FieldError(
                    "status", "invalid_status", f"{status!r} is not one of {allowed}"
                )
            ]
        )
    query = MessageQuery(
        status=MessageStatus(status) if status else None,
        recipient=params.get("recipient"),
        created_after=query_time(params, "created_after"),
        created_before=query_time(params, "created_before"),
        limit=query_int(params, "limit", default=25, low=1, high=100),
        cursor=params.get("cursor"),
    )
    page = await engine_of(request).list_messages(query)
    return JsonResponse(
        {
            "data": [message_to_dict(m) for m in page.items],
            "next_cursor": page.next_cursor,
        }
    )


async def get_message(request: Request) -> Response:
    await authorize(request, Scope.MESSAGES_READ)
    message = await engine_of(request).get_message(request.path_params["message_id"])
    return JsonResponse(message_to_dict(message))


async def list_message_events(request: Request) -> Response:
    await authorize(request, Scope.MESSAGES_READ)
    events = await engine_of(request).list_events(request.path_params["message_id"])
    return JsonResponse({"data": [event_to_dict(event) for event in events]})


async def cancel_message(request: Request) -> Response:
    await authorize(request, Scope.MESSAGES_SEND)
    message = await engine_of(request).cancel(request.path_params["message_id"])
    return JsonResponse(message_to_dict(message))


routes = [
    Route("/v1/messages", create_message, methods=["POST"]),
    Route("/v1/messages", list_messages, methods=["GET"]),
    Route("/v1/messages/{message_id}", get_message, methods=["GET"]),
    Route("/v1/messages/{message_id}", cancel_message, methods=["DELETE"]),
    Route("/v1/messages/{message_id}/events", list_message_events, methods=["GET"]),
]
