"""Queue control in SQL: pauses, parked and released messages, the queue
summary, retries and cancellations by filter.

A paused priority tier is skipped by the claim query. A paused site can't
be skipped that way, because the site of a message is known only after its
domain is resolved. Instead, a worker that claims a message of a paused
site parks it: the message keeps its state, its ``due_at`` moves to its
``expires_at`` or an hour ahead (whichever is sooner) and a row in
``parked_messages`` remembers it. Parked messages are out of the range the
claim query reads, so its index range scan stays short; resuming the site
makes them due at once. ``site_domains`` records which site each recipient
domain resolved to, for filters and counts by site.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

import attrs
import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendarix_backends.queue_control.model import (
    PauseKind,
    Pauses,
    QueueSummary,
    Release,
)
from sendarix_backends.sql import codec
from sendarix_backends.sql.engine import dialect_insert
from sendarix_backends.sql.schema import UtcTimestamp, messages, metadata
from sendarix_core.model import Message
from sendarix_core.queue_filter import QueueFilter
from sendarix_core.states import MessageStatus, Priority

if TYPE_CHECKING:
    from sendarix_backends.sql.store import SqlStore

__all__ = [
    "SqlQueueAdmin",
    "parked_messages",
    "queue_pauses",
    "site_domains",
]

queue_pauses = sa.Table(
    "queue_pauses",
    metadata,
    sa.Column("kind", sa.Text, primary_key=True),
    sa.Column("value", sa.Text, primary_key=True),
    sa.Column("created_at", UtcTimestamp, nullable=False),
)

parked_messages = sa.Table(
    "parked_messages",
    metadata,
    sa.Column(
        "message_id",
        sa.Text,
        sa.ForeignKey("messages.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("site", sa.Text, nullable=False),
    sa.Column("parked_at", UtcTimestamp, nullable=False),
    sa.Index("ix_parked_messages_site", "site"),
)

site_domains = sa.Table(
    "site_domains",
    metadata,
    sa.Column("domain", sa.Text, primary_key=True),
    sa.Column("site", sa.Text, nullable=False),
    sa.Column("updated_at", UtcTimestamp, nullable=False),
    sa.Index("ix_site_domains_site", "site"),
)

PRIORITY_PAUSE = PauseKind.PRIORITY.value
SITE_PAUSE = PauseKind.SITE.value


class SqlQueueAdmin:
    """Queue control on the database of a ``SqlStore``."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store

    async def pauses(self) -> Pauses:
        return await self._store.run_transaction("list_pauses", _pauses, write=False)

    async def pause(self, kind: str, value: str, now: datetime) -> bool:
        return await self._store.run_transaction(
            "pause", _pause, kind, value, now, write=True
        )

    async def resume(self, kind: str, value: str, now: datetime) -> int | None:
        return await self._store.run_transaction(
            "resume", _resume, kind, value, now, write=True
        )

    async def release(self, releases: Sequence[Release]) -> None:
        if releases:
            await self._store.run_transaction(
                "release_claims", _release, releases, write=True
            )

    async def park(self, site: str, releases: Sequence[Release], now: datetime) -> bool:
        return await self._store.run_transaction(
            "park_messages", _park, site, releases, now, write=True
        )

    async def record_site_domains(
        self, domains: Mapping[str, str], now: datetime
    ) -> None:
        if domains:
            await self._store.run_transaction(
                "record_site_domains", _record_site_domains, domains, now, write=True
            )

    async def summary(self, now: datetime, domain_limit: int) -> QueueSummary:
        return await self._store.run_transaction(
            "queue_summary", _summary, now, domain_limit, write=False
        )

    async def retry_deferred(self, queue_filter: QueueFilter, now: datetime) -> int:
        return await self._store.run_transaction(
            "retry_deferred", _retry_deferred, queue_filter, now, write=True
        )

    async def count(self, queue_filter: QueueFilter) -> int:
        return await self._store.run_transaction(
            "count_messages", _count, queue_filter, write=False
        )

    async def select(self, queue_filter: QueueFilter, limit: int) -> list[Message]:
        return await self._store.run_transaction(
            "select_messages", _select, queue_filter, limit, write=False
        )


def _pauses(connection: Connection) -> Pauses:
    rows = connection.execute(sa.select(queue_pauses.c.kind, queue_pauses.c.value))
    priorities = set()
    sites = set()
    for kind, value in rows:
        if kind == PRIORITY_PAUSE:
            priorities.add(Priority(value))
        else:
            sites.add(value)
    return Pauses(frozenset(priorities), frozenset(sites))


def _pause(connection: Connection, kind: str, value: str, now: datetime) -> bool:
    result = connection.execute(
        dialect_insert(connection, queue_pauses)
        .values(kind=kind, value=value, created_at=now)
        .on_conflict_do_nothing(
            index_elements=[queue_pauses.c.kind, queue_pauses.c.value]
        )
    )
    return bool(result.rowcount)


def _resume(connection: Connection, kind: str, value: str, now: datetime) -> int | None:
    """Lift a pause; return how many parked messages became due, or None
    when there was no such pause."""
    deleted = connection.execute(
        sa.delete(queue_pauses).where(
            queue_pauses.c.kind == kind, queue_pauses.c.value == value
        )
    )
    if not deleted.rowcount:
        return None
    if kind != SITE_PAUSE:
        return 0

    parked_ids = sa.select(parked_messages.c.message_id).where(
        parked_messages.c.site == value
    )
    due = sa.case(
        (messages.c.next_attempt_at > now, messages.c.next_attempt_at),
        else_=sa.literal(now, type_=UtcTimestamp),
    )
    unparked = connection.execute(
        sa.update(messages)
        .where(
            messages.c.id.in_(parked_ids),
            messages.c.due_at.is_not(None),
            messages.c.lease_owner.is_(None),
        )
        .values(due_at=due)
    )
    connection.execute(
        sa.delete(parked_messages).where(parked_messages.c.site == value)
    )
    return int(unparked.rowcount)


_RELEASE = (
    sa.update(messages)
    .where(
        messages.c.id == sa.bindparam("match_id"),
        messages.c.version == sa.bindparam("match_version"),
    )
    .values(
        due_at=sa.bindparam("new_due_at", type_=UtcTimestamp),
        lease_owner=None,
    )
)


def _release(connection: Connection, releases: Sequence[Release]) -> None:
    params = [
        {
            "match_id": item.message_id,
            "match_version": item.version,
            "new_due_at": item.due_at,
        }
        for item in sorted(releases, key=lambda item: item.message_id)
    ]
    connection.execute(_RELEASE, params)


def _park(
    connection: Connection, site: str, releases: Sequence[Release], now: datetime
) -> bool:
    """Park messages of a paused site; return False, releasing them due now
    instead, when the site is no longer paused.

    On PostgreSQL the pause row is locked for share, so a resume that runs
    at the same time waits for this transaction and then finds the rows.
    """
    pause = connection.execute(
        sa.select(queue_pauses.c.kind)
        .where(queue_pauses.c.kind == SITE_PAUSE, queue_pauses.c.value == site)
        .with_for_update(read=True)
    ).first()
    if pause is None:
        _release(connection, [attrs.evolve(item, due_at=now) for item in releases])
        return False

    rows = [
        {"message_id": item.message_id, "site": site, "parked_at": now}
        for item in sorted(releases, key=lambda item: item.message_id)
    ]
    insert = dialect_insert(connection, parked_messages).values(rows)
    connection.execute(
        insert.on_conflict_do_update(
            index_elements=[parked_messages.c.message_id],
            set_={"site": insert.excluded.site, "parked_at": insert.excluded.parked_at},
        )
    )
    _release(connection, releases)
    return True


def _record_site_domains(
    connection: Connection, domains: Mapping[str, str], now: datetime
) -> None:
    rows = [
        {"domain": domain, "site": site, "updated_at": now}
        for domain, site in sorted(domains.items())
    ]
    insert = dialect_insert(connection, site_domains).values(rows)
    connection.execute(
        insert.on_conflict_do_update(
            index_elements=[site_domains.c.domain],
            set_={
                "site": insert.excluded.site,
                "updated_at": insert.excluded.updated_at,
            },
        )
    )


def _summary(connection: Connection, now: datetime, domain_limit: int) -> QueueSummary:
    waiting = messages.c.due_at.is_not(None)
    counts = connection.execute(
        sa.select(messages.c.status, messages.c.priority, sa.func.count())
        .where(waiting)
        .group_by(messages.c.status, messages.c.priority)
    ).all()
    count_column = sa.func.count().label("waiting")
    by_domain = connection.execute(
        sa.select(messages.c.recipient_domain, count_column)
        .where(waiting)
        .group_by(messages.c.recipient_domain)
        .order_by(count_column.desc(), messages.c.recipient_domain)
        .limit(domain_limit)
    ).all()
    domains = [domain for domain, _ in by_domain]
    domain_sites = dict(
        connection.execute(
            sa.select(site_domains.c.domain, site_domains.c.site).where(
                site_domains.c.domain.in_(domains)
            )
        ).all()
    )
    # A parked message cancelled or expired since keeps its parked row until
    # the site resumes; only those still waiting count.
    parked: dict[str, int] = dict(
        connection.execute(
            sa.select(parked_messages.c.site, sa.func.count())
            .join(messages, messages.c.id == parked_messages.c.message_id)
            .where(waiting)
            .group_by(parked_messages.c.site)
        ).all()
    )
    oldest = connection.execute(
        sa.select(sa.func.min(messages.c.created_at)).where(waiting)
    ).scalar_one()
    next_retries = connection.execute(
        sa.select(messages.c.id, messages.c.next_attempt_at)
        .where(waiting, messages.c.status == MessageStatus.DEFERRED.value)
        .order_by(messages.c.next_attempt_at, messages.c.id)
        .limit(10)
    ).all()
    return QueueSummary(
        counts={(status, rank): total for status, rank, total in counts},
        by_domain=[(domain, total) for domain, total in by_domain],
        domain_sites=domain_sites,
        parked=parked,
        oldest_created_at=oldest,
        next_retries=[(message_id, when) for message_id, when in next_retries],
        pauses=_pauses(connection),
    )


def _retry_deferred(
    connection: Connection, queue_filter: QueueFilter, now: datetime
) -> int:
    """Make deferred messages due now; messages a worker holds are left alone."""
    result = connection.execute(
        sa.update(messages)
        .where(
            *_conditions(connection, queue_filter),
            messages.c.lease_owner.is_(None),
        )
        .values(due_at=now, next_attempt_at=now)
    )
    return int(result.rowcount)


def _count(connection: Connection, queue_filter: QueueFilter) -> int:
    statement = sa.select(sa.func.count()).where(*_conditions(connection, queue_filter))
    return int(connection.execute(statement).scalar_one())


def _select(
    connection: Connection, queue_filter: QueueFilter, limit: int
) -> list[Message]:
    statement = (
        sa.select(messages)
        .where(*_conditions(connection, queue_filter))
        .order_by(messages.c.id)
        .limit(limit)
    )
    rows = connection.execute(statement).mappings()
    return [codec.message_from_row(row) for row in rows]


Condition = sa.ColumnElement[bool] | sa.TextClause


def _conditions(connection: Connection, queue_filter: QueueFilter) -> list[Condition]:
    conditions: list[Condition] = [messages.c.due_at.is_not(None)]
    if queue_filter.statuses:
        conditions.append(
            messages.c.status.in_([status.value for status in queue_filter.statuses])
        )
    if queue_filter.priorities:
        ranks = [priority.rank for priority in queue_filter.priorities]
        conditions.append(messages.c.priority.in_(ranks))
    if queue_filter.recipient_domains:
        conditions.append(
            messages.c.recipient_domain.in_(queue_filter.recipient_domains)
        )
    if queue_filter.sites:
        domains = sa.select(site_domains.c.domain).where(
            site_domains.c.site.in_(queue_filter.sites)
        )
        conditions.append(messages.c.recipient_domain.in_(domains))
    if queue_filter.sender_domains:
        conditions.append(messages.c.sender_domain.in_(queue_filter.sender_domains))
    if queue_filter.tags:
        conditions.append(_has_any_tag(connection, queue_filter.tags))
    if queue_filter.created_before is not None:
        conditions.append(messages.c.created_at < queue_filter.created_before)
    if queue_filter.created_after is not None:
        conditions.append(messages.c.created_at >= queue_filter.created_after)
    return conditions


def _has_any_tag(connection: Connection, tags: Sequence[str]) -> sa.TextClause:
    if connection.dialect.name == "postgresql":
        # ?| is true when the JSONB array holds any of the strings.
        return sa.text("messages.tags ?| CAST(:filter_tags AS text[])").bindparams(
            filter_tags=list(tags)
        )
    return sa.text(
        "EXISTS (SELECT 1 FROM json_each(messages.tags) "
        "WHERE value IN (SELECT value FROM json_each(:filter_tags)))"
    ).bindparams(filter_tags=orjson.dumps(list(tags)).decode())
