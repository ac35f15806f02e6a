"""The queue: claiming due messages, renewing leases, the next due time.

``messages.due_at`` is the only claim key: it is when a message may next be
claimed, and NULL once it is terminal. The partial index on
``(priority, due_at, id) WHERE due_at IS NOT NULL`` makes each tier's claim
an index range scan, however many messages are waiting.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendarix_backends.sql import bulk, codec, suppressions, transitions
from sendarix_backends.sql.schema import messages, to_micros
from sendarix_core.lifecycle import Transition
from sendarix_core.model import Message
from sendarix_core.states import MessageStatus, Priority
from sendarix_core.suppression import Suppression

__all__ = [
    "ClaimDecider",
    "DecidedClaim",
    "claim_and_decide",
    "claim_due",
    "decode_claimed",
    "next_due_at",
    "renew_leases",
]

# Receives the claimed messages and the suppression entries of their
# recipients, by message id, and returns the transitions to save.
ClaimDecider = Callable[
    [Sequence[Message], Mapping[str, Suppression]], Sequence[Transition]
]


@attrs.frozen
class DecidedClaim:
    """A claimed batch and the transitions saved with the claim.

    ``messages`` are as claimed, before any transition. ``stale`` lists the
    ids whose transition was not saved because the version did not match.
    """

    messages: list[Message]
    transitions: list[Transition]
    stale: list[str]
    released: frozenset[str] = frozenset()
    """Ids of messages whose previous worker gave the lease back when it
    stopped, rather than letting it run out."""


_TIERS = sorted(priority.rank for priority in Priority)
# ``id`` comes first: claim_due sorts the rows by it.
_COLUMNS = tuple(column.name for column in messages.columns)
_RECIPIENT = _COLUMNS.index("recipient")
_LEASE_OWNER = _COLUMNS.index("lease_owner")
_STATUS = _COLUMNS.index("status")

_DUE_IDS = (
    sa.select(messages.c.id)
    .where(
        messages.c.priority == sa.bindparam("rank"),
        messages.c.due_at.is_not(None),
        messages.c.due_at <= sa.bindparam("now", type_=messages.c.due_at.type),
    )
    .order_by(messages.c.due_at, messages.c.id)
    .limit(sa.bindparam("limit"))
    # PostgreSQL skips rows that another claimer has locked instead of
    # waiting for them. SQLite has no row locks, and its single writer gives
    # the same result.
    .with_for_update(skip_locked=True)
)

_RENEW = (
    sa.update(messages)
    .where(
        messages.c.id == sa.bindparam("match_id"),
        messages.c.version == sa.bindparam("match_version"),
    )
    .values(due_at=sa.bindparam("new_due_at", type_=messages.c.due_at.type))
)
_GIVE_BACK = _RENEW.values(lease_owner=None)


def claim_due(
    connection: Connection,
    worker_id: str,
    now: datetime,
    limit: int,
    lease: timedelta,
    *,
    ranks: Sequence[int] | None = None,
) -> list[Sequence[Any]]:
    """Lease up to ``limit`` due messages to ``worker_id`` until ``now + lease``.

    Returns their rows, each with its version raised by one, highest priority
    first and by due time then id within a tier. ``ranks`` limits the claim
    to those priority tiers, so a paused tier is never scanned.
    ``decode_claimed`` turns them into messages after the transaction.
    """
    ids = _due_ids(connection, now, limit, lease, ranks)
    if not ids:
        return []
    result = connection.exec_driver_sql(
        _claim_sql(connection.dialect),
        (
            to_micros(now + lease),
            worker_id,
            bulk.array_parameter(connection.dialect, ids),
        ),
    )
    return _in_claim_order(ids, result.all())


def _due_ids(
    connection: Connection,
    now: datetime,
    limit: int,
    lease: timedelta,
    ranks: Sequence[int] | None,
) -> list[str]:
    """Return the ids of up to ``limit`` due messages; lock them on PostgreSQL."""
    if limit < 1:
        raise ValueError(f"claim limit must be at least 1, not {limit}")
    if lease <= timedelta(0):
        raise ValueError(f"lease must be positive, not {lease}")

    ids: list[str] = []
    for rank in _TIERS if ranks is None else sorted(ranks):
        remaining = limit - len(ids)
        if remaining == 0:
            break
        params = {"rank": rank, "now": now, "limit": remaining}
        ids.extend(connection.scalars(_DUE_IDS, params))
    return ids


def _in_claim_order(ids: list[str], rows: Sequence[Sequence[Any]]) -> list[Any]:
    position = {message_id: index for index, message_id in enumerate(ids)}
    return sorted(rows, key=lambda row: position[row[0]])


def claim_and_decide(
    connection: Connection,
    worker_id: str,
    now: datetime,
    limit: int,
    lease: timedelta,
    *,
    decide: ClaimDecider,
    ranks: Sequence[int] | None = None,
) -> DecidedClaim:
    """Claim as ``claim_due`` does, then save what ``decide`` returns.

    The claim, the suppression lookup and the transitions share one
    transaction, so a batch costs one transaction instead of three. A
    transition from a claimed message is written in the same update as the
    claim. Its version still rises by two, as if claimed and then moved.
    Each transition records its event.
    """
    ids = _due_ids(connection, now, limit, lease, ranks)
    rows: list[Any] = []
    if ids:
        # The rows as claim_due would return them, but read rather than
        # updated: the claim is written together with each transition.
        result = connection.exec_driver_sql(
            _claimed_sql(connection.dialect),
            (bulk.array_parameter(connection.dialect, ids),),
        )
        rows = _in_claim_order(ids, result.all())
    claimed = decode_claimed(rows)
    # Read before the claim writes the new owner: a worker that stopped
    # cleanly cleared the owner when it released its messages.
    released = frozenset(
        row[0]
        for row in rows
        if row[_LEASE_OWNER] is None and row[_STATUS] == MessageStatus.ACCEPTED
    )
    # The recipient column contains the address as normalize_recipient
    # returned it at insert, so the suppression keys need no parsing here.
    recipients = {row[0]: row[_RECIPIENT] for row in rows}
    found = suppressions.get_suppressions(connection, list(recipients.values()))
    by_message = {
        message_id: found[recipient]
        for message_id, recipient in recipients.items()
        if recipient in found
    }
    decided = list(decide(claimed, by_message))

    claim_lease = transitions.ClaimLease(
        owner=worker_id,
        expires_at=now + lease,
        claimed={message.id: message for message in claimed},
    )
    by_id = claim_lease.claimed
    merged = {t.after.id for t in decided if t.before is by_id.get(t.after.id)}
    # A message without a transition (one already accepted, whose lease ran
    # out) only gets the claim.
    undecided = [message_id for message_id in ids if message_id not in merged]
    if undecided:
        connection.exec_driver_sql(
            _claim_sql(connection.dialect),
            (
                to_micros(claim_lease.expires_at),
                worker_id,
                bulk.array_parameter(connection.dialect, undecided),
            ),
        ).close()
    if not decided:
        return DecidedClaim(claimed, decided, [], released)
    encoded = transitions.encode_transitions(
        connection.dialect, decided, lease=claim_lease
    )
    stale = transitions.save_transitions(connection, decided, encoded)
    return DecidedClaim(claimed, decided, stale, released)


def decode_claimed(rows: Sequence[Sequence[Any]]) -> list[Message]:
    """Return the messages in rows returned by ``claim_due``."""
    return [codec.message_from_values(row) for row in rows]


@functools.cache
def _claim_sql(dialect: sa.Dialect) -> str:
    quote = dialect.identifier_preparer.quote
    columns = ", ".join(quote(name) for name in _COLUMNS)
    mark = bulk.placeholder(dialect)
    return (
        f"UPDATE messages SET due_at = {mark}, lease_owner = {mark}, "  # noqa: S608
        f"version = version + 1 WHERE {bulk.in_array(dialect, 'id')} "
        f"RETURNING {columns}"
    )


@functools.cache
def _claimed_sql(dialect: sa.Dialect) -> str:
    """Select every column, with the version a claim would give the row."""
    quote = dialect.identifier_preparer.quote
    columns = ", ".join(
        "version + 1" if name == "version" else quote(name) for name in _COLUMNS
    )
    return f"SELECT {columns} FROM messages WHERE {bulk.in_array(dialect, 'id')}"  # noqa: S608


def renew_leases(
    connection: Connection,
    messages_held: Sequence[Message],
    now: datetime,
    lease: timedelta,
) -> None:
    """Move the lease expiry of each message whose version still matches.

    A lease of zero gives the messages back. They are due at once and
    their owner is cleared, so the worker that claims them next can tell
    them from messages that a dead worker left behind.
    """
    if not messages_held:
        return
    new_due_at = now + lease
    statement = _RENEW if lease > timedelta(0) else _GIVE_BACK
    params = [
        {
            "match_id": message.id,
            "match_version": message.version,
            "new_due_at": new_due_at,
        }
        for message in sorted(messages_held, key=lambda message: message.id)
    ]
    connection.execute(statement, params)


def next_due_at(connection: Connection) -> datetime | None:
    """Return the earliest ``due_at``, one index lookup per priority tier."""
    earliest = [
        sa.select(sa.func.min(messages.c.due_at))
        .where(messages.c.priority == rank, messages.c.due_at.is_not(None))
        .scalar_subquery()
        for rank in _TIERS
    ]
    values = connection.execute(sa.select(*earliest)).one()
    due = [value for value in values if value is not None]
    return min(due, default=None)
