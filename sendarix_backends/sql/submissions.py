"""Storing submitted messages, with their idempotency keys, in one transaction.

A key is claimed with ``INSERT … ON CONFLICT DO NOTHING``: on PostgreSQL a
second transaction inserting the same key waits for the first to commit and
then finds the conflict, so of concurrent submissions with one key exactly one
is stored. Existing records are read ``FOR UPDATE`` before one past its
window is overwritten. Keys are written in sorted order, so two batches that
share keys lock them in the same order and cannot deadlock. SQLite runs one
write transaction at a time, which gives the same outcome.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendarix_backends.sql import bulk, codec
from sendarix_backends.sql.engine import dialect_insert
from sendarix_backends.sql.schema import events, idempotency_keys, messages
from sendarix_core.idempotency import (
    IdempotencyDecision,
    IdempotencyRecord,
    decide_idempotency,
)
from sendarix_core.ports import Submission, SubmitOutcome

__all__ = ["EncodedSubmissions", "create_messages", "encode_submissions"]

Key = tuple[str, str]

# Rows per multi-row INSERT, well below SQLite's limit of 32,766 parameters.
CHUNK_ROWS = 1000


@attrs.frozen
class EncodedSubmissions:
    """The message and first-event row of each submission, encoded for insert."""

    messages: list[bulk.Row]
    events: list[bulk.Row]


def encode_submissions(
    dialect: sa.Dialect, submissions: Sequence[Submission]
) -> EncodedSubmissions:
    transitions = [submission.transition for submission in submissions]
    message_rows = [codec.message_row(t.after) for t in transitions]
    event_rows = [codec.event_row(t.event) for t in transitions]
    return EncodedSubmissions(
        messages=bulk.encode_rows(dialect, messages, message_rows),
        events=bulk.encode_rows(dialect, events, event_rows),
    )


def create_messages(
    connection: Connection,
    submissions: Sequence[Submission],
    encoded: EncodedSubmissions,
    now: datetime,
) -> list[SubmitOutcome]:
    """Store the messages that idempotency lets through; one outcome each."""
    first_claims = _first_claims(submissions)
    inserted = _insert_new_keys(
        connection, [submissions[index].idempotency for index in first_claims.values()]
    )
    current = _lock_existing_keys(connection, first_claims.keys() - inserted)

    outcomes: list[SubmitOutcome] = []
    stored: list[int] = []
    overwritten: dict[Key, IdempotencyRecord] = {}
    for index, submission in enumerate(submissions):
        record = submission.idempotency
        decision = IdempotencyDecision.PROCEED
        if record is not None:
            key = (record.api_key_id, record.key)
            claimed = key in inserted and first_claims[key] == index
            if not claimed:
                decision = decide_idempotency(current.get(key), record.fingerprint, now)
            if decision is IdempotencyDecision.REPLAY:
                outcomes.append(SubmitOutcome(replay=current[key]))
                continue
            if decision is IdempotencyDecision.CONFLICT:
                outcomes.append(SubmitOutcome(conflict=True))
                continue
            if not claimed:
                overwritten[key] = record
            current[key] = record

        stored.append(index)
        outcomes.append(SubmitOutcome(message=submission.transition.after))

    _overwrite_keys(connection, overwritten.values())
    bulk.insert_encoded(connection, messages, [encoded.messages[i] for i in stored])
    bulk.insert_encoded(connection, events, [encoded.events[i] for i in stored])
    return outcomes


def _first_claims(submissions: Sequence[Submission]) -> dict[Key, int]:
    """Return the index of the first submission per key.

    Only that one claims the key. Later ones in the batch are decided against
    it, as if they had been sent after it.
    """
    claims: dict[Key, int] = {}
    for index, submission in enumerate(submissions):
        record = submission.idempotency
        if record is not None:
            claims.setdefault((record.api_key_id, record.key), index)
    return claims


def _insert_new_keys(
    connection: Connection, records: Iterable[IdempotencyRecord | None]
) -> set[Key]:
    rows = sorted(
        (codec.idempotency_row(record) for record in records if record is not None),
        key=lambda row: (row["api_key_id"], row["key"]),
    )
    table = idempotency_keys
    inserted: set[Key] = set()
    for start in range(0, len(rows), CHUNK_ROWS):
        statement = (
            dialect_insert(connection, table)
            .values(rows[start : start + CHUNK_ROWS])
            .on_conflict_do_nothing(index_elements=[table.c.api_key_id, table.c.key])
            .returning(table.c.api_key_id, table.c.key)
        )
        inserted.update(
            (api_key_id, key) for api_key_id, key in connection.execute(statement)
        )
    return inserted


def _lock_existing_keys(
    connection: Connection, keys: Iterable[Key]
) -> dict[Key, IdempotencyRecord | None]:
    table = idempotency_keys
    found: dict[Key, IdempotencyRecord | None] = {}
    ordered = sorted(keys)
    for start in range(0, len(ordered), CHUNK_ROWS):
        chunk = ordered[start : start + CHUNK_ROWS]
        statement = (
            sa.select(table)
            .where(sa.tuple_(table.c.api_key_id, table.c.key).in_(chunk))
            .order_by(table.c.api_key_id, table.c.key)
            .with_for_update()
        )
        for row in connection.execute(statement).mappings():
            record = codec.idempotency_from_row(row)
            found[(record.api_key_id, record.key)] = record
    return found


def _overwrite_keys(
    connection: Connection, records: Iterable[IdempotencyRecord]
) -> None:
    table = idempotency_keys
    for record in sorted(records, key=lambda record: (record.api_key_id, record.key)):
        statement = dialect_insert(connection, table).values(
            codec.idempotency_row(record)
        )
        statement = statement.on_conflict_do_update(
            index_elements=[table.c.api_key_id, table.c.key],
            set_={
                "fingerprint": statement.excluded.fingerprint,
                "status_code": statement.excluded.status_code,
                "response": statement.excluded.response,
                "created_at": statement.excluded.created_at,
            },
        )
        connection.execute(statement)
