"""Checking the fields of a new API key, for the HTTP API and the library.

``validate_key_request`` takes the JSON body of ``POST /v1/api-keys``;
``Engine.create_api_key`` passes its arguments in the same form, so both
refuse the same values with the same errors.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import attrs

from sendarix_core.addresses import AddressError, parse_domain
from sendarix_core.checks import json_excerpt
from sendarix_core.errors import FieldError, ValidationError
from sendarix_core.keys import Environment, Scope
from sendarix_core.ratelimit import DEFAULT_RATE_LIMIT

__all__ = [
    "MAX_NAME_LENGTH",
    "MAX_RATE_LIMIT",
    "MAX_SENDER_DOMAINS",
    "KeyRequest",
    "validate_key_request",
]

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
    if len(value) > MAX_NAME_LENGTH:
        message = (
            f"the name is {len(value)} characters long; the maximum is "
            f"{MAX_NAME_LENGTH}"
        )
        errors.append(FieldError("name", "invalid_value", message))
        return None
    if not value.isprintable():
        character = next(c for c in value if not c.isprintable())
        kind = "control" if unicodedata.category(character) == "Cc" else "non-printable"
        message = (
            f"the name {json.dumps(value)} contains a {kind} character "
            f"(U+{ord(character):04X}); use letters, digits, spaces and punctuation"
        )
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
    message = f"expected 'live' or 'test', got {json_excerpt(value)}"
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
            message = (
                f"expected a domain name such as acme.example, got {json_excerpt(item)}"
            )
            errors.append(FieldError(field, "invalid_type", message))
            continue
        try:
            # Normalized as the domains of sender addresses are: lowercase,
            # IDNs as A-labels. A trailing dot is dropped, as POST /v1/domains
            # drops it.
            domain = parse_domain(item)
        except AddressError as error:
            errors.append(FieldError(field, "invalid_domain", str(error)))
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
    message = (
        f"expected requests per minute from 1 to {MAX_RATE_LIMIT}, got "
        f"{json_excerpt(value)}"
    )
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
