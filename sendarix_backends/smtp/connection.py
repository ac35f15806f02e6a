"""One SMTP client session: connect, EHLO, STARTTLS, AUTH, and later RSET,
NOOP and QUIT.

A connection that fails to open raises ``HostFailure``; every aiosmtplib,
``ssl`` and ``OSError`` exception is translated here.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import ssl
from collections.abc import Callable

import aiosmtplib
import attrs

from sendarix_backends.smtp.replies import HostFailure
from sendarix_backends.smtp.tls import TlsMode

__all__ = ["ConnectionSettings", "SmtpConnection", "open_connection"]

logger = logging.getLogger("sendarix.smtp")

_QUIT_TIMEOUT = 5.0
# A server that replies 421 closes the session.
_SERVICE_NOT_AVAILABLE = 421
# Seconds to wait for the reply to the message content: RFC 5321 section
# 4.5.3.2.6 recommends at least 10 minutes, because the server may process
# the message first, and giving up early sends it again at the retry.
DEFAULT_DATA_TIMEOUT = 600.0


@attrs.frozen(kw_only=True)
class ConnectionSettings:
    """How to open a session.

    ``timeout`` (seconds) applies to connecting and to each reply but the
    one to the message content, which gets ``data_timeout``.
    ``implicit_tls`` wraps the socket in TLS before the greeting (port 465),
    in which case ``tls`` is not consulted.
    """

    helo_name: str
    timeout: float
    tls: TlsMode
    tls_context: ssl.SSLContext
    implicit_tls: bool = False
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    source_address: str | None = None
    """Local IP address outgoing connections bind; the system picks one
    when ``None``."""
    data_timeout: float = DEFAULT_DATA_TIMEOUT


@attrs.define(eq=False)
class SmtpConnection:
    """An open session and what the pool needs to know about it.

    ``host`` is the name the session belongs to (the MX host or smarthost),
    ``address`` what was dialled. ``clean`` is false while a transaction is
    in progress or after one ended in an unknown state. The pool closes such
    a connection instead of reusing it.
    """

    client: aiosmtplib.SMTP
    host: str
    address: str
    port: int
    encrypted: bool
    last_used: float
    transactions: int = 0
    uses: int = 0
    clean: bool = True
    data_timeout: float = DEFAULT_DATA_TIMEOUT

    @property
    def is_open(self) -> bool:
        return self.client.is_connected

    def supports(self, extension: str) -> bool:
        return self.client.supports_extension(extension)

    def extension_parameter(self, extension: str) -> str:
        return self.client.esmtp_extensions.get(extension.lower(), "")

    async def reset(self) -> bool:
        """Send RSET; return whether the session is still usable."""
        if not self.is_open:
            return False
        try:
            await self.client.rset()
        except (aiosmtplib.SMTPException, OSError) as exc:
            logger.debug("%s RSET failed: %s", self.host, exc)
            self.close()
            return False
        return True

    async def probe(self) -> bool:
        """Send NOOP; return whether the server still replies."""
        if not self.is_open:
            return False
        try:
            await self.client.noop()
        except (aiosmtplib.SMTPException, OSError) as exc:
            logger.debug("%s NOOP failed: %s", self.host, exc)
            self.close()
            return False
        return True

    async def quit(self) -> None:
        """End the session politely, or just close the socket when that fails."""
        if self.is_open and self.clean:
            try:
                await self.client.quit(
                    timeout=min(_QUIT_TIMEOUT, self.client.timeout or _QUIT_TIMEOUT)
                )
            except (aiosmtplib.SMTPException, OSError) as exc:
                logger.debug("%s QUIT failed: %s", self.host, exc)
        self.close()

    def close(self) -> None:
        self.client.close()


async def open_connection(
    host: str,
    address: str,
    port: int,
    settings: ConnectionSettings,
    clock: Callable[[], float],
) -> SmtpConnection:
    """Open a session to ``address`` on behalf of ``host`` and negotiate it.

    Raises ``HostFailure`` when the host can't be reached, rejects the
    session, fails the TLS handshake, or rejects the credentials.
    """
    client = aiosmtplib.SMTP(
        hostname=address,
        port=port,
        local_hostname=settings.helo_name,
        timeout=settings.timeout,
        use_tls=settings.implicit_tls,
        start_tls=False,
        tls_context=settings.tls_context if settings.implicit_tls else None,
        source_address=(
            (settings.source_address, 0) if settings.source_address else None
        ),
    )
    try:
        greeting = await client.connect()
        logger.debug("%s [%s]:%d greeting: %s", host, address, port, greeting.message)
        await _greet(client, host)
        encrypted = settings.implicit_tls or await _start_tls(client, host, settings)
        if settings.username is not None:
            await _authenticate(
                client, host, encrypted, settings.username, settings.password or ""
            )
    except aiosmtplib.SMTPAuthenticationError as exc:
        client.close()
        raise _rejected_credentials(host, address, port, settings, exc) from exc
    except aiosmtplib.SMTPResponseException as exc:
        client.close()
        raise HostFailure(
            f"[{address}]:{port} replied {exc.code} {exc.message}",
            reply_code=exc.code,
            reply_text=exc.message,
        ) from exc
    except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
        client.close()
        raise HostFailure(f"[{address}]:{port} {_describe(exc)}") from exc

    return SmtpConnection(
        client=client,
        host=host,
        address=address,
        port=port,
        encrypted=encrypted,
        last_used=clock(),
        data_timeout=settings.data_timeout,
    )


async def _start_tls(
    client: aiosmtplib.SMTP, host: str, settings: ConnectionSettings
) -> bool:
    """Upgrade to TLS as ``settings.tls`` requires; return whether it did."""
    if settings.tls is TlsMode.NONE:
        return False
    if not client.supports_extension("starttls"):
        if settings.tls is TlsMode.REQUIRED:
            raise aiosmtplib.SMTPException(
                "does not offer STARTTLS, which this transport requires "
                "(tls='required')"
            )
        return False

    try:
        await client.starttls(server_hostname=host, tls_context=settings.tls_context)
    except aiosmtplib.SMTPResponseException as exc:
        # RFC 3207 leaves it to the client to go on after a refusal such as
        # "454 TLS not available"; opportunistic TLS does so in clear text.
        if settings.tls is TlsMode.REQUIRED or not client.is_connected:
            raise
        if exc.code == _SERVICE_NOT_AVAILABLE:
            raise
        logger.info(
            "%s rejected STARTTLS: %d %s; delivering without TLS",
            host,
            exc.code,
            exc.message,
            extra={"action": "smtp_starttls_refused", "mx_host": host},
        )
        return False
    logger.debug("%s STARTTLS done", host)
    await _greet(client, host)
    return True


async def _greet(client: aiosmtplib.SMTP, host: str) -> None:
    """Send EHLO, falling back to HELO for servers without ESMTP."""
    try:
        response = await client.ehlo()
    except aiosmtplib.SMTPHeloError:
        if not client.is_connected:
            raise
        response = await client.helo()
    extensions = response.message.replace("\n", " ")
    logger.debug("%s EHLO: %d %s", host, response.code, extensions)


async def _authenticate(
    client: aiosmtplib.SMTP, host: str, encrypted: bool, username: str, password: str
) -> None:
    if not encrypted and not _is_loopback(client):
        # Credentials in clear text would cross the network.
        raise aiosmtplib.SMTPException(
            "did not encrypt the session (it offers no STARTTLS or refused "
            "it), so the credentials were not sent; enable STARTTLS on the "
            "server or use smtps://"
        )
    await client.login(username, password)
    logger.debug("%s AUTH succeeded for user %s", host, username)


def _rejected_credentials(
    host: str,
    address: str,
    port: int,
    settings: ConnectionSettings,
    exc: aiosmtplib.SMTPAuthenticationError,
) -> HostFailure:
    # Every delivery through this host fails until someone fixes the
    # credentials, so this is logged as an error, not only returned.
    logger.error(
        "authentication to %s as user %s failed: %d %s",
        host,
        settings.username,
        exc.code,
        exc.message,
        extra={"action": "smtp_auth_failed", "mx_host": host},
    )
    return HostFailure(
        f"[{address}]:{port} rejected the credentials of user "
        f"{settings.username}: {exc.code} {exc.message}",
        reply_code=exc.code,
        reply_text=exc.message,
    )


def _is_loopback(client: aiosmtplib.SMTP) -> bool:
    peer = client.get_transport_info("peername")
    try:
        return ipaddress.ip_address(peer[0]).is_loopback
    except (TypeError, ValueError, IndexError):
        return False


def _describe(exc: BaseException) -> str:
    cause = exc.__cause__
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc}"
    if isinstance(exc, TimeoutError):
        return f"timed out ({exc})"
    if isinstance(cause, OSError) and cause.errno is not None:
        return f"connection failed: {os.strerror(cause.errno)}"
    return str(exc) or type(exc).__name__
