"""Pacing state in SQL, shared by every worker of every node.

``site_pacing`` has one row per destination site: its token buckets and
its slow-down factor. ``site_leases`` records the connection slots each
worker has, with an expiry that the worker renews, so the slots of a worker
that died come free when its lease runs out. A row with no slots marks a
worker that waits for one; the holders then shrink to an equal share.

A grant reads and updates the rows of its sites in one transaction. On
PostgreSQL the rows are locked (``SELECT … FOR UPDATE``, in site order so
two workers never wait on each other in a cycle); SQLite runs one write
transaction at a time. The arithmetic is ``sendarix_core.pacing``'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendarix_backends.pacing.store import WAITING_MARK, SiteRequest, SiteState
from sendarix_backends.sql.engine import dialect_insert
from sendarix_backends.sql.schema import UtcTimestamp, metadata
from sendarix_core.pacing import (
    Grant,
    PacingLimits,
    SiteRecord,
    Slowdown,
    TokenBucket,
    grant_messages,
    take_connection_token,
)

if TYPE_CHECKING:
    from sendarix_backends.sql.store import SqlStore

__all__ = ["SqlPacingStore", "site_leases", "site_pacing"]

site_pacing = sa.Table(
    "site_pacing",
    metadata,
    sa.Column("site", sa.Text, primary_key=True),
    sa.Column("tokens", sa.Float, nullable=True),
    sa.Column("refilled_at", UtcTimestamp, nullable=True),
    sa.Column("connection_tokens", sa.Float, nullable=True),
    sa.Column("connections_refilled_at", UtcTimestamp, nullable=True),
    sa.Column("factor", sa.Float, nullable=False),
    sa.Column("factor_changed_at", UtcTimestamp, nullable=True),
    sa.Column("throttled_count", sa.Integer, nullable=False),
    sa.Column("last_throttled_at", UtcTimestamp, nullable=True),
    sa.Column("last_throttle_reply", sa.Text, nullable=True),
    sa.Column("updated_at", UtcTimestamp, nullable=False),
    sa.Index("ix_site_pacing_updated", "updated_at"),
)

site_leases = sa.Table(
    "site_leases",
    metadata,
    sa.Column("site", sa.Text, primary_key=True),
    sa.Column("worker_id", sa.Text, primary_key=True),
    sa.Column("slots", sa.Integer, nullable=False),
    sa.Column("expires_at", UtcTimestamp, nullable=False),
    sa.Index("ix_site_leases_worker", "worker_id"),
)

# Longest reply text kept for the API.
_MAX_REPLY = 500


class SqlPacingStore:
    """``PacingStore`` on the database of a ``SqlStore``."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def acquire(
        self,
        worker_id: str,
        requests: Sequence[SiteRequest],
        now: datetime,
        lease: timedelta,
    ) -> dict[str, Grant]:
        if not requests:
            return {}
        return await self._store.run_transaction(
            "acquire_pacing", _acquire, worker_id, requests, now, lease, write=True
        )

    async def take_connection_token(
        self, site: str, limits: PacingLimits, now: datetime
    ) -> bool:
        return await self._store.run_transaction(
            "take_connection_token",
            _take_connection_token,
            site,
            limits,
            now,
            write=True,
        )

    async def renew(self, worker_id: str, now: datetime, lease: timedelta) -> None:
        await self._store.run_transaction(
            "renew_site_leases", _renew, worker_id, now, lease, write=True
        )

    async def release(self, worker_id: str, sites: Sequence[str]) -> None:
        if sites:
            await self._store.run_transaction(
                "release_site_leases", _release, worker_id, sites, write=True
            )

    async def waiting_sites(
        self, worker_id: str, sites: Sequence[str], now: datetime
    ) -> set[str]:
        return await self._store.run_transaction(
            "waiting_sites", _waiting_sites, worker_id, sites, now, write=False
        )

    async def record_throttle(self, site: str, now: datetime, reply: str) -> Slowdown:
        return await self._store.run_transaction(
            "record_throttle", _record_throttle, site, now, reply, write=True
        )

    async def slowed_sites(self, now: datetime) -> dict[str, Slowdown]:
        return await self._store.run_transaction(
            "slowed_sites", _slowed_sites, now, write=False
        )

    async def list_sites(self, now: datetime, limit: int) -> list[SiteState]:
        return await self._store.run_transaction(
            "list_sites", _list_sites, now, limit, write=False
        )


def _acquire(
    connection: Connection,
    worker_id: str,
    requests: Sequence[SiteRequest],
    now: datetime,
    lease: timedelta,
) -> dict[str, Grant]:
    sites = sorted({request.site for request in requests})
    records = _lock_sites(connection, sites, now)
    others = _other_leases(connection, worker_id, sites, now)

    grants: dict[str, Grant] = {}
    for request in requests:
        held, holders, waiting = others.get(request.site, (0, 0, 0))
        record, grant = grant_messages(
            records[request.site],
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
        records[request.site] = record
        grants[request.site] = grant

    _save_buckets(connection, records, now)
    _save_leases(connection, worker_id, requests, grants, now=now, lease=lease)
    return grants


def _other_leases(
    connection: Connection, worker_id: str, sites: Sequence[str], now: datetime
) -> dict[str, tuple[int, int, int]]:
    """Return, per site, the slots other workers hold, how many workers hold
    some, and how many wait for one."""
    rows = connection.execute(
        sa.select(site_leases.c.site, site_leases.c.slots).where(
            site_leases.c.site.in_(sites),
            site_leases.c.worker_id != worker_id,
            site_leases.c.expires_at > now,
        )
    ).all()
    others: dict[str, tuple[int, int, int]] = {}
    for site, slots in rows:
        held, holders, waiting = others.get(site, (0, 0, 0))
        if slots > 0:
            others[site] = (held + slots, holders + 1, waiting)
        else:
            others[site] = (held, holders, waiting + 1)
    return others


def _lock_sites(
    connection: Connection, sites: Sequence[str], now: datetime
) -> dict[str, SiteRecord]:
    """Read and lock the rows of ``sites``, creating the missing ones."""
    records = _select_locked(connection, sites)
    missing = [site for site in sites if site not in records]
    if missing:
        connection.execute(
            dialect_insert(connection, site_pacing)
            .values([_new_row(site, now) for site in missing])
            .on_conflict_do_nothing(index_elements=[site_pacing.c.site])
        )
        records.update(_select_locked(connection, missing))
    return records


def _select_locked(
    connection: Connection, sites: Sequence[str]
) -> dict[str, SiteRecord]:
    rows = connection.execute(
        sa.select(site_pacing)
        .where(site_pacing.c.site.in_(sites))
        .order_by(site_pacing.c.site)
        .with_for_update()
    ).mappings()
    return {row["site"]: _record(row) for row in rows}


def _save_buckets(
    connection: Connection, records: Mapping[str, SiteRecord], now: datetime
) -> None:
    params = []
    for site in sorted(records):
        record = records[site]
        bucket = record.bucket
        params.append(
            {
                "match_site": site,
                "new_tokens": None if bucket is None else bucket.tokens,
                "new_refilled_at": None if bucket is None else bucket.refilled_at,
                "new_updated_at": now,
            }
        )
    connection.execute(
        sa.update(site_pacing)
        .where(site_pacing.c.site == sa.bindparam("match_site"))
        .values(
            tokens=sa.bindparam("new_tokens"),
            refilled_at=sa.bindparam("new_refilled_at", type_=UtcTimestamp),
            updated_at=sa.bindparam("new_updated_at", type_=UtcTimestamp),
        ),
        params,
    )


def _save_leases(
    connection: Connection,
    worker_id: str,
    requests: Sequence[SiteRequest],
    grants: Mapping[str, Grant],
    *,
    now: datetime,
    lease: timedelta,
) -> None:
    """Record the slots granted, and a short-lived mark with no slots where
    the worker wanted some and got none, so holders share."""
    rows = []
    for request in sorted(requests, key=lambda request: request.site):
        grant = grants[request.site]
        if grant.connections is None:
            continue
        if grant.slots > 0:
            expires_at = now + lease
        elif request.wanted > 0:
            expires_at = now + WAITING_MARK
        else:
            continue
        rows.append(
            {
                "site": request.site,
                "worker_id": worker_id,
                "slots": grant.slots,
                "expires_at": expires_at,
            }
        )
    if not rows:
        return
    insert = dialect_insert(connection, site_leases).values(rows)
    connection.execute(
        insert.on_conflict_do_update(
            index_elements=[site_leases.c.site, site_leases.c.worker_id],
            set_={
                "slots": insert.excluded.slots,
                "expires_at": insert.excluded.expires_at,
            },
        )
    )


def _take_connection_token(
    connection: Connection, site: str, limits: PacingLimits, now: datetime
) -> bool:
    record = _lock_sites(connection, [site], now)[site]
    record, taken = take_connection_token(record, limits=limits, now=now)
    bucket = record.connection_bucket
    connection.execute(
        sa.update(site_pacing)
        .where(site_pacing.c.site == site)
        .values(
            connection_tokens=None if bucket is None else bucket.tokens,
            connections_refilled_at=None if bucket is None else bucket.refilled_at,
            updated_at=now,
        )
    )
    return taken


def _renew(
    connection: Connection, worker_id: str, now: datetime, lease: timedelta
) -> None:
    connection.execute(
        sa.update(site_leases)
        .where(site_leases.c.worker_id == worker_id, site_leases.c.slots > 0)
        .values(expires_at=now + lease)
    )
    # Leases of workers that stopped renewing them; their slots are free.
    connection.execute(sa.delete(site_leases).where(site_leases.c.expires_at <= now))


def _release(connection: Connection, worker_id: str, sites: Sequence[str]) -> None:
    connection.execute(
        sa.delete(site_leases).where(
            site_leases.c.worker_id == worker_id, site_leases.c.site.in_(sites)
        )
    )


def _waiting_sites(
    connection: Connection, worker_id: str, sites: Sequence[str], now: datetime
) -> set[str]:
    rows = connection.scalars(
        sa.select(site_leases.c.site).where(
            site_leases.c.site.in_(sites),
            site_leases.c.worker_id != worker_id,
            site_leases.c.slots == 0,
            site_leases.c.expires_at > now,
        )
    )
    return set(rows)


def _record_throttle(
    connection: Connection, site: str, now: datetime, reply: str
) -> Slowdown:
    record = _lock_sites(connection, [site], now)[site]
    slowdown = record.slowdown.throttled(now)
    connection.execute(
        sa.update(site_pacing)
        .where(site_pacing.c.site == site)
        .values(
            factor=slowdown.factor,
            factor_changed_at=slowdown.changed_at,
            throttled_count=site_pacing.c.throttled_count + 1,
            last_throttled_at=now,
            last_throttle_reply=reply[:_MAX_REPLY],
            updated_at=now,
        )
    )
    return slowdown


def _slowed_sites(connection: Connection, now: datetime) -> dict[str, Slowdown]:
    rows = connection.execute(
        sa.select(site_pacing).where(site_pacing.c.factor < 1.0)
    ).mappings()
    slowed = {}
    for row in rows:
        slowdown = _record(row).slowdown
        if slowdown.is_slowed(now):
            slowed[row["site"]] = slowdown
    return slowed


def _list_sites(connection: Connection, now: datetime, limit: int) -> list[SiteState]:
    rows = list(
        connection.execute(
            sa.select(site_pacing)
            .order_by(site_pacing.c.updated_at.desc(), site_pacing.c.site)
            .limit(limit)
        ).mappings()
    )
    held = dict(
        connection.execute(
            sa.select(site_leases.c.site, sa.func.sum(site_leases.c.slots))
            .where(
                site_leases.c.site.in_([row["site"] for row in rows]),
                site_leases.c.expires_at > now,
            )
            .group_by(site_leases.c.site)
        ).all()
    )
    return [
        SiteState(
            site=row["site"],
            factor=_record(row).slowdown.factor_at(now),
            slots_held=int(held.get(row["site"], 0)),
            throttled_count=row["throttled_count"],
            last_throttled_at=row["last_throttled_at"],
            last_throttle_reply=row["last_throttle_reply"],
            updated_at=row["updated_at"],
        )
        for row in rows
    ]


def _new_row(site: str, now: datetime) -> dict[str, Any]:
    return {
        "site": site,
        "tokens": None,
        "refilled_at": None,
        "connection_tokens": None,
        "connections_refilled_at": None,
        "factor": 1.0,
        "factor_changed_at": None,
        "throttled_count": 0,
        "last_throttled_at": None,
        "last_throttle_reply": None,
        "updated_at": now,
    }


def _record(row: Mapping[Any, Any]) -> SiteRecord:
    bucket = None
    if row["refilled_at"] is not None:
        bucket = TokenBucket(tokens=row["tokens"], refilled_at=row["refilled_at"])
    connection_bucket = None
    if row["connections_refilled_at"] is not None:
        connection_bucket = TokenBucket(
            tokens=row["connection_tokens"],
            refilled_at=row["connections_refilled_at"],
        )
    slowdown = Slowdown(factor=row["factor"], changed_at=row["factor_changed_at"])
    return SiteRecord(
        bucket=bucket, connection_bucket=connection_bucket, slowdown=slowdown
    )
