"""The transports that routing rules choose, built on first use and reused.

A rule gets one transport, whose connection pool serves every site it
routes to. A site with a connection cap gets a transport of its own, so
that the pacer can close the site's idle sessions when it gives its
connection slots back. A transport whose rule changed is closed once no
delivery uses it any more.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime

import attrs

from sendarix_backends.settings import DeliveryMode, Settings
from sendarix_backends.smtp import (
    MxResolver,
    MxTransport,
    PoolSettings,
    SmarthostTransport,
    TlsMode,
)
from sendarix_backends.smtp.pool import ConnectGate
from sendarix_backends.smtp.tls import unverified_context, verifying_context
from sendarix_core.ports import Transport
from sendarix_core.routing import RouteAction, RouteRule, TlsPolicy, TransportKind

__all__ = ["RouteTransports"]

logger = logging.getLogger("sendarix.routing")

# PoolSettings' defaults, used where a rule sets no pacing limit.
_DEFAULT_POOL = PoolSettings()


@attrs.frozen
class _Key:
    rule_id: str
    updated_at: datetime | None
    site: str | None


@attrs.define(eq=False)
class _Entry:
    transport: Transport
    users: int = 0
    stale: bool = False


class RouteTransports:
    """Transports by rule (and by site for capped sites).

    In the sink delivery mode every rule gets the sink, so nothing leaves
    the process whatever the rules or plugins decide. ``default_transport``
    serves the default rule as long as its action comes from the settings,
    so a transport chosen by a plugin keeps working. ``sink`` serves the
    sink transport.
    """

    def __init__(
        self,
        *,
        settings: Settings,
        resolver: MxResolver,
        default_transport: Transport,
        sink: Transport,
    ) -> None:
        self._settings = settings
        self._resolver = resolver
        self._default = default_transport
        self._sink = sink
        self._entries: dict[_Key, _Entry] = {}
        # Built once: loading the system's CA certificates into a new
        # context takes tens of milliseconds, and a site may get a new
        # transport every time it gives its slots back.
        self._unverified = unverified_context()
        self._verifying = verifying_context()

    @asynccontextmanager
    async def use(
        self,
        rule: RouteRule,
        site: str | None,
        *,
        from_settings: bool,
        connect_gate: ConnectGate | None = None,
    ) -> AsyncIterator[Transport]:
        """Lend the transport of ``rule`` (of ``rule`` and ``site`` when
        ``site`` is given) for one delivery.

        ``from_settings`` is true while the default rule follows the settings.
        ``connect_gate`` is asked before each new connection of a transport
        built now.
        """
        sink_mode = self._settings.delivery_mode is DeliveryMode.SINK
        if rule.action.transport is TransportKind.SINK or sink_mode:
            yield self._sink
            return
        if rule.is_default and from_settings:
            yield self._default
            return

        key = _Key(rule.id, rule.updated_at, site)
        entry = self._entries.get(key)
        if entry is None:
            entry = _Entry(self._build(rule.action, connect_gate))
            self._entries[key] = entry
            await self._retire_older(key)
        entry.users += 1
        try:
            yield entry.transport
        finally:
            entry.users -= 1
            if entry.stale and entry.users == 0:
                await _close_entry(key, entry)

    async def close_site(self, site: str) -> None:
        """Retire the transports of ``site``: idle sessions close now, busy
        ones when their delivery ends, and the next delivery opens anew."""
        for key in [key for key in self._entries if key.site == site]:
            await self._retire(key)

    async def trim_site(self, site: str, keep: int) -> None:
        """Close idle sessions of ``site`` until at most ``keep`` are open."""
        for key, entry in list(self._entries.items()):
            transport = entry.transport
            if key.site == site and isinstance(
                transport, (MxTransport, SmarthostTransport)
            ):
                await transport.close_idle_beyond(keep)

    async def aclose(self) -> None:
        """Close the transports built here; the default and sink transports
        belong to the caller."""
        for key in list(self._entries):
            await self._close(key)

    def _build(
        self, action: RouteAction, connect_gate: ConnectGate | None
    ) -> Transport:
        pacing = action.pacing
        pool = PoolSettings(
            max_connections_per_host=pacing.max_connections
            or _DEFAULT_POOL.max_connections_per_host,
            max_messages_per_connection=pacing.messages_per_connection
            or _DEFAULT_POOL.max_messages_per_connection,
        )
        tls_mode = (
            TlsMode.OPPORTUNISTIC
            if action.tls is TlsPolicy.OPPORTUNISTIC
            else TlsMode.REQUIRED
        )
        common = {
            "helo_name": self._settings.helo_name,
            "timeout": self._settings.smtp_timeout,
            "data_timeout": self._settings.smtp_data_timeout,
            "tls": tls_mode,
            "pool": pool,
            "source_address": action.source_address,
            "connect_gate": connect_gate,
        }
        if action.transport is TransportKind.SMARTHOST and action.smarthost:
            # A smarthost's certificate is always checked: its name is known.
            return SmarthostTransport.from_url(
                action.smarthost.url(), tls_context=self._verifying, **common
            )
        context = self._unverified
        if action.tls is TlsPolicy.REQUIRED_VERIFIED:
            context = self._verifying
        return MxTransport(
            self._resolver,
            port=self._settings.destination_port,
            tls_context=context,
            **common,  # type: ignore[arg-type]
        )

    async def _retire_older(self, current: _Key) -> None:
        for key in list(self._entries):
            older = (
                key.rule_id == current.rule_id
                and key.site == current.site
                and key.updated_at != current.updated_at
            )
            if older:
                await self._retire(key)

    async def _retire(self, key: _Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        if entry.users == 0:
            await _close_entry(key, entry)
        else:
            entry.stale = True

    async def _close(self, key: _Key) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            await _close_entry(key, entry)


async def _close_entry(key: _Key, entry: _Entry) -> None:
    try:
        await entry.transport.aclose()
    except Exception:
        logger.exception(
            "closing a route transport failed",
            extra={"action": "transport_close_failed", "route": key.rule_id},
        )
