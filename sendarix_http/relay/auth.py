"""AUTH PLAIN and LOGIN with an API key as the password.

Any username is accepted, because the key alone identifies the client. The
key needs the ``messages:send`` scope. Failed attempts are counted per
client address, and a client over the limit is disconnected with ``421``
until the window ends. Neither the key nor the username is ever logged.
"""

from __future__ import annotations

import binascii
import logging
from base64 import b64decode

import attrs
from aiosmtpd.smtp import SMTP, AuthResult

from sendarix_backends.engine import Engine
from sendarix_core.errors import (
    AuthenticationError,
    PermissionDeniedError,
    StorageError,
)
from sendarix_core.keys import ApiKey, Scope, require_scope
from sendarix_http.relay.auth_limit import AuthAttempt, AuthFailureLimiter

__all__ = ["RelayAuthenticator", "RelayCredential", "client_address"]

logger = logging.getLogger("sendarix.relay")

_INVALID = (
    "535 5.7.8 authentication credentials invalid; the password must be an "
    "active API key with the messages:send scope"
)
_TEMPORARY_FAILURE = "454 4.7.0 temporary authentication failure; try again later"


@attrs.define
class RelayCredential:
    """The API key a session authenticated with, shown in logs by id only.

    ``secret`` is kept so that every transaction looks the key up again,
    as every HTTP request does. A key revoked or expired during a session
    stops working at the session's next ``MAIL``. Otherwise ``api_key`` is
    replaced there by the key as stored.
    """

    api_key: ApiKey = attrs.field(repr=False)
    secret: str = attrs.field(repr=False)

    @property
    def key_id(self) -> str:
        return self.api_key.id


def client_address(server: SMTP) -> str:
    """Return the IP address of the session's client."""
    peer = server.session.peer if server.session is not None else None
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return str(peer)


class RelayAuthenticator:
    def __init__(self, engine: Engine, limiter: AuthFailureLimiter) -> None:
        self._engine = engine
        self._limiter = limiter

    async def plain(self, server: SMTP, args: list[str]) -> AuthResult:
        """Run ``AUTH PLAIN`` (RFC 4616), with or without an initial response."""
        if await self._reject_blocked_client(server):
            return AuthResult(success=False, handled=True)
        response = await _initial_response(server, args, challenge="")
        if response is None:
            return AuthResult(success=False, handled=True)

        parts = response.split(b"\x00")
        if len(parts) != 3:
            await server.push(
                "501 5.5.2 expected authorization identity, username and "
                "password separated by NUL"
            )
            return AuthResult(success=False, handled=True)
        authorization_id, username, password = parts
        if authorization_id and authorization_id != username:
            # RFC 4616, section 2: the server must refuse an identity it
            # does not let the username act as, and the relay has no proxies.
            await server.push(
                "535 5.7.8 acting as another identity is not supported; "
                "leave the authorization identity empty"
            )
            return AuthResult(success=False, handled=True)
        return await self._check_password(server, password)

    async def login(self, server: SMTP, args: list[str]) -> AuthResult:
        """Run ``AUTH LOGIN``: the username and the password, each in base64."""
        if await self._reject_blocked_client(server):
            return AuthResult(success=False, handled=True)
        username = await _initial_response(server, args, challenge="Username:")
        if username is None:
            return AuthResult(success=False, handled=True)

        password = await server.challenge_auth("Password:")
        if not isinstance(password, bytes):
            return AuthResult(success=False, handled=True)
        return await self._check_password(server, password)

    async def _reject_blocked_client(self, server: SMTP) -> bool:
        retry_after = self._limiter.retry_after(client_address(server))
        if retry_after is None:
            return False
        await _disconnect_blocked(server, retry_after)
        return True

    async def _check_password(self, server: SMTP, password: bytes) -> AuthResult:
        client = client_address(server)
        attempt = await self._limiter.acquire(client)
        if attempt is None:
            # Other sessions of this client failed while this one waited.
            await _disconnect_blocked(server, self._limiter.retry_after(client) or 1)
            return AuthResult(success=False, handled=True)
        try:
            secret = password.decode("ascii")
            key = await self._engine.authenticate(secret)
        except (UnicodeDecodeError, AuthenticationError):
            return self._record_failure(client, attempt)
        except StorageError:
            self._limiter.release(attempt)
            logger.exception(
                "relay authentication failed on storage",
                extra={"action": "relay_auth_error", "client": client},
            )
            return AuthResult(success=False, handled=False, message=_TEMPORARY_FAILURE)
        except BaseException:
            self._limiter.release(attempt)
            raise
        self._limiter.release(attempt)

        try:
            require_scope(key, Scope.MESSAGES_SEND)
        except PermissionDeniedError as error:
            logger.info(
                "relay key lacks the send scope",
                extra={
                    "action": "relay_auth_denied",
                    "client": client,
                    "api_key_id": key.id,
                },
            )
            return AuthResult(
                success=False, handled=False, message=f"535 5.7.8 {error}"
            )

        logger.info(
            "relay client authenticated",
            extra={
                "action": "relay_authenticated",
                "client": client,
                "api_key_id": key.id,
            },
        )
        return AuthResult(success=True, auth_data=RelayCredential(key, secret))

    def _record_failure(self, client: str, attempt: AuthAttempt) -> AuthResult:
        reached_limit = self._limiter.fail(attempt)
        logger.info(
            "relay authentication failed",
            extra={"action": "relay_auth_failed", "client": client},
        )
        if reached_limit:
            logger.warning(
                "relay client blocked after failed authentication attempts",
                extra={
                    "action": "relay_auth_blocked",
                    "client": client,
                    "limit": self._limiter.limit,
                },
            )
        return AuthResult(success=False, handled=False, message=_INVALID)


async def _disconnect_blocked(server: SMTP, retry_after: int) -> None:
    await server.push(
        "421 4.7.0 too many failed authentication attempts; try again in "
        f"{retry_after} second{'' if retry_after == 1 else 's'}"
    )
    if server.transport is not None:
        server.transport.close()


async def _initial_response(
    server: SMTP, args: list[str], *, challenge: str
) -> bytes | None:
    """Return the client's first response, sent with AUTH or after ``challenge``.

    Returns None once a reply has been sent: the client cancelled with
    ``*`` or sent invalid base64. A lone ``=`` is an empty response
    (RFC 4954 section 4).
    """
    if len(args) == 1:
        response = await server.challenge_auth(challenge)
        return response if isinstance(response, bytes) else None
    if args[1] == "=":
        return b""
    try:
        return b64decode(args[1], validate=True)
    except binascii.Error:
        await server.push("501 5.5.2 the initial response is not valid base64")
        return None
