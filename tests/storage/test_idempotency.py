"""Idempotency keys claimed by create_messages."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from sendarix_backends.sql import SqlStore
from sendarix_core.idempotency import IDEMPOTENCY_WINDOW
from sendarix_core.ports import MessageQuery, SubmitOutcome
from tests.storage.conftest import T0, Factory

pytestmark = pytest.mark.anyio


async def count_messages(store: SqlStore) -> int:
    page = await store.list_messages(MessageQuery(limit=100))
    return len(page.items)


async def test_same_key_replays(store: SqlStore, factory: Factory) -> None:
    first = factory.submission(key="k1")
    second = factory.submission(key="k1")

    await store.create_messages([first], T0)
    outcomes = await store.create_messages([second], T0 + timedelta(minutes=5))

    assert outcomes == [SubmitOutcome(replay=first.idempotency)]
    assert await count_messages(store) == 1


async def test_other_body_conflicts(store: SqlStore, factory: Factory) -> None:
    await store.create_messages([factory.submission(key="k1")], T0)

    outcomes = await store.create_messages(
        [factory.submission(key="k1", fingerprint="f2")], T0
    )

    assert outcomes == [SubmitOutcome(conflict=True)]
    assert await count_messages(store) == 1


async def test_key_reusable_after_window(store: SqlStore, factory: Factory) -> None:
    later = T0 + IDEMPOTENCY_WINDOW
    first = factory.submission(key="k1")
    second = factory.submission(
        factory.message(created_at=later), key="k1", fingerprint="f2", created_at=later
    )
    third = factory.submission(key="k1", fingerprint="f2")

    await store.create_messages([first], T0)
    second_outcomes = await store.create_messages([second], later)
    third_outcomes = await store.create_messages([third], later + timedelta(hours=1))

    assert second_outcomes == [SubmitOutcome(message=second.transition.after)]
    assert third_outcomes == [SubmitOutcome(replay=second.idempotency)]
    assert await count_messages(store) == 2


async def test_keys_scoped_per_api_key(store: SqlStore, factory: Factory) -> None:
    first = factory.submission(key="k1", api_key_id="key_1")
    second = factory.submission(key="k1", api_key_id="key_2")

    outcomes = await store.create_messages([first, second], T0)

    assert [outcome.message is not None for outcome in outcomes] == [True, True]


async def test_same_key_twice_in_batch(store: SqlStore, factory: Factory) -> None:
    first = factory.submission(key="k1")
    replayed = factory.submission(key="k1")
    conflicting = factory.submission(key="k1", fingerprint="f2")

    outcomes = await store.create_messages([first, replayed, conflicting], T0)

    assert outcomes == [
        SubmitOutcome(message=first.transition.after),
        SubmitOutcome(replay=first.idempotency),
        SubmitOutcome(conflict=True),
    ]
    assert await count_messages(store) == 1


async def test_batch_mixes_keyed_and_plain(store: SqlStore, factory: Factory) -> None:
    await store.create_messages([factory.submission(key="k1")], T0)
    plain = factory.submission()
    keyed = factory.submission(key="k2")

    outcomes = await store.create_messages(
        [plain, factory.submission(key="k1"), keyed], T0
    )

    assert outcomes[0].message == plain.transition.after
    assert outcomes[1].replay is not None
    assert outcomes[2].message == keyed.transition.after
    assert await count_messages(store) == 3


async def test_concurrent_same_key_stores_one(
    store: SqlStore, second_store: SqlStore, factory: Factory
) -> None:
    submissions = [factory.submission(key="shared") for _ in range(20)]
    outcomes: list[SubmitOutcome] = []

    async def submit(index: int) -> None:
        target = store if index % 2 == 0 else second_store
        outcomes.extend(await target.create_messages([submissions[index]], T0))

    async with anyio.create_task_group() as group:
        for index in range(len(submissions)):
            group.start_soon(submit, index)

    stored = [outcome for outcome in outcomes if outcome.message is not None]
    replays = [outcome for outcome in outcomes if outcome.replay is not None]
    assert len(stored) == 1
    assert len(replays) == 19
    assert await count_messages(store) == 1

    winner = next(s for s in submissions if s.transition.after == stored[0].message)
    assert all(outcome.replay == winner.idempotency for outcome in replays)
