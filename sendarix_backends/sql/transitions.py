"""Persisting lifecycle transitions with optimistic version checks.

A transition is written only where the stored version still equals
``before.version``. A message may appear more than once in a batch, so the
n-th transition of each message goes into round n, and rounds run in order.
Once a transition of a message is stale, its later ones are stale too.

A transition into ``accepted`` keeps the lease the claim set (``due_at`` and
``lease_owner``). Every other one derives ``due_at`` from the new state and
releases the lease. A transition saved in the claim's own transaction
(``ClaimLease``) is written in the same update as the claim.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import attrs
import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendarix_backends.sql import bulk, codec
from sendarix_backends.sql.engine import dialect_insert
from sendarix_backends.sql.schema import events, messages, suppressions
from sendarix_core.lifecycle import Transition
from sendarix_core.model import Message
from sendarix_core.states import MessageStatus

__all__ = [
    "ClaimLease",
    "EncodedTransitions",
    "encode_transitions",
    "save_transitions",
]

_RELEASED = (*codec.STATE_COLUMNS, "due_at", "lease_owner")


@attrs.frozen
class ClaimLease:
    """The lease a claim gives the messages whose transitions it saves.

    ``claimed`` contains the messages as the claim returned them, by id. A
    transition from one of them is saved together with the claim. It
    matches the version stored before the claim, and an ``accepted``
    message gets the lease (``owner`` until ``expires_at``).
    """

    owner: str
    expires_at: datetime
    claimed: Mapping[str, Message]


@attrs.frozen
class EncodedTransitions:
    """The update row and event row of each transition, encoded for one dialect."""

    updates: list[bulk.Row]
    events: list[bulk.Row]


def encode_transitions(
    dialect: sa.Dialect,
    transitions: Sequence[Transition],
    *,
    lease: ClaimLease | None = None,
) -> EncodedTransitions:
    """Encode the rows ``save_transitions`` writes; no connection is needed.

    With ``lease``, transitions from the claimed messages also apply the
    claim, as ``claims.claim_and_decide`` needs.
    """
    for transition in transitions:
        if transition.before is None:
            raise ValueError(
                f"transition of message {transition.after.id} has no previous "
                "state; store new messages with create_messages"
            )
    update_rows = [_update_row(transition, lease) for transition in transitions]
    event_rows = [codec.event_row(transition.event) for transition in transitions]
    return EncodedTransitions(
        updates=bulk.encode_rows(dialect, messages, update_rows),
        events=bulk.encode_rows(dialect, events, event_rows),
    )


def save_transitions(
    connection: Connection,
    transitions: Sequence[Transition],
    encoded: EncodedTransitions,
) -> list[str]:
    """Apply the transitions whose version still matches; return the stale ids."""
    rounds: list[list[int]] = []
    occurrences: dict[str, int] = {}
    for index, transition in enumerate(transitions):
        position = occurrences.get(transition.after.id, 0)
        occurrences[transition.after.id] = position + 1
        if position == len(rounds):
            rounds.append([])
        rounds[position].append(index)

    applied: list[int] = []
    stale_ids: set[str] = set()
    for round_ in rounds:
        candidates = [i for i in round_ if transitions[i].after.id not in stale_ids]
        updated = _apply_round(connection, [encoded.updates[i] for i in candidates])
        for index in candidates:
            message_id = transitions[index].after.id
            if message_id in updated:
                applied.append(index)
            else:
                stale_ids.add(message_id)

    applied.sort()
    bulk.insert_encoded(connection, events, [encoded.events[i] for i in applied])
    _insert_suppressions(connection, [transitions[i] for i in applied])
    applied_set = set(applied)
    return [t.after.id for i, t in enumerate(transitions) if i not in applied_set]


def _apply_round(connection: Connection, rows: list[bulk.Row]) -> set[str]:
    """Update each message at most once; return the ids whose version matched."""
    if not rows:
        return set()
    if connection.dialect.name == "postgresql":
        sql = _postgresql_update(connection.dialect)
        result = connection.exec_driver_sql(sql, (bulk.dump_rows(rows),))
        return set(result.scalars())

    # SQLite runs one write transaction at a time, so the versions read here
    # cannot change before the update.
    versions = _stored_versions(connection, [row["match_id"] for row in rows])
    matching = [
        row for row in rows if versions.get(row["match_id"]) == row["match_version"]
    ]
    # A transition that keeps the lease leaves due_at alone, so its statement
    # does not name the column and SQLite skips the due index, which it
    # would otherwise rewrite for every row whose SET list names due_at.
    for keep_lease in (True, False):
        group = [row for row in matching if row["keep_lease"] is keep_lease]
        if group:
            head, tail, names = _sqlite_update(
                connection.dialect, keep_lease=keep_lease
            )
            bulk.run_in_chunks(connection, head, tail, bulk.positional(group, names))
    return {row["match_id"] for row in matching}


def _update_row(transition: Transition, lease: ClaimLease | None) -> dict[str, Any]:
    after = transition.after
    before = transition.before
    row = codec.message_state_row(after)
    accepted = after.status is MessageStatus.ACCEPTED
    row["match_id"] = after.id
    row["match_version"] = before.version if before else None
    if (
        before is not None
        and lease is not None
        and before is lease.claimed.get(after.id)
    ):
        # The claim and this transition are one update: it matches the
        # version before the claim and sets the lease of an accepted message.
        row["match_version"] = before.version - 1
        row["keep_lease"] = False
        row["due_at"] = lease.expires_at if accepted else codec.due_at(after)
        row["lease_owner"] = lease.owner if accepted else None
        return row
    row["keep_lease"] = accepted
    row["due_at"] = None if accepted else codec.due_at(after)
    row["lease_owner"] = None
    return row


def _stored_versions(connection: Connection, message_ids: list[str]) -> dict[str, int]:
    """Return the stored version of each message on SQLite.

    The versions come back as one JSON object in one row, since each row
    fetched is a step of the sqlite3 module, which gives up the GIL.
    """
    dialect = connection.dialect
    result = connection.exec_driver_sql(
        "SELECT json_group_object(id, version) FROM messages "  # noqa: S608
        f"WHERE {bulk.in_array(dialect, 'id')}",
        (bulk.array_parameter(dialect, message_ids),),
    )
    versions: dict[str, int] = orjson.loads(result.scalar_one())
    return versions


@functools.cache
def _postgresql_update(dialect: sa.Dialect) -> str:
    quote = dialect.identifier_preparer.quote
    source = bulk.recordset(
        dialect,
        messages,
        _RELEASED,
        extra={"keep_lease": "boolean", "match_id": "text", "match_version": "integer"},
    )
    assignments = [f"{quote(name)} = v.{quote(name)}" for name in codec.STATE_COLUMNS]
    return (
        f"UPDATE messages AS t SET {', '.join(assignments)}, "  # noqa: S608
        "due_at = CASE WHEN v.keep_lease THEN t.due_at ELSE v.due_at END, "
        "lease_owner = CASE WHEN v.keep_lease THEN t.lease_owner "
        "ELSE v.lease_owner END "
        f"FROM {source} "
        "WHERE t.id = v.match_id AND t.version = v.match_version "
        "RETURNING t.id"
    )


@functools.cache
def _sqlite_update(
    dialect: sa.Dialect, *, keep_lease: bool
) -> tuple[str, str, tuple[str, ...]]:
    """Return the update around its ``VALUES`` rows, and the keys of a row.

    ``bulk.run_in_chunks`` puts the rows between the two parts, so one
    statement updates a whole chunk.
    """
    quote = dialect.identifier_preparer.quote
    names: tuple[str, ...] = codec.STATE_COLUMNS
    if not keep_lease:
        names += ("due_at", "lease_owner")
    keys = (*names, "match_id", "match_version")
    assignments = ", ".join(f"{quote(name)} = v.{quote(name)}" for name in names)
    head = f"WITH v({', '.join(quote(key) for key in keys)}) AS (VALUES "
    tail = (
        f") UPDATE messages SET {assignments} FROM v "  # noqa: S608
        "WHERE messages.id = v.match_id AND messages.version = v.match_version"
    )
    return head, tail, keys


def _insert_suppressions(connection: Connection, transitions: list[Transition]) -> None:
    rows = {
        t.suppression.recipient: codec.suppression_row(t.suppression)
        for t in transitions
        if t.suppression is not None
    }
    if not rows:
        return
    # Sorted, so concurrent batches insert shared recipients in one order.
    statement = (
        dialect_insert(connection, suppressions)
        .values([rows[recipient] for recipient in sorted(rows)])
        .on_conflict_do_nothing(index_elements=[suppressions.c.recipient])
    )
    connection.execute(statement)
