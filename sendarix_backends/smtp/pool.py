"""Reuse of SMTP sessions across deliveries.

Opening a session costs a TCP handshake, a greeting, EHLO and often a TLS
handshake and AUTH, several round trips before the first byte of mail. The
pool keeps sessions open after a delivery and hands them to the next
delivery to the same host, within limits on their number, age and use.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from types import TracebackType

import attrs

from sendarix_backends.smtp.connection import SmtpConnection
from sendarix_backends.waiting import wait_in_line

__all__ = ["ConnectionPool", "PoolSettings"]

logger = logging.getLogger("sendarix.smtp")

Opener = Callable[[], Awaitable[SmtpConnection]]
# Decides whether a new session may open now: returns None when it may, or
# the seconds to wait before asking again.
ConnectGate = Callable[[], Awaitable[float | None]]

# Seconds; keeps a clock that runs behind the event loop's from spinning.
_MIN_REAPER_DELAY = 0.1


@attrs.frozen(kw_only=True)
class PoolSettings:
    """Limits of the connection pool.

    ``max_connections_per_host`` caps open sessions to one host, busy and
    idle together; further deliveries wait for one to come free.
    ``max_messages_per_connection`` closes a session after that many
    transactions. ``max_idle`` (seconds) closes a session left unused for
    that long, and a session idle longer than ``probe_after`` seconds is
    checked with NOOP before it is reused.
    """

    max_connections_per_host: int = attrs.field(
        default=10, validator=attrs.validators.gt(0)
    )
    max_messages_per_connection: int = attrs.field(
        default=100, validator=attrs.validators.gt(0)
    )
    max_idle: float = attrs.field(default=30.0, validator=attrs.validators.gt(0))
    probe_after: float = attrs.field(default=5.0, validator=attrs.validators.gt(0))


@attrs.define(eq=False)
class _HostConnections:
    idle: list[SmtpConnection] = attrs.field(factory=list)
    open_count: int = 0
    # Deliveries waiting for or holding a session. The record leaves the map
    # only when this and open_count are zero, so no delivery keeps a stale one.
    users: int = 0
    # Deliveries waiting for an idle session or a free slot, oldest first.
    waiters: deque[asyncio.Future[None]] = attrs.field(factory=deque)
    # Wakes a waiting delivery to ask the connect gate again.
    gate_timer: asyncio.TimerHandle | None = None

    def notify(self) -> None:
        """Wake the oldest waiting delivery to check the host again."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return


class ConnectionPool:
    """Open SMTP sessions keyed by host, reused by later deliveries.

    Keys are whatever identifies a destination, ``(host, port)`` for the
    transports here. ``clock`` returns seconds on a monotonic scale.

    ``gate``, when given, is asked before each new session opens, as pacing
    does for a connection rate. A delivery that the gate turns away waits
    with the others for a returned session or for the gate to be asked
    again, whichever comes first, so a slow gate limits the sessions opened
    and not the messages sent.
    """

    def __init__(
        self,
        settings: PoolSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        gate: ConnectGate | None = None,
    ) -> None:
        self._settings = settings or PoolSettings()
        self._clock = clock
        self._gate = gate
        self._hosts: dict[Hashable, _HostConnections] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._reaper: asyncio.TimerHandle | None = None
        self._closed = False

    @property
    def settings(self) -> PoolSettings:
        return self._settings

    def open_count(self, key: Hashable) -> int:
        """Return the number of sessions to ``key``, busy or idle."""
        host = self._hosts.get(key)
        return host.open_count if host is not None else 0

    def connection(self, key: Hashable, opener: Opener) -> _Lease:
        """Lend a session to ``key``, opened with ``opener`` when none is idle.

        Use the result with ``async with``. The session goes back to the
        pool on exit when it is still open and ``clean``; otherwise it is
        closed.
        """
        return _Lease(self, key, opener)

    async def aclose(self) -> None:
        """Close idle sessions now; busy ones close when they are returned."""
        self._closed = True
        if self._reaper is not None:
            self._reaper.cancel()
            self._reaper = None

        idle = []
        for host in self._hosts.values():
            idle.extend(host.idle)
            host.open_count -= len(host.idle)
            host.idle.clear()
        await asyncio.gather(*(connection.quit() for connection in idle))
        await asyncio.gather(*self._closing)

    async def _acquire(self, host: _HostConnections, opener: Opener) -> SmtpConnection:
        """Take an idle session, or open one in a free slot, or wait for either."""
        limit = self._settings.max_connections_per_host
        while True:
            if host.idle:
                connection = host.idle.pop()
            elif host.open_count < limit:
                # The slot is taken before the gate is asked, so that
                # deliveries asking at once never open more than the limit.
                host.open_count += 1
                if await self._may_open(host):
                    return await self._open(host, opener)
                if not host.idle:
                    # Checked again because a session may have come back
                    # while the gate was asked, waking no one.
                    await wait_in_line(host.waiters, host.notify)
                continue
            else:
                await wait_in_line(host.waiters, host.notify)
                continue
            if await self._is_usable(connection):
                connection.uses += 1
                return connection
            await self._forget(host, connection)

    async def _may_open(self, host: _HostConnections) -> bool:
        """Ask the gate whether the slot taken in ``host`` may open a session.

        When it may, the oldest waiting delivery is woken to ask for another
        free slot, so that waiters keep asking while slots are free. When it
        may not, the slot is freed and a timer wakes the oldest waiting
        delivery to ask again once the gate's wait is over.
        """
        if self._gate is None:
            return True
        try:
            retry_after = await self._gate()
        except BaseException:
            host.open_count -= 1
            host.notify()
            raise
        if retry_after is None:
            if host.open_count < self._settings.max_connections_per_host:
                host.notify()
            return True

        host.open_count -= 1
        if host.gate_timer is None:
            loop = asyncio.get_running_loop()
            host.gate_timer = loop.call_later(
                max(retry_after, 0.0), self._on_gate_timer, host
            )
        return False

    def _on_gate_timer(self, host: _HostConnections) -> None:
        host.gate_timer = None
        host.notify()

    async def _open(self, host: _HostConnections, opener: Opener) -> SmtpConnection:
        try:
            connection = await opener()
        except BaseException:
            host.open_count -= 1
            host.notify()
            raise
        connection.uses = 1
        return connection

    async def _is_usable(self, connection: SmtpConnection) -> bool:
        if not connection.is_open:
            return False
        idle_for = self._clock() - connection.last_used
        if idle_for >= self._settings.max_idle:
            return False
        if idle_for >= self._settings.probe_after:
            return await connection.probe()
        return True

    async def _release(
        self, host: _HostConnections, connection: SmtpConnection
    ) -> None:
        connection.last_used = self._clock()
        reusable = (
            not self._closed
            and connection.is_open
            and connection.clean
            and connection.transactions < self._settings.max_messages_per_connection
        )
        if not reusable:
            await self._forget(host, connection)
            return

        host.idle.append(connection)
        host.notify()
        self._schedule_reaper()

    async def _forget(self, host: _HostConnections, connection: SmtpConnection) -> None:
        """Close a session taken out of the pool and free its slot.

        The slot is freed only once the session is closed, so a closing
        session still counts against the cap.
        """
        try:
            await connection.quit()
        finally:
            host.open_count -= 1
            host.notify()

    def _drop_if_unused(self, key: Hashable, host: _HostConnections) -> None:
        if host.open_count == 0 and host.users == 0 and self._hosts.get(key) is host:
            del self._hosts[key]

    async def close_idle(self) -> int:
        """Close sessions idle for ``max_idle`` seconds or more; return how many.

        A timer runs this while sessions are idle. It is public so tests can
        drive it with their own clock.
        """
        now = self._clock()
        expired: list[tuple[Hashable, _HostConnections, SmtpConnection]] = []
        for key, host in self._hosts.items():
            for connection in list(host.idle):
                if now - connection.last_used >= self._settings.max_idle:
                    host.idle.remove(connection)
                    expired.append((key, host, connection))

        await asyncio.gather(
            *(self._forget(host, connection) for _, host, connection in expired)
        )
        for key, host, _ in expired:
            self._drop_if_unused(key, host)
        return len(expired)

    async def close_idle_beyond(self, keep: int) -> int:
        """Close idle sessions, least recently used first, until at most
        ``keep`` sessions are open to all hosts together; return how many.

        Busy sessions are left alone, so more than ``keep`` may stay open.
        """
        open_total = sum(host.open_count for host in self._hosts.values())
        idle = sorted(
            (
                (key, host, connection)
                for key, host in self._hosts.items()
                for connection in host.idle
            ),
            key=lambda item: item[2].last_used,
        )
        closing = idle[: max(0, open_total - keep)]
        for _, host, connection in closing:
            host.idle.remove(connection)
        await asyncio.gather(
            *(self._forget(host, connection) for _, host, connection in closing)
        )
        for key, host, _ in closing:
            self._drop_if_unused(key, host)
        return len(closing)

    def _schedule_reaper(self) -> None:
        if self._reaper is not None or self._closed:
            return
        idle_since = [
            connection.last_used
            for host in self._hosts.values()
            for connection in host.idle
        ]
        if not idle_since:
            return
        delay = min(idle_since) + self._settings.max_idle - self._clock()
        loop = asyncio.get_running_loop()
        self._reaper = loop.call_later(
            max(delay, _MIN_REAPER_DELAY), self._on_reaper_timer
        )

    def _on_reaper_timer(self) -> None:
        self._reaper = None
        task = asyncio.get_running_loop().create_task(self._reap())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _reap(self) -> None:
        closed = await self.close_idle()
        if closed:
            logger.debug("closed %d idle SMTP sessions", closed)
        self._schedule_reaper()


class _Lease:
    """The ``async with`` of ``ConnectionPool.connection``.

    A class rather than ``contextlib.asynccontextmanager``, whose generator
    costs more than the lending itself on every delivery.
    """

    __slots__ = ("_connection", "_host", "_key", "_opener", "_pool")

    def __init__(self, pool: ConnectionPool, key: Hashable, opener: Opener) -> None:
        self._pool = pool
        self._key = key
        self._opener = opener

    async def __aenter__(self) -> SmtpConnection:
        pool = self._pool
        if pool._closed:
            raise RuntimeError("the connection pool is closed")
        host = pool._hosts.get(self._key)
        if host is None:
            host = pool._hosts[self._key] = _HostConnections()
        host.users += 1
        try:
            self._connection = await pool._acquire(host, self._opener)
        except BaseException:
            host.users -= 1
            pool._drop_if_unused(self._key, host)
            raise
        self._host = host
        return self._connection

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        host = self._host
        try:
            await self._pool._release(host, self._connection)
        finally:
            host.users -= 1
            self._pool._drop_if_unused(self._key, host)
