"""The inbound SMTP listener for bounce and complaint reports.

It is the MX of the return-path domain: it accepts mail for addresses at
that domain and, where the caller allows it, at the ``bounces.`` subdomain
of a sending domain. Any other recipient gets ``550 5.7.1``, so it never
relays. It needs no authentication and hands every message to
``ReportIntake``. It runs aiosmtpd's protocol on the caller's event loop,
beside the HTTP API, instead of in aiosmtpd's threaded ``Controller``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Self

from aiosmtpd.smtp import SMTP, Envelope, Session

from sendarix_backends.inbound.intake import ReportIntake
from sendarix_backends.sockets import LISTEN_BACKLOG
from sendarix_core.errors import StorageError

__all__ = ["InboundServer"]

logger = logging.getLogger("sendarix.inbound")

# Reports quote the original message; larger ones are refused at DATA.
MAX_REPORT_BYTES = 10 * 1024 * 1024


DomainCheck = Callable[[str], Awaitable[bool]]


class _ReportHandler:
    def __init__(
        self, intake: ReportIntake, domain: str, accepts_domain: DomainCheck | None
    ) -> None:
        self._intake = intake
        self._domain = domain.lower()
        self._accepts_domain = accepts_domain

    async def _accepted(self, domain: str) -> bool:
        if domain == self._domain:
            return True
        return self._accepts_domain is not None and await self._accepts_domain(domain)

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        try:
            accepted = await self._accepted(address.rpartition("@")[2].lower())
        except StorageError:
            logger.exception(
                "recipient domain not checked", extra={"action": "report_failed"}
            )
            return "451 4.3.0 temporary storage failure; try again later"
        if not accepted:
            also = ""
            if self._accepts_domain is not None:
                also = " and at bounces.<sending domain>"
            return (
                f"550 5.7.1 relaying denied: only addresses at {self._domain}{also} "
                "accepted"
            )
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        content = envelope.original_content or envelope.content
        data = content if isinstance(content, bytes) else str(content).encode()
        try:
            await self._intake.receive(list(envelope.rcpt_tos), data)
        except StorageError:
            logger.exception("report not recorded", extra={"action": "report_failed"})
            return "451 4.3.0 temporary storage failure; try again later"
        return "250 2.0.0 OK"


class InboundServer:
    """An SMTP listener on ``host:port`` while the context is open.

    ``port`` 0 picks a free port, and ``port`` is the bound one after entry.
    Recipients at ``domain`` are accepted, and those at any other domain
    for which ``accepts_domain`` returns true.
    """

    def __init__(
        self,
        intake: ReportIntake,
        *,
        host: str,
        port: int,
        domain: str,
        hostname: str | None = None,
        accepts_domain: DomainCheck | None = None,
    ) -> None:
        self._handler = _ReportHandler(intake, domain, accepts_domain)
        self.host = host
        self.port = port
        self.domain = domain
        # The plain host name: getfqdn() would look the name up in DNS.
        self._hostname = hostname or socket.gethostname()
        self._server: asyncio.Server | None = None

    def _protocol(self) -> SMTP:
        return SMTP(
            self._handler,
            hostname=self._hostname,
            data_size_limit=MAX_REPORT_BYTES,
            enable_SMTPUTF8=True,
            decode_data=False,
            ident="Sendarix report intake",
        )

    async def __aenter__(self) -> Self:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._protocol, self.host, self.port, backlog=LISTEN_BACKLOG
        )
        sockets: Any = self._server.sockets
        self.port = int(sockets[0].getsockname()[1])
        logger.info(
            "inbound SMTP listening",
            extra={
                "action": "inbound_started",
                "address": f"{self.host}:{self.port}",
                "domain": self.domain,
            },
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
