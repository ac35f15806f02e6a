"""create_batch: a batch's messages and its idempotency key in one commit."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import anyio
import pytest

from sendarix_backends.sql import SqlStore
from sendarix_core.idempotency import IDEMPOTENCY_WINDOW, IdempotencyRecord
from sendarix_core.memory import MemoryStore
from sendarix_core.ports import (
    BatchOutcome,
    BatchSubmission,
    MessageQuery,
    Submission,
    SubmitOutcome,
)
from tests.storage.conftest import T0, Factory

pytestmark = pytest.mark.anyio


def respond(outcomes: Sequence[SubmitOutcome]) -> dict[str, Any]:
    return {
        "data": [
            str(outcome.message.id) if outcome.message else None for outcome in outcomes
        ]
    }


def batch_key(fingerprint: str = "f1", created_at: Any = T0) -> IdempotencyRecord:
    return IdempotencyRecord(
        api_key_id="key_1",
        key="batch-1",
        fingerprint=fingerprint,
        status_code=202,
        response={},
        created_at=created_at,
    )


def batch(
    submissions: Sequence[Submission],
    *,
    claim: IdempotencyRecord | None = None,
    all_or_nothing: bool = False,
) -> BatchSubmission:
    return BatchSubmission(
        submissions=submissions,
        respond=respond,
        idempotency=claim,
        all_or_nothing=all_or_nothing,
    )


async def count_messages(store: Any) -> int:
    page = await store.list_messages(MessageQuery(limit=100))
    return len(page.items)


@pytest.fixture(params=["sql", "memory"])
def any_store(request: pytest.FixtureRequest, store: SqlStore) -> Any:
    """The SQL store of each database, and the in-memory store beside it."""
    if request.param == "memory":
        return MemoryStore()
    return store


async def test_batch_stored_with_response(any_store: Any, factory: Factory) -> None:
    submissions = factory.batch(3)

    outcome = await any_store.create_batch(batch(submissions, claim=batch_key()), T0)

    ids = [s.transition.after.id for s in submissions]
    assert outcome.response == {"data": ids}
    assert [o.message.id for o in outcome.outcomes] == ids
    assert await count_messages(any_store) == 3


async def test_same_key_replays_batch(any_store: Any, factory: Factory) -> None:
    first = await any_store.create_batch(batch(factory.batch(2), claim=batch_key()), T0)

    again = await any_store.create_batch(
        batch(factory.batch(2), claim=batch_key()), T0 + timedelta(hours=1)
    )

    assert again.replay is not None
    assert again.replay.response == first.response
    assert again.outcomes == ()
    assert await count_messages(any_store) == 2


async def test_other_body_conflicts(any_store: Any, factory: Factory) -> None:
    await any_store.create_batch(batch(factory.batch(1), claim=batch_key()), T0)

    outcome = await any_store.create_batch(
        batch(factory.batch(1), claim=batch_key("f2")), T0
    )

    assert outcome == BatchOutcome(conflict=True)
    assert await count_messages(any_store) == 1


async def test_expired_key_reused(any_store: Any, factory: Factory) -> None:
    await any_store.create_batch(batch(factory.batch(1), claim=batch_key()), T0)
    later = T0 + IDEMPOTENCY_WINDOW

    outcome = await any_store.create_batch(
        batch(factory.batch(1), claim=batch_key("f2", later)), later
    )

    assert outcome.replay is None
    assert outcome.response is not None
    assert await count_messages(any_store) == 2


async def test_item_conflict_rolls_back(any_store: Any, factory: Factory) -> None:
    await any_store.create_messages([factory.submission(key="item")], T0)
    items = [factory.submission(), factory.submission(key="item", fingerprint="f9")]

    outcome = await any_store.create_batch(
        batch(items, claim=batch_key(), all_or_nothing=True), T0
    )

    assert outcome.rolled_back
    assert outcome.response is None
    assert [o.conflict for o in outcome.outcomes] == [False, True]
    assert await count_messages(any_store) == 1
    retried = await any_store.create_batch(
        batch([factory.submission()], claim=batch_key()), T0
    )
    assert retried.response is not None


async def test_item_conflict_kept_permissive(any_store: Any, factory: Factory) -> None:
    await any_store.create_messages([factory.submission(key="item")], T0)
    items = [factory.submission(), factory.submission(key="item", fingerprint="f9")]

    outcome = await any_store.create_batch(batch(items), T0)

    assert not outcome.rolled_back
    assert [o.conflict for o in outcome.outcomes] == [False, True]
    assert await count_messages(any_store) == 2


async def test_concurrent_batches_one_stored(
    store: SqlStore, second_store: SqlStore, factory: Factory
) -> None:
    outcomes: list[BatchOutcome] = []

    async def submit(target: SqlStore) -> None:
        submission = batch(factory.batch(4), claim=batch_key())
        outcomes.append(await target.create_batch(submission, T0))

    async with anyio.create_task_group() as group:
        for number in range(10):
            group.start_soon(submit, store if number % 2 else second_store)

    stored = [o for o in outcomes if o.replay is None]
    assert len(stored) == 1
    assert {str(o.replay.response) for o in outcomes if o.replay} == {
        str(stored[0].response)
    }
    assert await count_messages(store) == 4
