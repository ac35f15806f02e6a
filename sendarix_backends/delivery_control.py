"""``DeliveryControl``: routing rules, destination pacing and queue control
together, as the engine, its workers and the HTTP API use them.

On the SQL store every part keeps its state in the database, so rules,
pauses and pacing limits hold across every process sharing it. With any
other store the rules live in memory and pacing and queue control are off
(see docs/limitations.md).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from sendarix_backends.pacing import Pacer, PacingStore, SiteState
from sendarix_backends.queue_control import QueueControl
from sendarix_backends.routing import (
    MemoryRouteStore,
    Router,
    Routes,
    RouteStore,
    RouteTransports,
)
from sendarix_backends.settings import DeliveryMode, Settings
from sendarix_backends.smtp import MxResolver
from sendarix_core.clock import Clock
from sendarix_core.errors import SendarixError
from sendarix_core.ports import MessageStore, Transport

__all__ = ["DeliveryControl", "QueueControlUnavailableError"]

logger = logging.getLogger("sendarix.routing")


class QueueControlUnavailableError(SendarixError):
    """Pacing and queue control need the SQL store."""


class DeliveryControl:
    def __init__(
        self,
        *,
        routes: Routes,
        router: Router,
        transports: RouteTransports,
        queue: QueueControl | None,
        pacing: PacingStore | None,
        clock: Clock,
    ) -> None:
        self.routes = routes
        self.router = router
        self.transports = transports
        self._queue = queue
        self._pacing = pacing
        self._clock = clock

    @classmethod
    def for_store(
        cls,
        store: MessageStore,
        *,
        settings: Settings,
        clock: Clock,
        new_id: Callable[[str], str],
        transport: Transport,
        sink: Transport,
    ) -> DeliveryControl:
        """Keep rules, pauses and pacing state in ``store``'s database.

        ``transport`` serves the default rule while it follows the settings.
        """
        from sendarix_backends.sql import SqlStore
        from sendarix_backends.sql.pacing import SqlPacingStore
        from sendarix_backends.sql.queue_admin import SqlQueueAdmin
        from sendarix_backends.sql.routes import SqlRouteStore

        route_store: RouteStore
        queue = None
        pacing: PacingStore | None = None
        if isinstance(store, SqlStore):
            route_store = SqlRouteStore(store)
            queue = QueueControl(
                SqlQueueAdmin(store), store, clock=clock, new_id=new_id
            )
            pacing = SqlPacingStore(store)
        else:
            route_store = MemoryRouteStore()

        resolver = MxResolver(settings.dns_nameservers or None)
        routes = Routes(route_store, settings=settings, clock=clock, new_id=new_id)
        return cls(
            routes=routes,
            router=Router(
                routes, resolver, resolve=settings.delivery_mode != DeliveryMode.SINK
            ),
            transports=RouteTransports(
                settings=settings,
                resolver=resolver,
                default_transport=transport,
                sink=sink,
            ),
            queue=queue,
            pacing=pacing,
            clock=clock,
        )

    @property
    def queue(self) -> QueueControl:
        """Queue control; raises ``QueueControlUnavailableError`` off SQL."""
        if self._queue is None:
            raise QueueControlUnavailableError(
                "queue control needs the SQL store; use a sqlite:/// or "
                "postgresql:// database URL"
            )
        return self._queue

    @property
    def has_queue_control(self) -> bool:
        return self._queue is not None

    def pacer(
        self, worker_id: str, lease: timedelta, *, max_waiting: int | None = None
    ) -> Pacer | None:
        """Return a pacer for one worker, or None when pacing is off.

        ``max_waiting`` caps the worker's deliveries that wait for a
        connection slot (see ``Pacer``).
        """
        if self._pacing is None:
            return None
        return Pacer(
            self._pacing,
            worker_id=worker_id,
            clock=self._clock,
            lease=lease,
            close_site=self.transports.close_site,
            trim_site=self.transports.trim_site,
            max_waiting=max_waiting,
        )

    async def sites(self, limit: int = 100) -> list[SiteState]:
        """Return the pacing state of the sites active most recently."""
        if self._pacing is None:
            raise QueueControlUnavailableError(
                "pacing needs the SQL store; use a sqlite:/// or postgresql:// "
                "database URL"
            )
        return await self._pacing.list_sites(self._clock.now(), limit)

    async def aclose(self) -> None:
        await self.transports.aclose()
