"""Running the bounce and complaint listener inside ``sendarix serve``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette

from sendarix_backends.engine import Engine
from sendarix_backends.inbound.server import InboundServer
from sendarix_core.errors import ConfigurationError

__all__ = ["attach_inbound"]

logger = logging.getLogger("sendarix.inbound")


def attach_inbound(app: Starlette, engine: Engine) -> None:
    """Run the inbound SMTP listener within ``app``'s lifespan, if configured.

    It starts after the app's own lifespan has opened the engine and stops
    before the engine closes. Nothing happens when ``inbound_port`` is 0.
    """
    settings = engine.settings
    if settings.inbound_port == 0:
        return
    if settings.return_path_domain is None:
        raise ConfigurationError(
            "SENDARIX_INBOUND_PORT is set but SENDARIX_RETURN_PATH_DOMAIN is not; "
            "set the domain whose MX this listener is, or set the port to 0"
        )
    if engine.events is None:
        raise ConfigurationError(
            "the inbound listener records events and needs the SQL storage backend"
        )
    server = InboundServer(
        engine.events.reports,
        host=settings.inbound_host,
        port=settings.inbound_port,
        domain=settings.return_path_domain,
        hostname=settings.helo_name,
        accepts_domain=engine.content.domains.receives_reports_for,
    )
    app_lifespan = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with app_lifespan(app), server:
            yield

    app.router.lifespan_context = lifespan
