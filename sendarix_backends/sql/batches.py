"""Storing a batch request: its idempotency key and its messages in one commit.

The batch key is claimed first, with ``INSERT … ON CONFLICT DO NOTHING`` and
an empty response. On PostgreSQL a concurrent batch with the same key waits
on that row until the first one commits, then reads the finished response
and replays it. The row is filled with the real response at the end of the
same transaction, so no other transaction ever sees the empty one.
"""

from __future__ import annotations

from datetime import datetime

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendarix_backends.sql import codec, submissions
from sendarix_backends.sql.engine import dialect_insert
from sendarix_backends.sql.schema import idempotency_keys
from sendarix_core.idempotency import (
    IdempotencyDecision,
    IdempotencyRecord,
    decide_idempotency,
)
from sendarix_core.ports import BatchOutcome, BatchSubmission

__all__ = ["BatchRolledBackError", "create_batch"]


class BatchRolledBackError(Exception):
    """Raised inside the transaction to roll an all-or-nothing batch back.

    ``SqlStore`` catches it outside the transaction and returns ``outcome``.
    """

    def __init__(self, outcome: BatchOutcome) -> None:
        self.outcome = outcome
        super().__init__("an item of an all-or-nothing batch conflicts")


def create_batch(
    connection: Connection,
    batch: BatchSubmission,
    encoded: submissions.EncodedSubmissions,
    now: datetime,
) -> BatchOutcome:
    """Claim the batch key, store the messages and the response to replay.

    ``encoded`` contains the rows of ``batch.submissions``, built before the
    transaction by ``submissions.encode_submissions``.
    """
    claim = batch.idempotency
    if claim is not None:
        earlier = _claim_key(connection, claim)
        decision = IdempotencyDecision.PROCEED
        if earlier is not None:
            decision = decide_idempotency(earlier, claim.fingerprint, now)
        if decision is IdempotencyDecision.REPLAY:
            return BatchOutcome(replay=earlier)
        if decision is IdempotencyDecision.CONFLICT:
            return BatchOutcome(conflict=True)

    outcomes = submissions.create_messages(connection, batch.submissions, encoded, now)
    if batch.all_or_nothing and any(outcome.conflict for outcome in outcomes):
        raise BatchRolledBackError(BatchOutcome(outcomes=outcomes, rolled_back=True))

    response = batch.respond(outcomes)
    if claim is not None:
        _store_response(connection, attrs.evolve(claim, response=response))
    return BatchOutcome(outcomes=outcomes, response=response)


def _claim_key(
    connection: Connection, claim: IdempotencyRecord
) -> IdempotencyRecord | None:
    """Insert the key, or lock and return the record already stored for it."""
    table = idempotency_keys
    placeholder = codec.idempotency_row(attrs.evolve(claim, response={}))
    statement = (
        dialect_insert(connection, table)
        .values(placeholder)
        .on_conflict_do_nothing(index_elements=[table.c.api_key_id, table.c.key])
        .returning(table.c.key)
    )
    if connection.execute(statement).first() is not None:
        return None

    existing = (
        sa.select(table)
        .where(table.c.api_key_id == claim.api_key_id, table.c.key == claim.key)
        .with_for_update()
    )
    row = connection.execute(existing).mappings().one()
    return codec.idempotency_from_row(row)


def _store_response(connection: Connection, record: IdempotencyRecord) -> None:
    table = idempotency_keys
    row = codec.idempotency_row(record)
    statement = (
        sa.update(table)
        .where(table.c.api_key_id == record.api_key_id, table.c.key == record.key)
        .values(
            fingerprint=row["fingerprint"],
            status_code=row["status_code"],
            response=row["response"],
            created_at=row["created_at"],
        )
    )
    connection.execute(statement)
