"""Persisting lifecycle transitions with optimistic version checks.

The stored versions are read first, locking the rows on PostgreSQL in id
order so two concurrent batches cannot deadlock, then every transition whose
``before.version`` still matches is written with one executemany per
statement shape. A message may appear more than once in a batch; each
transition is checked against the version the previous one left.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendarix_backends.sql import codec
from sendarix_backends.sql.engine import dialect_insert
from sendarix_backends.sql.schema import messages, suppressions
from sendarix_backends.sql.submissions import CHUNK_ROWS, insert_events
from sendarix_core.lifecycle import Transition
from sendarix_core.states import MessageStatus

__all__ = ["save_transitions"]

# A transition into ``accepted`` keeps the lease that the claim set
# (``due_at`` and ``lease_owner``); every other one derives ``due_at`` from
# the new state and releases the lease.


def _update_statement(*, keep_lease: bool) -> sa.Update:
    columns = list(codec.STATE_COLUMNS)
    if not keep_lease:
        columns += ["due_at", "lease_owner"]
    return (
        sa.update(messages)
        .where(
            messages.c.id == sa.bindparam("match_id"),
            messages.c.version == sa.bindparam("match_version"),
        )
        .values({name: sa.bindparam(f"new_{name}") for name in columns})
    )


_KEEP_LEASE_UPDATE = _update_statement(keep_lease=True)
_RELEASE_UPDATE = _update_statement(keep_lease=False)


def save_transitions(
    connection: Connection, transitions: Sequence[Transition]
) -> list[str]:
    """Apply the transitions whose version still matches; return the stale ids."""
    if not transitions:
        return []
    versions = _lock_versions(connection, {t.after.id for t in transitions})

    applied: list[Transition] = []
    stale: list[str] = []
    for transition in transitions:
        if transition.before is None:
            raise ValueError(
                f"transition of message {transition.after.id} has no previous "
                "state; store new messages with create_messages"
            )
        message_id = transition.after.id
        if versions.get(message_id) != transition.before.version:
            stale.append(message_id)
            continue
        versions[message_id] = transition.after.version
        applied.append(transition)

    _update_messages(connection, applied)
    insert_events(connection, applied)
    _insert_suppressions(connection, applied)
    return stale


def _lock_versions(connection: Connection, message_ids: set[str]) -> dict[str, int]:
    ordered = sorted(message_ids)
    versions: dict[str, int] = {}
    for start in range(0, len(ordered), CHUNK_ROWS):
        statement = (
            sa.select(messages.c.id, messages.c.version)
            .where(messages.c.id.in_(ordered[start : start + CHUNK_ROWS]))
            .order_by(messages.c.id)
            .with_for_update()
        )
        for message_id, version in connection.execute(statement):
            versions[message_id] = version
    return versions


def _update_messages(connection: Connection, transitions: list[Transition]) -> None:
    updates = [_update_for(transition) for transition in transitions]
    if len({transition.after.id for transition in transitions}) == len(transitions):
        updates.sort(key=lambda update: update[0] is _RELEASE_UPDATE)

    # executemany runs its rows in order. Only consecutive updates of one
    # shape are grouped, so a message that moves twice in one batch is
    # matched against the version its first move wrote.
    start = 0
    for end in range(1, len(updates) + 1):
        if end == len(updates) or updates[end][0] is not updates[start][0]:
            statement = updates[start][0]
            connection.execute(statement, [params for _, params in updates[start:end]])
            start = end


def _update_for(transition: Transition) -> tuple[sa.Update, dict[str, Any]]:
    after = transition.after
    params = {
        f"new_{name}": value for name, value in codec.message_state_row(after).items()
    }
    params["match_id"] = after.id
    params["match_version"] = transition.before.version if transition.before else None
    if after.status is MessageStatus.ACCEPTED:
        return _KEEP_LEASE_UPDATE, params
    params["new_due_at"] = codec.due_at(after)
    params["new_lease_owner"] = None
    return _RELEASE_UPDATE, params


def _insert_suppressions(connection: Connection, transitions: list[Transition]) -> None:
    rows = {
        t.suppression.recipient: codec.suppression_row(t.suppression)
        for t in transitions
        if t.suppression is not None
    }
    if not rows:
        return
    statement = (
        dialect_insert(connection, suppressions)
        .values([rows[recipient] for recipient in sorted(rows)])
        .on_conflict_do_nothing(index_elements=[suppressions.c.recipient])
    )
    connection.execute(statement)
