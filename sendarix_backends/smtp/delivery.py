"""Delivery of one envelope to one host over a pooled session.

Both the MX and the smarthost transport send through ``PooledSender``. They
differ only in how they pick hosts and what they do when a host fails.
"""

from __future__ import annotations

import functools
import logging
import socket
import time
from collections.abc import Callable, Sequence

from sendarix_backends.smtp.connection import (
    ConnectionSettings,
    SmtpConnection,
    open_connection,
)
from sendarix_backends.smtp.pool import ConnectGate, ConnectionPool, PoolSettings
from sendarix_backends.smtp.replies import HostFailure
from sendarix_backends.smtp.transaction import send_envelope
from sendarix_core.errors import ConfigurationError, TemporaryDeliveryError
from sendarix_core.model import SmtpReply
from sendarix_core.ports import Envelope

__all__ = ["PooledSender", "default_helo_name"]

logger = logging.getLogger("sendarix.smtp")

# Hosts already warned about clear-text delivery; cleared when full, so a
# process that talks to very many hosts warns again rather than grows.
_MAX_WARNED_HOSTS = 1024


def default_helo_name(helo_name: str | None) -> str:
    """Return ``helo_name``, or this machine's host name when it is ``None``.

    The default avoids ``socket.getfqdn()``, which may block on a DNS query.
    """
    name = socket.gethostname() if helo_name is None else helo_name.strip()
    if not name or any(char.isspace() or not char.isprintable() for char in name):
        raise ConfigurationError(
            f"helo_name {helo_name!r} is not a valid EHLO name; pass this "
            "machine's fully qualified domain name, such as mail.example.com"
        )
    return name


class PooledSender:
    """Sends envelopes to hosts over sessions taken from a ``ConnectionPool``."""

    def __init__(
        self,
        settings: ConnectionSettings,
        *,
        port: int,
        pool: PoolSettings | None,
        clock: Callable[[], float] = time.monotonic,
        connect_gate: ConnectGate | None = None,
    ) -> None:
        self._settings = settings
        self._port = port
        self._clock = clock
        self._pool = ConnectionPool(pool, clock=clock, gate=connect_gate)
        self._warned_hosts: set[str] = set()
        self._closed = False

    @property
    def port(self) -> int:
        return self._port

    @property
    def pool(self) -> ConnectionPool:
        return self._pool

    async def send(
        self, host: str, addresses: Sequence[str], envelope: Envelope
    ) -> SmtpReply:
        """Deliver ``envelope`` to ``host``, dialling ``addresses`` in order.

        Raises ``HostFailure`` when no session could be opened or one was
        lost, and ``DeliveryError`` subclasses for negative replies.
        """
        if self._closed:
            raise TemporaryDeliveryError(
                "the SMTP transport is closed; the message was not sent",
                recipient=envelope.rcpt_to,
            )

        opener = functools.partial(self._open, host, tuple(addresses))
        # A pooled session may have been closed by the server while idle,
        # which shows at MAIL; each such session is dropped and the next one
        # (finally a fresh one) is tried.
        attempts = self._pool.settings.max_connections_per_host + 1
        for _ in range(attempts):
            async with self._pool.connection((host, self._port), opener) as session:
                self._warn_if_clear_text(session)
                try:
                    return await send_envelope(session, envelope)
                except HostFailure as failure:
                    if session.uses == 1 or failure.stage != "MAIL":
                        raise
                    logger.debug("%s reused session was closed: %s", host, failure)
        raise HostFailure(f"{host}: every pooled session was closed by the server")

    async def close_idle_beyond(self, keep: int) -> int:
        """Close idle sessions until at most ``keep`` are open; return how many."""
        return await self._pool.close_idle_beyond(keep)

    async def aclose(self) -> None:
        self._closed = True
        await self._pool.aclose()

    async def _open(self, host: str, addresses: tuple[str, ...]) -> SmtpConnection:
        failures: list[HostFailure] = []
        for address in addresses:
            try:
                return await open_connection(
                    host, address, self._port, self._settings, self._clock
                )
            except HostFailure as failure:
                logger.debug("%s connection failed: %s", host, failure)
                failures.append(failure)

        if not failures:
            raise HostFailure(f"{host} has no address to connect to")
        last = failures[-1]
        raise HostFailure(
            "; ".join(str(failure) for failure in failures),
            reply_code=last.reply_code,
            reply_text=last.reply_text,
        ) from last

    def _warn_if_clear_text(self, session: SmtpConnection) -> None:
        if session.encrypted or session.host in self._warned_hosts:
            return
        if len(self._warned_hosts) >= _MAX_WARNED_HOSTS:
            self._warned_hosts.clear()
        self._warned_hosts.add(session.host)
        logger.warning(
            "delivering to %s without TLS: it did not offer STARTTLS, refused "
            "it, or TLS is turned off, so messages cross the network in clear "
            "text",
            session.host,
            extra={"action": "smtp_clear_text", "mx_host": session.host},
        )
