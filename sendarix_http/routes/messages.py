"""``/v1/messages``: submit, list, read, cancel, and the event timeline."""

from __future__ import annotations

from collections.abc import Mapping

from starlette.requests import Request
from starlette.responses import Response

from sendarix_core.errors import FieldError, NotFoundError, ValidationError
from sendarix_core.keys import ApiKey, Environment, Scope
from sendarix_core.model import Message
from sendarix_core.ports import MessageQuery
from sendarix_core.representation import event_to_dict, message_to_dict
from sendarix_core.states import MessageStatus
from sendarix_http.http_io import (
    WARN_BODY_BYTES,
    JsonResponse,
    authorize,
    check_time_range,
    engine_of,
    idempotency_key_of,
    parse_query,
    query_address,
    query_int,
    query_time,
    read_json_object,
)
from sendarix_http.registry import (
    IDEMPOTENCY_KEY_PARAMETER,
    Parameter,
    Reply,
    operation,
)
from sendarix_http.schemas import (
    ACCEPTED,
    EVENT,
    MESSAGE,
    SEND_REQUEST,
    list_of,
    time,
)

__all__ = ["operations"]


async def create_message(request: Request) -> Response:
    key = await authorize(request, Scope.MESSAGES_SEND)
    body, size = await read_json_object(request)
    result = await engine_of(request).send(
        body, api_key=key, idempotency_key=idempotency_key_of(request)
    )
    headers = {}
    content = dict(result.response)
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    if size > WARN_BODY_BYTES:
        warning = "the message is larger than 25 MiB; many receiving servers refuse it"
        headers["Warning"] = f'299 sendarix "{warning}"'
        content["warnings"] = [warning]
    return JsonResponse(content, status_code=202, headers=headers)


async def list_messages(request: Request) -> Response:
    key = await authorize(request, Scope.MESSAGES_READ)
    params = request.query_params
    parsed = parse_query(
        status=lambda: _status(params),
        created_after=lambda: query_time(params, "created_after"),
        created_before=lambda: query_time(params, "created_before"),
        limit=lambda: query_int(params, "limit", default=25, low=1, high=100),
        recipient=lambda: query_address(params, "recipient"),
    )
    check_time_range(
        params,
        ("created_after", parsed["created_after"]),
        ("created_before", parsed["created_before"]),
    )
    query = MessageQuery(
        **parsed,
        cursor=params.get("cursor"),
        test_mode=key.environment == Environment.TEST,
    )
    page = await engine_of(request).list_messages(query)
    return JsonResponse(
        {
            "data": [message_to_dict(m) for m in page.items],
            "next_cursor": page.next_cursor,
        }
    )


def _status(params: Mapping[str, str]) -> MessageStatus | None:
    status = params.get("status")
    if status is None:
        return None
    if status not in MessageStatus.__members__.values():
        allowed = ", ".join(MessageStatus)
        message = f"{status!r} is not one of {allowed}"
        raise ValidationError([FieldError("status", "invalid_status", message)])
    return MessageStatus(status)


async def visible_message(request: Request, key: ApiKey) -> Message:
    """Return the message in the path if the key's environment may see it.

    Test keys see only messages sent with test keys, and live keys only
    live ones, so staging and CI can't read or cancel production mail.
    """
    message_id = request.path_params["message_id"]
    message = await engine_of(request).get_message(message_id)
    if message.test_mode != (key.environment == Environment.TEST):
        raise NotFoundError("message", message_id)
    return message


async def get_message(request: Request) -> Response:
    key = await authorize(request, Scope.MESSAGES_READ)
    message = await visible_message(request, key)
    return JsonResponse(message_to_dict(message))


async def list_message_events(request: Request) -> Response:
    key = await authorize(request, Scope.MESSAGES_READ)
    message = await visible_message(request, key)
    events = await engine_of(request).list_events(message.id)
    return JsonResponse({"data": [event_to_dict(event) for event in events]})


async def cancel_message(request: Request) -> Response:
    key = await authorize(request, Scope.MESSAGES_SEND)
    message = await visible_message(request, key)
    cancelled = await engine_of(request).cancel(message.id)
    return JsonResponse(message_to_dict(cancelled))


_MESSAGE_ID = Parameter(
    name="message_id",
    location="path",
    description="the id returned at submission, such as msg_01kpk2byj0f6exkfg4w47cc66n",
    required=True,
)

_SEND_EXAMPLE = {
    "recipient": "user@example.com",
    "from": "Acme <no-reply@acme.example>",
    "subject": "Your verification code",
    "text": "Your code is 847291.",
    "headers": {"X-Idempotency-Key": "9b1d6f0e-signup-42"},
    "priority": "high",
    "metadata": {"user_id": "42"},
    "tags": ["otp"],
}

_LIST_PARAMETERS = (
    Parameter(
        name="status",
        location="query",
        description="only messages in this state",
        schema={"enum": [str(status) for status in MessageStatus]},
    ),
    Parameter(
        name="recipient", location="query", description="only messages to this address"
    ),
    Parameter(
        name="created_after",
        location="query",
        description="ISO 8601 time with a timezone",
        schema=time(),
    ),
    Parameter(
        name="created_before",
        location="query",
        description="ISO 8601 time with a timezone",
        schema=time(),
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
        "POST",
        "/v1/messages",
        create_message,
        summary="Submit a message",
        description="Validates, stores and queues one message. `202` means "
        "queued, never delivered. The `Idempotency-Key` header or "
        "`headers.X-Idempotency-Key` makes a retry return the first response.",
        tag="messages",
        scope=Scope.MESSAGES_SEND,
        request_schema=SEND_REQUEST,
        request_example=_SEND_EXAMPLE,
        parameters=(IDEMPOTENCY_KEY_PARAMETER,),
        replies=Reply(
            status=202,
            description="stored and queued (or a replay of the first response)",
            schema=ACCEPTED,
            example={
                "message_id": "msg_01kpk2byj0f6exkfg4w47cc66n",
                "status": "queued",
                "recipient": "user@example.com",
                "created_at": "2026-04-19T14:30:00.000Z",
            },
            headers=("Idempotent-Replayed", "Warning"),
        ),
        errors=(409,),
    ),
    operation(
        "GET",
        "/v1/messages",
        list_messages,
        summary="List messages, newest first",
        tag="messages",
        scope=Scope.MESSAGES_READ,
        parameters=_LIST_PARAMETERS,
        replies=Reply(
            status=200,
            description="one page",
            schema=list_of("MessagePage", MESSAGE, paged=True),
        ),
    ),
    operation(
        "GET",
        "/v1/messages/{message_id}",
        get_message,
        summary="Read a message's current state",
        tag="messages",
        scope=Scope.MESSAGES_READ,
        parameters=(_MESSAGE_ID,),
        replies=Reply(status=200, description="the message", schema=MESSAGE),
    ),
    operation(
        "DELETE",
        "/v1/messages/{message_id}",
        cancel_message,
        summary="Cancel a scheduled or queued message",
        description="`404 message_not_cancellable` once delivery has started.",
        tag="messages",
        scope=Scope.MESSAGES_SEND,
        parameters=(_MESSAGE_ID,),
        replies=Reply(
            status=200, description="the message, now cancelled", schema=MESSAGE
        ),
    ),
    operation(
        "GET",
        "/v1/messages/{message_id}/events",
        list_message_events,
        summary="List a message's events, oldest first",
        tag="messages",
        scope=Scope.MESSAGES_READ,
        parameters=(_MESSAGE_ID,),
        replies=Reply(
            status=200,
            description="the timeline",
            schema=list_of("EventList", EVENT, paged=False),
        ),
    ),
]
