"""The state that pacing shares between workers: the protocol and an
in-memory version for a single process.

The SQL version (``sendarix_backends.sql.pacing``) keeps the same state in
the database, so the limits hold across every worker of every node.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol

import attrs

from sendarix_core.pacing import (
    Grant,
    PacingLimits,
    SiteRecord,
    Slowdown,
    grant_messages,
    take_connection_token,
)

__all__ = [
    "WAITING_MARK",
    "MemoryPacingStore",
    "PacingStore",
    "SiteRequest",
    "SiteState",
]

# How long a worker that got no slot counts as waiting for one.
WAITING_MARK = timedelta(seconds=2)


@attrs.frozen(kw_only=True)
class SiteRequest:
    """A worker's request to start ``wanted`` messages at ``site``, where it
    has ``in_flight`` deliveries, ``sending`` of them in a connection slot,
    and holds ``held`` slots. Each slot may take ``per_slot`` deliveries,
    and ``beyond_slots`` more may wait (see ``grant_messages``)."""

    site: str
    limits: PacingLimits
    wanted: int
    in_flight: int
    held: int = 0
    sending: int = 0
    per_slot: int = 1
    beyond_slots: int | None = None


@attrs.frozen(kw_only=True)
class SiteState:
    """A site as the API shows it."""

    site: str
    factor: float
    slots_held: int
    throttled_count: int
    last_throttled_at: datetime | None
    last_throttle_reply: str | None
    updated_at: datetime


class PacingStore(Protocol):
    async def acquire(
        self,
        worker_id: str,
        requests: Sequence[SiteRequest],
        now: datetime,
        lease: timedelta,
    ) -> dict[str, Grant]:
        """Grant each request (see ``grant_messages``) in one transaction.

        The slots granted are leased to ``worker_id`` until ``now + lease``.
        A request that gets no slot marks the worker as waiting for
        ``WAITING_MARK``, so the holders shrink to an equal share.
        """
        ...

    async def take_connection_token(
        self, site: str, limits: PacingLimits, now: datetime
    ) -> bool: ...

    async def renew(self, worker_id: str, now: datetime, lease: timedelta) -> None:
        """Extend the slot leases of ``worker_id``; drop every expired lease."""
        ...

    async def release(self, worker_id: str, sites: Sequence[str]) -> None: ...

    async def waiting_sites(
        self, worker_id: str, sites: Sequence[str], now: datetime
    ) -> set[str]:
        """Return those of ``sites`` where another worker waits for a slot."""
        ...

    async def record_throttle(self, site: str, now: datetime, reply: str) -> Slowdown:
        """Slow ``site`` down after a throttling reply; return its new state."""
        ...

    async def slowed_sites(self, now: datetime) -> dict[str, Slowdown]:
        """Return the sites still slowed down at ``now``."""
        ...

    async def list_sites(self, now: datetime, limit: int) -> list[SiteState]:
        """Return the sites changed most recently first."""
        ...


@attrs.define
class _MemorySite:
    record: SiteRecord = attrs.field(factory=SiteRecord)
    throttled_count: int = 0
    last_throttled_at: datetime | None = None
    last_reply: str | None = None
    updated_at: datetime | None = None


class MemoryPacingStore:
    """``PacingStore`` for the workers of one process."""

    def __init__(self) -> None:
        self._sites: dict[str, _MemorySite] = {}
        self._leases: dict[tuple[str, str], tuple[int, datetime]] = {}

    async def acquire(
        self,
        worker_id: str,
        requests: Sequence[SiteRequest],
        now: datetime,
        lease: timedelta,
    ) -> dict[str, Grant]:
        grants = {}
        for request in requests:
            site = self._sites.setdefault(request.site, _MemorySite())
            held, holders, waiting = self._others(request.site, worker_id, now)
            site.record, grant = grant_messages(
                site.record,
                limits=request.limits,
                wanted=request.wanted,
                in_flight=request.in_flight,
                held=request.held,
                sending=request.sending,
                per_slot=request.per_slot,
                beyond_slots=request.beyond_slots,
                held_by_others=held,
                holders=holders,
                waiting=waiting,
                now=now,
            )
            site.updated_at = now
            key = (request.site, worker_id)
            if grant.slots:
                self._leases[key] = (grant.slots, now + lease)
            elif grant.connections is not None and request.wanted:
                self._leases[key] = (0, now + WAITING_MARK)
            grants[request.site] = grant
        return grants

    async def take_connection_token(
        self, site: str, limits: PacingLimits, now: datetime
    ) -> bool:
        state = self._sites.setdefault(site, _MemorySite())
        state.record, taken = take_connection_token(
            state.record, limits=limits, now=now
        )
        return taken

    async def renew(self, worker_id: str, now: datetime, lease: timedelta) -> None:
        renewed = {}
        for key, (slots, expires_at) in self._leases.items():
            if key[1] == worker_id and slots:
                renewed[key] = (slots, now + lease)
            elif expires_at > now:
                renewed[key] = (slots, expires_at)
        self._leases = renewed

    async def release(self, worker_id: str, sites: Sequence[str]) -> None:
        for site in sites:
            self._leases.pop((site, worker_id), None)

    async def waiting_sites(
        self, worker_id: str, sites: Sequence[str], now: datetime
    ) -> set[str]:
        return {
            name
            for (name, owner), (slots, expires_at) in self._leases.items()
            if name in sites and owner != worker_id and not slots and expires_at > now
        }

    async def record_throttle(self, site: str, now: datetime, reply: str) -> Slowdown:
        state = self._sites.setdefault(site, _MemorySite())
        slowdown = state.record.slowdown.throttled(now)
        state.record = attrs.evolve(state.record, slowdown=slowdown)
        state.throttled_count += 1
        state.last_throttled_at = now
        state.last_reply = reply
        state.updated_at = now
        return slowdown

    async def slowed_sites(self, now: datetime) -> dict[str, Slowdown]:
        return {
            name: state.record.slowdown
            for name, state in self._sites.items()
            if state.record.slowdown.is_slowed(now)
        }

    async def list_sites(self, now: datetime, limit: int) -> list[SiteState]:
        held = _held_by_site(self._leases, now)
        states = [
            SiteState(
                site=name,
                factor=state.record.slowdown.factor_at(now),
                slots_held=held.get(name, 0),
                throttled_count=state.throttled_count,
                last_throttled_at=state.last_throttled_at,
                last_throttle_reply=state.last_reply,
                updated_at=state.updated_at or now,
            )
            for name, state in self._sites.items()
        ]
        states.sort(key=lambda state: state.updated_at, reverse=True)
        return states[:limit]

    def _others(self, site: str, worker_id: str, now: datetime) -> tuple[int, int, int]:
        """Return the slots other workers hold at ``site``, how many hold
        some and how many wait for one."""
        held = holders = waiting = 0
        for (name, owner), (slots, expires_at) in self._leases.items():
            if name != site or owner == worker_id or expires_at <= now:
                continue
            held += slots
            if slots:
                holders += 1
            else:
                waiting += 1
        return held, holders, waiting


def _held_by_site(
    leases: Mapping[tuple[str, str], tuple[int, datetime]], now: datetime
) -> dict[str, int]:
    held: dict[str, int] = {}
    for (site, _owner), (slots, expires_at) in leases.items():
        if expires_at > now:
            held[site] = held.get(site, 0) + slots
    return held
