"""The OpenAPI 3.1 document of the v1 API, built from the route declarations.

``build_document`` reads the same ``Operation`` objects that ``create_app``
routes, so an endpoint, its scope, parameters, bodies and error statuses
appear in the document exactly when the server has them.

``python -m sendarix_http.reference`` renders it as the Markdown page
committed as ``docs/api-reference.md``.
"""

from __future__ import annotations

import importlib.metadata
import re
from collections.abc import Iterable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sendarix_http.http_io import JsonResponse
from sendarix_http.registry import Operation, Parameter, Reply, operation
from sendarix_http.schemas import SCHEMAS, ref

__all__ = ["ERROR_STATUSES", "HEADERS", "build_document", "operations"]

# The meaning of each error status and the client's next step. The codes
# come from sendarix_http.errors and the handlers.
ERROR_STATUSES: dict[int, str] = {
    400: "`invalid_json`, `invalid_body`: the body is not JSON, or not an "
    "object; fix the payload",
    401: "`invalid_api_key`: the key is missing, unknown, expired or revoked; "
    "check the key, do not retry",
    403: "`permission_denied`: the key lacks the scope named in `scope`; use "
    "another key",
    404: "`<resource>_not_found` or `message_not_cancellable`; do not retry",
    408: "`request_timeout`: the body paused for 30 s between two chunks; the "
    "connection is closed; send the body without pauses",
    409: "`idempotency_key_reused`: the idempotency key was used with another "
    "body; use a new key",
    413: "`payload_too_large`: the request is over 50 MiB (52,428,800 bytes); "
    "host large files and send links",
    415: "`unsupported_media_type`: send `application/json`",
    422: "`validation_failed`: `errors` lists every invalid field, request "
    "header fields (`http_headers`) and JSON nesting included; fix the request",
    429: "`rate_limited`: over the key's requests per minute; retry after "
    "`Retry-After` seconds",
    500: "`internal_error`: a server fault; retry with backoff",
    501: "`not_supported`: the storage backend lacks this feature; events, "
    "webhooks and analytics need the SQL backend",
    503: "`storage_unavailable`: the database failed; retry with backoff",
}

_COMMON_HEADERS = (
    "X-Request-Id",
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
)

HEADERS: dict[str, dict[str, Any]] = {
    "X-Request-Id": {
        "description": "the request's id; a caller's own X-Request-Id of at most "
        "128 printable characters is echoed",
        "required": True,
        "schema": {"type": "string"},
    },
    "X-RateLimit-Limit": {
        "description": "requests per minute the key may make",
        "required": True,
        "schema": {"type": "integer"},
    },
    "X-RateLimit-Remaining": {
        "description": "requests left in the current one-minute window",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    },
    "X-RateLimit-Reset": {
        "description": "Unix time, in seconds, when the window resets",
        "required": True,
        "schema": {"type": "integer"},
    },
    "Retry-After": {
        "description": "seconds until the window resets",
        "required": True,
        "schema": {"type": "integer", "minimum": 1},
    },
    "Idempotent-Replayed": {
        "description": "`true` when the response replays an earlier one",
        "schema": {"const": "true"},
    },
    "Warning": {
        "description": "set above 25 MiB, since many receiving servers refuse "
        "such messages",
        "schema": {"type": "string"},
    },
}

_DESCRIPTION = """\
JSON in and out. Authenticate with `Authorization: Bearer sk_live_…` or
`sk_test_…`; a test key runs the whole pipeline but delivers only to the
built-in sink. Every response carries `X-Request-Id` and the `X-RateLimit-*`
headers. Every error has the body
`{"error": {"code", "message", "errors"?, "scope"?}}`.
"""


def build_document(operations: Iterable[Operation]) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document describing ``operations``."""
    paths: dict[str, dict[str, Any]] = {}
    tags: list[str] = []
    error_statuses: set[int] = set()
    for declared in operations:
        item = paths.setdefault(declared.path, {})
        item[declared.method.lower()] = _describe_operation(declared)
        if declared.tag not in tags:
            tags.append(declared.tag)
        error_statuses.update(declared.error_statuses())

    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Sendarix HTTP API",
            "version": importlib.metadata.version("sendarix"),
            "description": _DESCRIPTION,
        },
        "tags": [{"name": tag} for tag in tags],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(SCHEMAS.items())),
            "headers": HEADERS,
            "responses": {
                str(status): _error_response(status)
                for status in sorted(error_statuses)
            },
            "securitySchemes": {
                "bearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "an API key: sk_live_… or sk_test_…",
                }
            },
        },
    }


def _describe_operation(declared: Operation) -> dict[str, Any]:
    description = declared.description
    if declared.scope is not None:
        needed = f"Needs the `{declared.scope}` scope (or `admin`)."
        description = f"{description}\n\n{needed}".strip()

    described: dict[str, Any] = {
        "operationId": declared.operation_id,
        "summary": declared.summary,
        "description": description,
        "tags": [declared.tag],
        "security": [{"bearer": []}] if declared.scope is not None else [],
        "parameters": [_describe_parameter(p) for p in _parameters(declared)],
        "responses": _responses(declared),
    }
    if declared.scope is not None:
        described["x-scope"] = str(declared.scope)
    if declared.request_schema is not None:
        content: dict[str, Any] = {"schema": declared.request_schema}
        if declared.request_example is not None:
            content["example"] = declared.request_example
        described["requestBody"] = {
            "required": declared.request_required,
            "content": {"application/json": content},
        }
    return described


def _parameters(declared: Operation) -> list[Parameter]:
    """Return the declared parameters, adding undeclared path parameters."""
    parameters = list(declared.parameters)
    named = {p.name for p in parameters if p.location == "path"}
    for name in re.findall(r"{(\w+)}", declared.path):
        if name not in named:
            parameters.append(
                Parameter(name=name, location="path", description="", required=True)
            )
    return parameters


def _describe_parameter(parameter: Parameter) -> dict[str, Any]:
    return {
        "name": parameter.name,
        "in": parameter.location,
        "description": parameter.description,
        "required": parameter.required or parameter.location == "path",
        "schema": dict(parameter.schema),
    }


def _responses(declared: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {
        str(reply.status): _success_response(reply) for reply in declared.replies
    }
    for status in declared.error_statuses():
        responses[str(status)] = {"$ref": f"#/components/responses/{status}"}
    return responses


def _success_response(reply: Reply) -> dict[str, Any]:
    response: dict[str, Any] = {
        "description": reply.description,
        "headers": _header_refs((*_COMMON_HEADERS, *reply.headers)),
    }
    if reply.schema is not None:
        content: dict[str, Any] = {"schema": reply.schema}
        if reply.example is not None:
            content["example"] = reply.example
        response["content"] = {"application/json": content}
    return response


def _error_response(status: int) -> dict[str, Any]:
    names: tuple[str, ...] = _COMMON_HEADERS
    if status == 429:
        names = (*names, "Retry-After")
    return {
        "description": ERROR_STATUSES.get(status, "see the error's `code`"),
        "headers": _header_refs(names),
        "content": {"application/json": {"schema": ref("Error")}},
    }


def _header_refs(names: Sequence[str]) -> dict[str, Any]:
    return {name: {"$ref": f"#/components/headers/{name}"} for name in names}


async def serve_document(request: Request) -> Response:
    operations_: Sequence[Operation] = request.app.state.operations
    return JsonResponse(build_document(operations_))


operations = [
    operation(
        "GET",
        "/v1/openapi.json",
        serve_document,
        operation_id="get_openapi_document",
        summary="This API's OpenAPI 3.1 document",
        tag="meta",
        scope=None,
        replies=Reply(
            status=200,
            description="the document",
            schema={"type": "object", "required": ["openapi", "paths"]},
        ),
    )
]
