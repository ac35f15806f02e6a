"""API keys, their scopes and how a presented key is checked.

A key is ``sk_live_`` or ``sk_test_`` followed by 32 random base62
characters (about 190 bits). Only its SHA-256 digest is stored: the key has
far more entropy than a password, so a slow hash would add cost and no
protection.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from datetime import datetime
from enum import StrEnum

import attrs

from sendarix_core.errors import AuthenticationError, PermissionDeniedError
from sendarix_core.ratelimit import DEFAULT_RATE_LIMIT

__all__ = [
    "ApiKey",
    "Environment",
    "Scope",
    "check_key",
    "format_key",
    "hash_key",
    "require_scope",
]

_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_SECRET_LENGTH = 32


class Scope(StrEnum):
    MESSAGES_SEND = "messages:send"
    MESSAGES_READ = "messages:read"
    SUPPRESSIONS_WRITE = "suppressions:write"
    TEMPLATES_WRITE = "templates:write"
    WEBHOOKS_WRITE = "webhooks:write"
    DOMAINS_WRITE = "domains:write"
    ROUTES_WRITE = "routes:write"
    ADMIN = "admin"


class Environment(StrEnum):
    LIVE = "live"
    TEST = "test"


@attrs.frozen(kw_only=True)
class ApiKey:
    """A stored API key: everything but the secret itself."""

    id: str
    name: str
    key_hash: str
    prefix: str
    """The first characters of the key, shown so a user can tell keys apart."""
    scopes: frozenset[Scope]
    environment: Environment
    created_at: datetime
    revoked_at: datetime | None = None
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    rate_limit: int = DEFAULT_RATE_LIMIT
    sender_domains: tuple[str, ...] = ()


def format_key(environment: Environment, random_bytes: bytes) -> str:
    """Return a new secret key built from ``random_bytes`` (at least 32)."""
    if len(random_bytes) < _SECRET_LENGTH:
        raise ValueError(f"format_key needs {_SECRET_LENGTH} random bytes")
    secret = "".join(
        _ALPHABET[byte % len(_ALPHABET)] for byte in random_bytes[:_SECRET_LENGTH]
    )
    return f"sk_{environment}_{secret}"


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def check_key(key: ApiKey | None, presented_hash: str, now: datetime) -> ApiKey:
    """Return ``key`` if it matches the presented hash and is usable now.

    Raises ``AuthenticationError`` for an unknown, revoked or expired key.
    """
    if key is None or not hmac.compare_digest(key.key_hash, presented_hash):
        raise AuthenticationError(
            "the API key is unknown; check the Authorization header"
        )
    if key.revoked_at is not None and key.revoked_at <= now:
        raise AuthenticationError("the API key was revoked; create a new key")
    if key.expires_at is not None and key.expires_at <= now:
        raise AuthenticationError("the API key expired; create a new key")
    return key


def require_scope(key: ApiKey, scope: Scope) -> None:
    """Raise ``PermissionDeniedError`` unless ``key`` has ``scope`` or admin."""
    if scope in key.scopes or Scope.ADMIN in key.scopes:
        return
    raise PermissionDeniedError(
        f"the API key {key.name!r} lacks the {scope!s} scope; use a key that has it",
        scope=str(scope),
    )


def parse_scopes(values: Iterable[str]) -> frozenset[Scope]:
    """Return the scopes named by ``values``; raise ValueError on an unknown one."""
    scopes = set()
    for value in values:
        try:
            scopes.add(Scope(value))
        except ValueError:
            known = ", ".join(scope.value for scope in Scope)
            raise ValueError(
                f"unknown scope {value!r}; expected one of {known}"
            ) from None
    return frozenset(scopes)
