"""``/v1/api-keys``: create, list, read and revoke API keys (admin scope).

The routes built from ``operations`` check the admin scope before these
handlers run. The secret is in the ``201`` response of its creation and
nowhere else; the other responses show its first characters (``prefix``)
and never its hash. A test key may create and revoke only test keys, so it
can neither gain nor take away access to live mail.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sendarix_core.errors import NotFoundError
from sendarix_core.key_requests import (
    MAX_NAME_LENGTH,
    MAX_RATE_LIMIT,
    MAX_SENDER_DOMAINS,
    validate_key_request,
)
from sendarix_core.keys import ApiKey, Environment, Scope
from sendarix_core.representation import format_time
from sendarix_http.http_io import (
    JsonResponse,
    authorize,
    engine_of,
    read_json_object,
    require_live,
)
from sendarix_http.registry import Parameter, Reply, operation
from sendarix_http.schemas import define, list_of, nullable, time

__all__ = ["api_key_to_dict", "operations"]


def api_key_to_dict(key: ApiKey) -> dict[str, Any]:
    """Return the public form of a key: everything but its hash."""
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "scopes": sorted(str(scope) for scope in key.scopes),
        "environment": str(key.environment),
        "sender_domains": list(key.sender_domains),
        "rate_limit": key.rate_limit,
        "created_at": format_time(key.created_at),
        "expires_at": format_time(key.expires_at),
        "revoked_at": format_time(key.revoked_at),
        "last_used_at": format_time(key.last_used_at),
    }


async def create_api_key(request: Request) -> Response:
    engine = engine_of(request)
    body, _ = await read_json_object(request)
    checked = validate_key_request(body, engine.clock.now())
    if checked.environment == Environment.LIVE:
        require_live(await authorize(request, Scope.ADMIN), "create live keys")
    secret, key = await engine.create_api_key(
        checked.name,
        scopes=checked.scopes,
        environment=checked.environment,
        rate_limit=checked.rate_limit,
        sender_domains=checked.sender_domains,
        expires_at=checked.expires_at,
    )
    return JsonResponse({**api_key_to_dict(key), "key": secret}, status_code=201)


async def list_api_keys(request: Request) -> Response:
    caller = await authorize(request, Scope.ADMIN)
    keys = await engine_of(request).list_api_keys()
    if caller.environment == Environment.TEST:
        # A test key lists test keys only, as it lists test messages only.
        keys = [key for key in keys if key.environment == Environment.TEST]
    return JsonResponse({"data": [api_key_to_dict(key) for key in keys]})


async def get_api_key(request: Request) -> Response:
    caller = await authorize(request, Scope.ADMIN)
    key_id = request.path_params["key_id"]
    key = await engine_of(request).get_api_key(key_id)
    if caller.environment == Environment.TEST and key.environment != Environment.TEST:
        raise NotFoundError("api_key", key_id)
    return JsonResponse(api_key_to_dict(key))


async def revoke_api_key(request: Request) -> Response:
    engine = engine_of(request)
    key_id = request.path_params["key_id"]
    if (await engine.get_api_key(key_id)).environment == Environment.LIVE:
        require_live(await authorize(request, Scope.ADMIN), "revoke live keys")
    key = await engine.revoke_api_key(key_id)
    return JsonResponse(api_key_to_dict(key))


_SCOPES = {"enum": [str(scope) for scope in Scope]}

API_KEY = define(
    "ApiKey",
    {
        "type": "object",
        "properties": {
            "id": {"type": "string", "examples": ["key_01kpk2byj0f6exkfg4w47cc66n"]},
            "name": {"type": "string"},
            "prefix": {
                "type": "string",
                "description": "the first 12 characters of the key",
            },
            "scopes": {"type": "array", "items": _SCOPES},
            "environment": {"enum": [str(env) for env in Environment]},
            "sender_domains": {"type": "array", "items": {"type": "string"}},
            "rate_limit": {"type": "integer", "description": "requests per minute"},
            "created_at": time(),
            "expires_at": nullable(time()),
            "revoked_at": nullable(time()),
            "last_used_at": nullable(
                {**time(), "description": "updated at most once a minute"}
            ),
        },
        "required": [
            "id",
            "name",
            "prefix",
            "scopes",
            "environment",
            "sender_domains",
            "rate_limit",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
        ],
    },
)

CREATED_API_KEY = define(
    "CreatedApiKey",
    {
        "allOf": [API_KEY],
        "properties": {
            "key": {
                "type": "string",
                "description": "the secret; shown only in this response",
            }
        },
        "required": ["key"],
    },
)

API_KEY_REQUEST = define(
    "ApiKeyRequest",
    {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": MAX_NAME_LENGTH},
            "scopes": {"type": "array", "items": _SCOPES, "minItems": 1},
            "environment": {
                "enum": [*(str(env) for env in Environment), None],
                "description": "`test` keys deliver only to the built-in sink",
            },
            "sender_domains": nullable(
                {
                    "type": "array",
                    "items": {"type": "string"},
                    "maxItems": MAX_SENDER_DOMAINS,
                    "description": "domains `from` may use; empty or absent: any",
                }
            ),
            "rate_limit": nullable(
                {"type": "integer", "minimum": 1, "maximum": MAX_RATE_LIMIT}
            ),
            "expires_at": nullable({"type": "string", "format": "date-time"}),
        },
        "required": ["name", "scopes"],
        "additionalProperties": False,
    },
)

_KEY_ID = Parameter(
    name="key_id", location="path", description="the key's `id`", required=True
)

operations = [
    operation(
        "POST",
        "/v1/api-keys",
        create_api_key,
        summary="Create an API key",
        description="The response is the only place the secret `key` appears; "
        "only its SHA-256 digest is stored.",
        tag="api-keys",
        scope=Scope.ADMIN,
        request_schema=API_KEY_REQUEST,
        request_example={
            "name": "ci",
            "scopes": ["messages:send", "messages:read"],
            "environment": "test",
            "sender_domains": ["acme.example"],
            "rate_limit": 600,
        },
        replies=Reply(status=201, description="the new key", schema=CREATED_API_KEY),
    ),
    operation(
        "GET",
        "/v1/api-keys",
        list_api_keys,
        summary="List API keys, oldest first",
        tag="api-keys",
        scope=Scope.ADMIN,
        replies=Reply(
            status=200,
            description="every key, revoked ones included",
            schema=list_of("ApiKeyList", API_KEY, paged=False),
        ),
    ),
    operation(
        "GET",
        "/v1/api-keys/{key_id}",
        get_api_key,
        summary="Read an API key",
        tag="api-keys",
        scope=Scope.ADMIN,
        parameters=(_KEY_ID,),
        replies=Reply(status=200, description="the key", schema=API_KEY),
    ),
    operation(
        "DELETE",
        "/v1/api-keys/{key_id}",
        revoke_api_key,
        summary="Revoke an API key",
        description="Every node rejects the key from its next request on. "
        "Revoking a revoked key changes nothing.",
        tag="api-keys",
        scope=Scope.ADMIN,
        parameters=(_KEY_ID,),
        replies=Reply(status=200, description="the revoked key", schema=API_KEY),
    ),
]
