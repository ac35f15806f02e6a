"""``Pacer``: which claimed messages a worker may start now, per site.

Messages of a site without shared limits, and not slowed down, start at
once without touching the database. For the other sites the pacer requests
a grant from the ``PacingStore``, once per claimed batch for all its sites.
Messages beyond the grant are handed back to the queue with a due time
spread over how long the site needs to take them, unchanged: no attempt
is counted and no event is recorded. Messages of a paused site are parked.

A capped site's grant may admit more messages than the worker has
connection slots: each delivery then waits in the process for a free slot
(``session_slot``), so the slots stay busy between two claims without the
site ever having more sessions than slots. ``max_waiting`` caps those
waiting deliveries across all sites.

A worker holds the connection slots it was granted while it has
deliveries in flight at the site. Once the site is idle, it keeps them,
with the open sessions for the next batch to reuse, for ``linger`` seconds
when another worker waits for a slot there and for ``IDLE_HOLD`` seconds
otherwise. It then closes the site's idle sessions and gives the slots
back. Leases on the slots are renewed
with the message leases; a worker that dies loses them when they expire.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from types import TracebackType

import attrs

from sendarix_backends.pacing.store import PacingStore, SiteRequest
from sendarix_backends.queue_control.model import Release, park
from sendarix_backends.routing.router import Dispatch
from sendarix_backends.smtp.pool import ConnectGate
from sendarix_backends.waiting import wait_in_line
from sendarix_core.clock import Clock
from sendarix_core.model import Message, SmtpReply
from sendarix_core.pacing import (
    PacingLimits,
    Slowdown,
    messages_per_slot,
    release_delays,
)
from sendarix_core.states import MessageStatus

__all__ = ["Admission", "Pacer"]

logger = logging.getLogger("sendarix.pacing")


# Weight of the newest delivery time in a site's moving average.
_SMOOTHING = 0.3
# Seconds a delivery is assumed to take before one to the site finished.
_FIRST_ESTIMATE = 0.25
# Forget a site's local counters after this many idle seconds.
_FORGET_AFTER = 600.0
# Seconds an idle site keeps its slots and open sessions while no other
# worker waits for them; the same as the connection pool's idle limit.
IDLE_HOLD = 30.0
# ``_SiteUse.usable`` of a site that lost its cap while the worker held slots.
_NO_CAP = sys.maxsize
# Shortest wait between two tries for a connection token, in seconds.
_MIN_TOKEN_WAIT = 0.05


@attrs.define
class _SiteUse:
    """This worker's deliveries, slots and estimates at one site."""

    limits: PacingLimits = attrs.field(factory=PacingLimits)
    in_flight: int = 0
    held: int = 0
    # Slots the worker may send on now: fewer than held while it has more
    # sessions busy than its share.
    usable: int = 0
    # Deliveries in a connection slot now, and those waiting for a slot.
    sending: int = 0
    waiters: deque[asyncio.Future[None]] = attrs.Factory(deque)
    own_transport: bool = False
    # Seconds a delivery spends in its slot, None before the first one.
    seconds_per_message: float | None = None
    idle_since: float = 0.0

    @property
    def per_slot(self) -> int:
        seconds = self.seconds_per_message
        return messages_per_slot(_FIRST_ESTIMATE if seconds is None else seconds)

    def add_sample(self, seconds: float) -> None:
        """Add the time one delivery spent in its slot to the estimate."""
        if self.seconds_per_message is None:
            self.seconds_per_message = seconds
        else:
            self.seconds_per_message += _SMOOTHING * (
                seconds - self.seconds_per_message
            )

    def wake(self) -> None:
        """Hand free slots to waiting deliveries, oldest first; all of them
        go on once the worker holds no slot, as when the site lost its cap."""
        while self.waiters and (not self.held or self.sending < self.usable):
            waiter = self.waiters.popleft()
            if not waiter.done():
                self.sending += 1
                waiter.set_result(None)


@attrs.frozen
class Admission:
    """The outcome of ``Pacer.admit`` for one claimed batch."""

    admitted: list[tuple[Message, Dispatch]]
    released: list[Release]
    parked: dict[str, list[Release]]


class Pacer:
    def __init__(
        self,
        store: PacingStore,
        *,
        worker_id: str,
        clock: Clock,
        lease: timedelta,
        close_site: Callable[[str], Awaitable[None]],
        trim_site: Callable[[str, int], Awaitable[None]],
        linger: float = 1.0,
        refresh: float = 1.0,
        max_waiting: int | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._worker_id = worker_id
        self._clock = clock
        self._lease = lease
        self._close_site = close_site
        self._trim_site = trim_site
        self._linger = linger
        self._refresh = refresh
        self._max_waiting = max_waiting
        self._monotonic = monotonic
        self._sites: dict[str, _SiteUse] = {}
        self._slowed: dict[str, Slowdown] = {}
        self._slowed_at = -refresh
        self._renewed_at = 0.0

    async def admit(
        self,
        candidates: Sequence[tuple[Message, Dispatch]],
        *,
        paused_sites: frozenset[str] = frozenset(),
    ) -> Admission:
        """Split claimed messages into those that start now, those handed
        back for later and those parked.

        A message already ``accepted`` (resumed after another worker's lease
        ran out) always starts, so the attempt in progress is finished.
        Every admitted message counts as in flight until ``finished``.
        """
        now = self._clock.now()
        await self._refresh_slowed()
        groups: dict[str, list[tuple[Message, Dispatch]]] = {}
        for message, dispatch in candidates:
            groups.setdefault(dispatch.site, []).append((message, dispatch))

        admitted: list[tuple[Message, Dispatch]] = []
        parked: dict[str, list[Release]] = {}
        waiting: dict[str, list[tuple[Message, Dispatch]]] = {}
        requests = []
        # Read once per batch: summing over every site for each of the
        # batch's sites would cost sites squared on every claim.
        waiting_by_site = self._waiting_by_site() if self._max_waiting else {}
        waiting_total = sum(waiting_by_site.values())
        for site, items in groups.items():
            resumed = [
                item for item in items if item[0].status is MessageStatus.ACCEPTED
            ]
            fresh = [
                item for item in items if item[0].status is not MessageStatus.ACCEPTED
            ]
            if site in paused_sites and fresh:
                parked[site] = [park(message, now) for message, _ in fresh]
                fresh = []
            use = self._use(site, items[0][1])
            self._start(site, len(resumed))
            admitted.extend(resumed)
            if not self._is_paced(site, items[0][1]):
                if use.held:
                    # The site lost its cap, as a slowed site without limits
                    # does when it recovers: every waiting delivery goes on.
                    use.usable = _NO_CAP
                    use.wake()
                self._start(site, len(fresh))
                admitted.extend(fresh)
                continue
            if fresh:
                waiting[site] = fresh
                requests.append(
                    SiteRequest(
                        site=site,
                        limits=use.limits,
                        wanted=len(fresh),
                        in_flight=use.in_flight,
                        held=use.held,
                        sending=use.sending,
                        per_slot=use.per_slot,
                        beyond_slots=_beyond_slots(
                            self._max_waiting,
                            waiting_total - waiting_by_site.get(site, 0),
                        ),
                    )
                )

        released = await self._grant(requests, waiting, admitted)
        return Admission(admitted=admitted, released=released, parked=parked)

    def own_transport(self, site: str) -> bool:
        """Return whether deliveries to ``site`` use a transport of their own."""
        use = self._sites.get(site)
        return use is not None and use.own_transport

    def finished(self, site: str) -> None:
        """Count one admitted message of ``site`` as done."""
        use = self._sites.get(site)
        if use is None:
            return
        use.in_flight = max(0, use.in_flight - 1)
        if use.in_flight == 0:
            use.idle_since = self._monotonic()

    def session_slot(self, site: str) -> _SessionSlot:
        """Return the ``async with`` that holds one of the worker's connection
        slots at ``site`` around a delivery.

        Deliveries beyond the slots held wait, oldest first. A site where
        the worker holds no slot (no cap, or only resumed deliveries) lets
        every delivery through. The time spent inside updates the site's
        estimate of seconds per message.
        """
        return _SessionSlot(self._sites.get(site), self._monotonic)

    async def report_throttle(self, site: str, reply: SmtpReply) -> None:
        """Slow ``site`` down for every worker after a throttling reply."""
        now = self._clock.now()
        slowdown = await self._store.record_throttle(site, now, reply.text)
        self._slowed[site] = slowdown
        logger.warning(
            "destination %s throttled: %s %s; sending at %.0f%% of its limits",
            site,
            reply.code,
            reply.text,
            slowdown.factor_at(now) * 100,
            extra={
                "action": "site_throttled",
                "site": site,
                "smtp_code": reply.code,
                "factor": slowdown.factor_at(now),
            },
        )

    def connection_gate(self, site: str) -> ConnectGate | None:
        """Return the gate that takes a connection-rate token of ``site`` for
        each new session, if the site has a connection rate."""
        use = self._sites.get(site)
        rate = None if use is None else use.limits.connection_rate
        if use is None or rate is None:
            return None
        limits = use.limits

        async def take_token() -> float | None:
            # Without a token the pool calls this again once a token has had
            # time to refill at the site's slowed-down rate. Any node's
            # refill may supply it.
            now = self._clock.now()
            if await self._store.take_connection_token(site, limits, now):
                return None
            slowdown = self._slowed.get(site)
            factor = 1.0 if slowdown is None else slowdown.factor_at(now)
            return max(_MIN_TOKEN_WAIT, 1 / (rate * factor))

        return take_token

    async def maintain(self, *, force: bool = False) -> None:
        """Give back the slots of idle sites and renew the other leases.

        ``force`` releases every idle site at once, without the linger.
        """
        now_seconds = self._monotonic()
        idle = await self._sites_to_give_back(now_seconds, force=force)
        for site in idle:
            await self._close_site(site)
            self._sites[site].own_transport = False
        held = [site for site in idle if self._sites[site].held]
        if held:
            await self._store.release(self._worker_id, held)
            for site in held:
                self._sites[site].held = self._sites[site].usable = 0

        renew_every = self._lease.total_seconds() / 3
        holding = any(use.held for use in self._sites.values())
        if holding and now_seconds - self._renewed_at >= renew_every:
            await self._store.renew(self._worker_id, self._clock.now(), self._lease)
            self._renewed_at = now_seconds
        self._forget_idle(now_seconds)

    async def aclose(self) -> None:
        await self.maintain(force=True)

    async def _sites_to_give_back(
        self, now_seconds: float, *, force: bool
    ) -> list[str]:
        """Return the idle sites whose slots and sessions go back now: those
        idle for ``linger`` seconds that another worker waits for, and those
        idle for ``IDLE_HOLD`` seconds."""
        idle = {
            site: now_seconds - use.idle_since
            for site, use in self._sites.items()
            if use.in_flight == 0 and (use.held or use.own_transport)
        }
        if force:
            return list(idle)
        lingering = [site for site, seconds in idle.items() if seconds >= self._linger]
        if not lingering:
            return []
        wanted = await self._store.waiting_sites(
            self._worker_id, lingering, self._clock.now()
        )
        return [site for site in lingering if site in wanted or idle[site] >= IDLE_HOLD]

    def _waiting_by_site(self) -> dict[str, int]:
        """Return the deliveries waiting for a slot at each site with slots."""
        return {
            name: max(0, use.in_flight - use.sending)
            for name, use in self._sites.items()
            if use.held
        }

    def _use(self, site: str, dispatch: Dispatch) -> _SiteUse:
        use = self._sites.setdefault(site, _SiteUse(idle_since=self._monotonic()))
        use.limits = dispatch.limits
        return use

    def _start(self, site: str, count: int) -> None:
        if count:
            self._sites[site].in_flight += count

    def _is_paced(self, site: str, dispatch: Dispatch) -> bool:
        if dispatch.is_sink:
            return False
        slowed = site in self._slowed and self._slowed[site].is_slowed(
            self._clock.now()
        )
        return dispatch.limits.is_shared or slowed

    async def _grant(
        self,
        requests: list[SiteRequest],
        waiting: dict[str, list[tuple[Message, Dispatch]]],
        admitted: list[tuple[Message, Dispatch]],
    ) -> list[Release]:
        if not requests:
            return []
        now = self._clock.now()
        grants = await self._store.acquire(self._worker_id, requests, now, self._lease)
        released: list[Release] = []
        for request in requests:
            grant = grants[request.site]
            use = self._sites[request.site]
            if grant.connections is not None and use.own_transport:
                # Open sessions never outnumber the slots held: when the cap
                # dropped or others wait for a slot, the idle ones beyond go.
                await self._trim_site(request.site, grant.slots)
            use.held = grant.slots
            use.usable = grant.usable
            use.wake()
            if grant.connections is not None or use.limits.connection_rate:
                use.own_transport = True
            items = waiting[request.site]
            admitted.extend(items[: grant.messages])
            self._start(request.site, grant.messages)
            rest = items[grant.messages :]
            delays = release_delays(
                len(rest),
                rate=grant.rate,
                connections=grant.connections,
                seconds_per_message=use.seconds_per_message,
            )
            released.extend(
                _release(message, now + timedelta(seconds=delay))
                for (message, _), delay in zip(rest, delays, strict=True)
            )
        return released

    async def _refresh_slowed(self) -> None:
        if self._monotonic() - self._slowed_at < self._refresh:
            return
        self._slowed = await self._store.slowed_sites(self._clock.now())
        self._slowed_at = self._monotonic()

    def _forget_idle(self, now_seconds: float) -> None:
        stale = [
            site
            for site, use in self._sites.items()
            if use.in_flight == 0
            and not use.held
            and not use.own_transport
            and now_seconds - use.idle_since >= _FORGET_AFTER
        ]
        for site in stale:
            del self._sites[site]


class _SessionSlot:
    """The ``async with`` of ``Pacer.session_slot``."""

    __slots__ = ("_entered", "_monotonic", "_use")

    def __init__(self, use: _SiteUse | None, monotonic: Callable[[], float]) -> None:
        self._use = use
        self._monotonic = monotonic
        self._entered = 0.0

    async def __aenter__(self) -> None:
        use = self._use
        if use is not None:
            if use.held and (use.waiters or use.sending >= use.usable):
                # A wake-up hands this delivery a slot, counted in ``sending``.
                await wait_in_line(use.waiters, lambda: _pass_slot_on(use))
            else:
                # A site without slots counts its deliveries all the same,
                # so a later grant keeps a slot for each.
                use.sending += 1
        self._entered = self._monotonic()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        use = self._use
        if use is None:
            return
        use.sending -= 1
        if exc is None or isinstance(exc, Exception):
            use.add_sample(self._monotonic() - self._entered)
        use.wake()


def _beyond_slots(max_waiting: int | None, elsewhere: int) -> int | None:
    """Return how many more deliveries of a site may wait for a slot:
    ``max_waiting`` less the ``elsewhere`` waiting at the worker's other
    sites."""
    if max_waiting is None:
        return None
    return max(0, max_waiting - elsewhere)


def _pass_slot_on(use: _SiteUse) -> None:
    use.sending -= 1
    use.wake()


def _release(message: Message, due_at: datetime) -> Release:
    """Hand a message back, due no later than its ``expires_at`` so that it
    expires on time."""
    if message.expires_at is not None and message.expires_at < due_at:
        due_at = message.expires_at
    return Release(message.id, message.version, due_at)
