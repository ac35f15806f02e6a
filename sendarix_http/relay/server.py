"""The relay's listeners, served on the event loop of the HTTP API.

``sendarix serve`` starts the relay inside the app's lifespan, after the
engine has opened and before the HTTP port accepts requests, and stops it
before the engine closes.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
import time
import weakref
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, Self

from starlette.applications import Starlette

from sendarix_backends.engine import Engine
from sendarix_backends.settings import Settings
from sendarix_backends.sockets import LISTEN_BACKLOG
from sendarix_core.errors import ConfigurationError
from sendarix_http.relay.auth import RelayAuthenticator
from sendarix_http.relay.auth_limit import AuthFailureLimiter
from sendarix_http.relay.handler import RelayHandler
from sendarix_http.relay.protocol import RelaySMTP
from sendarix_http.relay.tls import relay_tls_context

__all__ = ["Relay", "run_in_lifespan"]

logger = logging.getLogger("sendarix.relay")

_GREETING = "ESMTP Sendarix"


class Relay:
    """The SMTP submission server: STARTTLS on ``relay_port`` and, when
    set, implicit TLS on ``relay_implicit_tls_port``.

    ``tls_context`` replaces the context built from the settings.
    ``clock`` (monotonic seconds) times the AUTH failure windows.
    """

    def __init__(
        self,
        engine: Engine,
        settings: Settings,
        *,
        tls_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.hostname = settings.helo_name or socket.getfqdn()
        self._tls_context = tls_context
        limiter = AuthFailureLimiter(settings.relay_auth_failure_limit, clock=clock)
        self._handler = RelayHandler(
            engine, settings, RelayAuthenticator(engine, limiter)
        )
        self._servers: list[asyncio.Server] = []
        self._sessions: weakref.WeakSet[RelaySMTP] = weakref.WeakSet()

    async def start(self) -> None:
        """Listen on the relay ports; raise ``ConfigurationError`` if one is taken."""
        settings = self.settings
        context = self._tls_context or relay_tls_context(settings, self.hostname)
        if settings.relay_allow_plaintext_loopback:
            logger.warning(
                "the SMTP relay offers AUTH without TLS to loopback clients",
                extra={"action": "relay_plaintext_loopback"},
            )
        await self._listen(settings.relay_port, context, implicit_tls=False)
        if settings.relay_implicit_tls_port:
            await self._listen(
                settings.relay_implicit_tls_port, context, implicit_tls=True
            )

    async def aclose(self) -> None:
        """Stop listening and close every open session."""
        servers, self._servers = self._servers, []
        for server in servers:
            server.close()
        sessions = [
            session for session in self._sessions if session.transport is not None
        ]
        for session in sessions:
            session.close_with_reply(
                "421 4.3.2 the server is shutting down; try again later"
            )
        # A session storing a message closes after its reply, so the engine
        # must stay open until then.
        for session in sessions:
            await session.wait_reply_sent()
        for server in servers:
            await server.wait_closed()
        if servers:
            logger.info(
                "SMTP relay stopped",
                extra={"action": "relay_stopped", "sessions_closed": len(sessions)},
            )

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _listen(
        self, port: int, context: ssl.SSLContext, *, implicit_tls: bool
    ) -> None:
        loop = asyncio.get_running_loop()
        host = self.settings.relay_host
        try:
            server = await loop.create_server(
                lambda: self._new_session(loop, context, implicit_tls),
                host=host,
                port=port,
                ssl=context if implicit_tls else None,
                reuse_address=True,
                backlog=LISTEN_BACKLOG,
            )
        except OSError as exc:
            setting = (
                "SENDARIX_RELAY_IMPLICIT_TLS_PORT"
                if implicit_tls
                else "SENDARIX_RELAY_PORT"
            )
            raise ConfigurationError(
                f"the SMTP relay cannot listen on {host}:{port}: {exc}; set "
                f"{setting} to a free port, or 0 to turn it off"
            ) from exc
        self._servers.append(server)
        logger.info(
            "SMTP relay listening",
            extra={
                "action": "relay_started",
                "address": f"{host}:{port}",
                "tls": "implicit" if implicit_tls else "starttls",
            },
        )

    def _new_session(
        self,
        loop: asyncio.AbstractEventLoop,
        context: ssl.SSLContext,
        implicit_tls: bool,
    ) -> RelaySMTP:
        settings = self.settings
        session = RelaySMTP(
            self._handler,
            max_commands=settings.relay_max_commands,
            implicit_tls=implicit_tls,
            allow_plaintext_loopback=settings.relay_allow_plaintext_loopback,
            # The implicit TLS port offers no STARTTLS.
            tls_context=None if implicit_tls else context,
            data_size_limit=settings.relay_max_message_bytes,
            enable_SMTPUTF8=True,
            hostname=self.hostname,
            ident=_GREETING,
            timeout=settings.relay_idle_timeout,
            loop=loop,
        )
        self._sessions.add(session)
        return session


def run_in_lifespan(app: Starlette, service: AbstractAsyncContextManager[Any]) -> None:
    """Run ``service``, such as a ``Relay``, inside ``app``'s lifespan.

    The app's own lifespan opens the engine, so the service starts after it
    and stops before it closes.
    """
    app_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with app_lifespan(app), service:
            yield

    app.router.lifespan_context = lifespan
