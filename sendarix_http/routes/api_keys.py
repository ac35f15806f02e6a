"""``/v1/api-keys``: create, list, read and revoke API keys (admin scope).

The routes built from ``operations`` check the admin scope before these
handlers run. The secret is in the ``201`` response of its creation and
nowhere else; the other responses show its first characters (``prefix``)
and never its hash. A test key may create and revoke only test keys, so it
can neither gain nor take away access to live mail.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import attrs
from starlette.requests import Request
from starlette.responses import Response

from sendarix_core.addresses import AddressError, parse_address
from sendarix_core.errors import FieldError, NotFoundError, ValidationError
from sendarix_core.keys import ApiKey, Environment, Scope
from sendarix_core.ratelimit import DEFAULT_RATE_LIMIT
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

__all__ = ["KeyRequest", "api_key_to_dict", "operations", "validate_key_request"]

MAX_NAME_LENGTH = 100
MAX_RATE_LIMIT = 1_000_000
MAX_SENDER_DOMAINS = 100

_FIELDS = (
    "name",
    "scopes",
    "environment",
    "sender_domains",
    "rate_limit",
    "expires_at",
)


@attrs.frozen(kw_only=True)
class KeyRequest:
    """A validated ``POST /v1/api-keys`` body."""

    name: str
    scopes: frozenset[Scope]
    environment: Environment
    sender_domains: tuple[str, ...]
    rate_limit: int
    expires_at: datetime | None


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


def validate_key_request(body: Mapping[str, Any], now: datetime) -> KeyRequest:
    """Check a creation body; raise ``ValidationError`` listing every bad field."""
    errors = [
        FieldError(str(name), "unknown_field", f"unknown field {str(name)!r}")
        for name in body
        if name not in _FIELDS
    ]
    name = _check_name(body.get("name"), errors)
    scopes = _check_scopes(body.get("scopes"), errors)
    environment = _check_environment(body.get("environment"), errors)
    domains = _check_domains(body.get("sender_domains"), errors)
    rate_limit = _check_rate_limit(body.get("rate_limit"), errors)
    expires_at = _check_expiry(body.get("expires_at"), now, errors)

    if errors or name is None or scopes is None or environment is None:
        raise ValidationError(errors)
    return KeyRequest(
        name=name,
        scopes=scopes,
        environment=environment,
        sender_domains=domains,
        rate_limit=rate_limit,
        expires_at=expires_at,
    )


def _check_name(value: object, errors: list[FieldError]) -> str | None:
    if not isinstance(value, str) or not value.strip():
        message = "a name such as 'production' or 'ci' is required"
        errors.append(FieldError("name", "missing_field", message))
        return None
    if len(value) > MAX_NAME_LENGTH or not value.isprintable():
        message = f"the name must be at most {MAX_NAME_LENGTH} printable characters"
        errors.append(FieldError("name", "invalid_value", message))
        return None
    return value.strip()


def _check_scopes(value: object, errors: list[FieldError]) -> frozenset[Scope] | None:
    known = ", ".join(str(scope) for scope in Scope)
    if not isinstance(value, list) or not value:
        message = f"a list of at least one scope is required: {known}"
        errors.append(FieldError("scopes", "missing_field", message))
        return None
    scopes = set()
    for index, item in enumerate(value):
        if isinstance(item, str) and item in Scope.__members__.values():
            scopes.add(Scope(item))
            continue
        message = f"{item!r} is not a scope; expected one of {known}"
        errors.append(FieldError(f"scopes.{index}", "invalid_value", message))
    return frozenset(scopes)


def _check_environment(value: object, errors: list[FieldError]) -> Environment | None:
    if value is None:
        return Environment.LIVE
    if isinstance(value, str) and value in Environment.__members__.values():
        return Environment(value)
    message = f"expected 'live' or 'test', got {value!r}"
    errors.append(FieldError("environment", "invalid_value", message))
    return None


def _check_domains(value: object, errors: list[FieldError]) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > MAX_SENDER_DOMAINS:
        message = f"expected a list of at most {MAX_SENDER_DOMAINS} domain names"
        errors.append(FieldError("sender_domains", "invalid_type", message))
        return ()
    domains: list[str] = []
    for index, item in enumerate(value):
        field = f"sender_domains.{index}"
        if not isinstance(item, str):
            message = f"expected a domain name such as acme.example, got {item!r}"
            errors.append(FieldError(field, "invalid_type", message))
            continue
        try:
            # Parsing a mailbox at the domain normalizes it the way sender
            # addresses are normalized: lowercase, IDNs as A-labels.
            domain = parse_address(f"postmaster@{item}").domain
        except AddressError as error:
            message = f"{item!r} is not a valid domain name: {error}"
            errors.append(FieldError(field, "invalid_domain", message))
            continue
        if domain not in domains:
            domains.append(domain)
    return tuple(domains)


def _check_rate_limit(value: object, errors: list[FieldError]) -> int:
    if value is None:
        return DEFAULT_RATE_LIMIT
    if isinstance(value, bool) or not isinstance(value, int):
        pass
    elif 1 <= value <= MAX_RATE_LIMIT:
        return value
    message = f"expected requests per minute from 1 to {MAX_RATE_LIMIT}, got {value!r}"
    errors.append(FieldError("rate_limit", "invalid_value", message))
    return DEFAULT_RATE_LIMIT


def _check_expiry(
    value: object, now: datetime, errors: list[FieldError]
) -> datetime | None:
    if value is None:
        return None
    expected = "expected an ISO 8601 time with a timezone, such as 2027-01-01T00:00:00Z"
    try:
        parsed = datetime.fromisoformat(str(value)) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        errors.append(FieldError("expires_at", "invalid_datetime", expected))
        return None
    if parsed <= now:
        message = f"{value!r} is not in the future; the key would never work"
        errors.append(FieldError("expires_at", "in_the_past", message))
        return None
    return parsed.astimezone(UTC)


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
