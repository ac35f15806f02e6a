"""The relay's replies to each SMTP command, as an aiosmtpd handler.

aiosmtpd checks the command syntax, SIZE, the line length and the AUTH
requirement before these hooks run; the hooks check addresses, the API
key's sender domains and rate limit, and store the message on DATA. The
``250`` after DATA is sent only once the messages are committed.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from sendarix_backends.engine import Engine, SendResult
from sendarix_backends.settings import Settings
from sendarix_core.addresses import AddressError, parse_address
from sendarix_core.errors import (
    AuthenticationError,
    IdempotencyConflictError,
    PermissionDeniedError,
    StorageError,
    ValidationError,
)
from sendarix_core.keys import ApiKey, Scope, require_scope
from sendarix_http.relay.auth import RelayAuthenticator, RelayCredential, client_address

__all__ = ["RelayHandler"]

logger = logging.getLogger("sendarix.relay")

# RFC 5321 section 4.5.3.1.5 limits a reply line to 512 octets with its CRLF.
_MAX_REPLY_TEXT = 480

# Field error codes of senders that the key or sender verification forbid.
_SENDER_POLICY_ERRORS = frozenset({"sender_domain_not_allowed", "sender_not_verified"})


class RelayHandler:
    def __init__(
        self, engine: Engine, settings: Settings, authenticator: RelayAuthenticator
    ) -> None:
        self._engine = engine
        self._max_recipients = settings.relay_max_recipients
        self._authenticator = authenticator

    async def handle_EHLO(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        hostname: str,
        responses: list[str],
    ) -> list[str]:
        # With this hook, aiosmtpd leaves recording the client's name to it.
        session.host_name = hostname
        return [*responses[:-1], "250-PIPELINING", responses[-1]]

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._authenticator.plain(server, args)

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._authenticator.login(server, args)

    async def handle_MAIL(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        try:
            sender = parse_address(address)
        except AddressError as error:
            return f"553 5.1.7 invalid sender address: {error}"
        if _needs_smtputf8(address, envelope):
            return "553 5.6.7 a non-ASCII address needs MAIL FROM with SMTPUTF8"

        # The key is looked up again, so one revoked, expired or narrowed
        # since AUTH applies now; the lookup also counts the rate limit.
        credential = _credential(session)
        try:
            key, decision = await self._engine.authenticate_and_count(credential.secret)
            require_scope(key, Scope.MESSAGES_SEND)
        except (AuthenticationError, PermissionDeniedError) as error:
            logger.info(
                "relay key no longer valid",
                extra={
                    "action": "relay_key_rejected",
                    "api_key_id": credential.key_id,
                    "client": client_address(server),
                },
            )
            return _key_rejected_reply(error)
        except StorageError:
            logger.exception(
                "relay key lookup failed on storage",
                extra={
                    "action": "relay_key_lookup_failed",
                    "api_key_id": credential.key_id,
                    "client": client_address(server),
                },
            )
            return "451 4.3.0 the API key could not be checked; try again later"
        credential.api_key = key
        if key.sender_domains and sender.domain not in key.sender_domains:
            allowed = ", ".join(key.sender_domains)
            return (
                f"550 5.7.1 the API key may send only from {allowed}, "
                f"not from {sender.domain}"
            )
        if not decision.allowed:
            return (
                f"451 4.7.1 the API key's rate limit of {decision.limit} messages "
                "per minute is exceeded; try again in the next minute"
            )
        envelope.mail_from = sender.email
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= self._max_recipients:
            return (
                f"452 4.5.3 too many recipients; the maximum is "
                f"{self._max_recipients}, send the others in another transaction"
            )
        try:
            recipient = parse_address(address)
        except AddressError as error:
            return f"553 5.1.3 invalid recipient address: {error}"
        if _needs_smtputf8(address, envelope):
            return "553 5.6.7 a non-ASCII address needs MAIL FROM with SMTPUTF8"

        # A repeated recipient gets one message.
        if recipient.email not in envelope.rcpt_tos:
            envelope.rcpt_tos.append(recipient.email)
            envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 OK"

    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        key = _api_key(session)
        client = client_address(server)
        try:
            results = await self._engine.send_raw(
                envelope.original_content or b"",
                mail_from=envelope.mail_from or "",
                recipients=envelope.rcpt_tos,
                api_key=key,
            )
        except ValidationError as error:
            return _validation_reply(error)
        except IdempotencyConflictError as error:
            # The error's message names a request body, which fits HTTP only.
            text = (
                f"idempotency key {error.key!r} was already used with other "
                "recipients or another message; use a new key for a new message"
            )
            return _reply("550", "5.7.0", [text])
        except StorageError:
            logger.exception(
                "relay message could not be stored",
                extra={"action": "relay_store_failed", "client": client},
            )
            return "451 4.3.0 the message could not be stored; try again later"

        logger.info(
            "relay message accepted",
            extra={
                "action": "relay_message_accepted",
                "message_ids": ",".join(result.message_id for result in results),
                "replayed": any(result.replayed for result in results),
                "api_key_id": key.id,
                "client": client,
            },
        )
        return _accepted_reply(envelope.rcpt_tos, results)

    async def handle_exception(self, error: Exception) -> str:
        logger.error(
            "relay session failed",
            exc_info=error,
            extra={"action": "relay_session_error"},
        )
        return "451 4.3.0 internal error; try again later"


def _api_key(session: Session) -> ApiKey:
    return _credential(session).api_key


def _credential(session: Session) -> RelayCredential:
    # aiosmtpd runs MAIL, RCPT and DATA only after a successful AUTH, whose
    # result RelayAuthenticator stores here.
    credential = session.auth_data
    if not isinstance(credential, RelayCredential):
        raise TypeError(f"the session has no relay credential: {credential!r}")
    return credential


def _key_rejected_reply(error: Exception) -> str:
    # The error's own advice ("create a new key") is written for HTTP
    # clients. An SMTP client also needs a new session.
    reason = str(error).split(";", 1)[0]
    return (
        f"550 5.7.8 {reason[:1].upper()}{reason[1:]}. Connect again and "
        "authenticate with a valid API key that has the messages:send scope."
    )


def _needs_smtputf8(path: str, envelope: Envelope) -> bool:
    # parse_address turns a non-ASCII domain into its A-label, so this checks
    # the path as sent. RFC 6531 needs SMTPUTF8 for a non-ASCII domain too.
    return not path.isascii() and not envelope.smtp_utf8


def ascii_text(text: str) -> str:
    """Return ``text`` with "…" as "..." and other non-ASCII characters as
    Python escapes (``\\xe9``, ``\\u2028``).

    RFC 5321 section 4.2 allows only ASCII in reply text, and the values
    quoted in error messages may contain any character.
    """
    if text.isascii():
        return text
    shortened = text.replace("\u2026", "...")
    return shortened.encode("ascii", "backslashreplace").decode("ascii")


def _reply(code: str, enhanced_code: str, lines: Sequence[str]) -> str:
    """Format a reply of one or more ASCII lines, each within the length limit."""
    formatted = []
    for index, text in enumerate(lines):
        separator = " " if index == len(lines) - 1 else "-"
        shown = ascii_text(text)[:_MAX_REPLY_TEXT]
        formatted.append(f"{code}{separator}{enhanced_code} {shown}")
    return "\r\n".join(formatted)


def _accepted_reply(recipients: Sequence[str], results: Sequence[SendResult]) -> str:
    lines = [
        f"Ok: queued as {result.message_id} for <{recipient}>"
        for recipient, result in zip(recipients, results, strict=True)
    ]
    return _reply("250", "2.0.0", lines)


def _validation_reply(error: ValidationError) -> str:
    lines = [f"{item.field}: {item.message}" for item in error.errors]
    if any(item.code in _SENDER_POLICY_ERRORS for item in error.errors):
        return _reply("550", "5.7.1", lines)
    return _reply("550", "5.6.0", lines)
