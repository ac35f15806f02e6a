"""``POST /v1/messages/batch``: up to 500 messages in one request.

The response is ``202`` whenever the batch was accepted, with one result per
item in request order: ``{"message_id", "status"}`` for a queued message,
``{"errors": [...]}`` for an item that permissive mode skipped. Strict mode
responds to an invalid item with ``422`` for the whole batch instead.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from sendarix_backends.batch import MAX_BATCH_SIZE, BatchMode
from sendarix_core.keys import Scope
from sendarix_core.states import MessageStatus
from sendarix_http.http_io import (
    JsonResponse,
    authorize,
    engine_of,
    idempotency_key_of,
    read_json_object,
)
from sendarix_http.registry import IDEMPOTENCY_KEY_PARAMETER, Reply, operation
from sendarix_http.schemas import FIELD_ERROR, SEND_REQUEST, define

__all__ = ["operations"]


async def send_batch(request: Request) -> Response:
    key = await authorize(request, Scope.MESSAGES_SEND)
    # Items are validated one by one, so a permissive batch skips only the
    # items that contain U+0000.
    body, _ = await read_json_object(request, nul_checked=False)
    result = await engine_of(request).send_batch(
        body, api_key=key, idempotency_key=idempotency_key_of(request)
    )
    headers = {"Idempotent-Replayed": "true"} if result.replayed else {}
    return JsonResponse(result.response, status_code=202, headers=headers)


def _messages(items: dict[str, object]) -> dict[str, object]:
    return {
        "type": "array",
        "minItems": 1,
        "maxItems": MAX_BATCH_SIZE,
        "items": items,
    }


# Strict mode rejects every invalid item, so its items follow SendRequest.
# Permissive mode accepts anything and reports invalid items per item.
BATCH_REQUEST = define(
    "BatchRequest",
    {
        "type": "object",
        "properties": {
            "messages": _messages({}),
            "mode": {
                "enum": [str(mode) for mode in BatchMode],
                "default": str(BatchMode.STRICT),
            },
        },
        "required": ["messages"],
        "additionalProperties": False,
        "if": {
            "properties": {"mode": {"const": str(BatchMode.PERMISSIVE)}},
            "required": ["mode"],
        },
        "then": {"properties": {"messages": _messages({})}},
        "else": {"properties": {"messages": _messages(SEND_REQUEST)}},
    },
)

BATCH_RESULT = define(
    "BatchResult",
    {
        "type": "object",
        "properties": {
            "data": {
                "type": "array",
                "items": {
                    "oneOf": [
                        {
                            "type": "object",
                            "properties": {
                                "message_id": {"type": "string"},
                                "status": {
                                    "enum": [
                                        str(MessageStatus.QUEUED),
                                        str(MessageStatus.SCHEDULED),
                                    ]
                                },
                            },
                            "required": ["message_id", "status"],
                            "additionalProperties": False,
                        },
                        {
                            "type": "object",
                            "properties": {
                                "errors": {"type": "array", "items": FIELD_ERROR}
                            },
                            "required": ["errors"],
                            "additionalProperties": False,
                        },
                    ]
                },
            }
        },
        "required": ["data"],
        "additionalProperties": False,
    },
)

_EXAMPLE_MESSAGE = {
    "recipient": "ada@example.com",
    "from": "Acme <no-reply@acme.example>",
    "subject": "Your receipt",
    "text": "Thank you for your order.",
}

operations = [
    operation(
        "POST",
        "/v1/messages/batch",
        send_batch,
        summary="Submit up to 500 messages at once",
        description="Valid items are stored in one commit. `strict` (the "
        "default) rejects the whole batch with `422` when any item is invalid, "
        "naming fields as `messages.<index>.<field>`; `permissive` queues the "
        "valid items and returns the errors of the others in their result. "
        "An `Idempotency-Key` covers the whole batch: a retry returns the "
        "first response, another body with the key is `409`.",
        tag="messages",
        scope=Scope.MESSAGES_SEND,
        request_schema=BATCH_REQUEST,
        request_example={
            "mode": "permissive",
            "messages": [_EXAMPLE_MESSAGE, {**_EXAMPLE_MESSAGE, "recipient": "bob@"}],
        },
        parameters=(IDEMPOTENCY_KEY_PARAMETER,),
        replies=Reply(
            status=202,
            description="one result per item, in request order",
            schema=BATCH_RESULT,
            example={
                "data": [
                    {
                        "message_id": "msg_01kpk2byj0f6exkfg4w47cc66n",
                        "status": "queued",
                    },
                    {
                        "errors": [
                            {
                                "field": "messages.1.recipient",
                                "code": "invalid_address",
                                "message": "'bob@' has no domain",
                            }
                        ]
                    },
                ]
            },
            headers=("Idempotent-Replayed",),
        ),
        errors=(409,),
    ),
]
