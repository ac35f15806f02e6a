"""Delivery of all mail through one relay host (a smarthost)."""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

from sendarix_backends.smtp.connection import DEFAULT_DATA_TIMEOUT, ConnectionSettings
from sendarix_backends.smtp.delivery import PooledSender, default_helo_name
from sendarix_backends.smtp.pool import ConnectGate, PoolSettings
from sendarix_backends.smtp.replies import HostFailure
from sendarix_backends.smtp.tls import TlsMode, verifying_context
from sendarix_core.errors import ConfigurationError, TemporaryDeliveryError
from sendarix_core.model import SmtpReply
from sendarix_core.ports import Envelope
from sendarix_core.retry import parse_enhanced_code

__all__ = ["SmarthostTransport"]

# Mail submission (RFC 6409) and submission over implicit TLS (RFC 8314).
_DEFAULT_PORTS = {"smtp": 587, "smtps": 465}


class SmarthostTransport:
    """Hands every message to one relay, authenticating when credentials
    are given.

    STARTTLS is used when offered (``tls`` decides whether it is required)
    and ``implicit_tls`` starts TLS before the greeting. Certificates are
    verified against the system's CAs unless another ``tls_context`` is given.
    Credentials are sent only over TLS, or in clear text to a loopback
    address.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        username: str | None = None,
        password: str | None = None,
        implicit_tls: bool = False,
        helo_name: str | None = None,
        timeout: float = 30.0,
        data_timeout: float = DEFAULT_DATA_TIMEOUT,
        tls: TlsMode | str = TlsMode.OPPORTUNISTIC,
        tls_context: ssl.SSLContext | None = None,
        pool: PoolSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        source_address: str | None = None,
        connect_gate: ConnectGate | None = None,
    ) -> None:
        settings = ConnectionSettings(
            helo_name=default_helo_name(helo_name),
            timeout=timeout,
            data_timeout=data_timeout,
            tls=TlsMode(tls),
            tls_context=tls_context or verifying_context(),
            implicit_tls=implicit_tls,
            username=username,
            password=password,
            source_address=source_address,
        )
        self._host = host
        self._username = username
        self._implicit_tls = implicit_tls
        self._sender = PooledSender(
            settings, port=port, pool=pool, clock=clock, connect_gate=connect_gate
        )
        self._description = _describe(host, port, username, implicit_tls)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> SmarthostTransport:
        """Build a transport from ``smtp://user:pass@host:port`` or ``smtps://…``.

        The port defaults to 587 for ``smtp`` and 465 for ``smtps``; user
        and password are percent-decoded. ``options`` go to the constructor.
        """
        parts = urlsplit(url)
        host, port = _host_and_port(parts)
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        return cls(
            host,
            port,
            username=username,
            password=password,
            implicit_tls=parts.scheme == "smtps",
            **options,
        )

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int:
        return self._sender.port

    @property
    def username(self) -> str | None:
        return self._username

    @property
    def implicit_tls(self) -> bool:
        return self._implicit_tls

    def __repr__(self) -> str:
        return f"SmarthostTransport({self._description})"

    async def deliver(self, envelope: Envelope) -> SmtpReply:
        try:
            return await self._sender.send(self._host, (self._host,), envelope)
        except HostFailure as failure:
            code = failure.reply_code
            raise TemporaryDeliveryError(
                f"the smarthost {self._description} did not take the message: "
                f"{failure}",
                reply_code=code,
                enhanced_code=parse_enhanced_code(failure.reply_text or "") or "4.4.1",
                mx_host=self._host,
                recipient=envelope.rcpt_to,
                details={"stage": failure.stage},
            ) from failure

    async def close_idle_beyond(self, keep: int) -> int:
        """Close idle sessions until at most ``keep`` are open; return how many."""
        return await self._sender.close_idle_beyond(keep)

    async def aclose(self) -> None:
        await self._sender.aclose()


def _host_and_port(parts: SplitResult) -> tuple[str, int]:
    redacted_url = _redacted(parts)
    if parts.scheme not in _DEFAULT_PORTS:
        raise ConfigurationError(
            f"smarthost URL {redacted_url!r} must start with smtp:// (STARTTLS) or "
            "smtps:// (implicit TLS)"
        )
    if not parts.hostname:
        raise ConfigurationError(
            f"smarthost URL {redacted_url!r} has no host; use smtp://user:pass@host:port"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigurationError(
            f"smarthost URL {redacted_url!r} has a path, query or fragment; use "
            "smtp://user:pass@host:port"
        )
    try:
        port = parts.port
    except ValueError as exc:
        raise ConfigurationError(
            f"smarthost URL {redacted_url!r} has an invalid port; use a number "
            "from 1 to 65535"
        ) from exc
    return parts.hostname, port or _DEFAULT_PORTS[parts.scheme]


def _redacted(parts: SplitResult) -> str:
    """Return the URL with the password replaced, for messages."""
    if parts.password is None:
        return parts.geturl()
    netloc = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{parts.username}:***@{netloc}"


def _describe(host: str, port: int, username: str | None, implicit_tls: bool) -> str:
    scheme = "smtps" if implicit_tls else "smtp"
    user = f"{username}@" if username else ""
    return f"{scheme}://{user}{host}:{port}"
