"""API keys and rate-limit counters."""

from __future__ import annotations

from datetime import timedelta

import anyio
import attrs
import pytest

from sendarix_backends.sql import SqlStore
from sendarix_core.errors import StorageError
from sendarix_core.keys import ApiKey, Environment, Scope, hash_key
from sendarix_core.ratelimit import WINDOW_SECONDS
from sendarix_core.ratelimit import window_start as window_of
from tests.storage.conftest import T0

pytestmark = pytest.mark.anyio


def make_key(number: int = 1, **changes: object) -> ApiKey:
    key = ApiKey(
        id=f"key_{number}",
        name=f"ci {number}",
        key_hash=hash_key(f"sk_test_secret{number}"),
        prefix="sk_test_secr",
        scopes=frozenset({Scope.MESSAGES_SEND, Scope.MESSAGES_READ}),
        environment=Environment.TEST,
        created_at=T0 + timedelta(seconds=number),
        expires_at=T0 + timedelta(days=90),
        rate_limit=120,
        sender_domains=("acme.example", "xn--bcher-kva.example"),
    )
    return attrs.evolve(key, **changes)  # type: ignore[misc]


async def test_create_and_find(store: SqlStore) -> None:
    key = make_key()
    await store.create_api_key(key)

    assert await store.find_api_key(key.key_hash) == key
    assert await store.get_api_key(key.id) == key


async def test_find_unknown_hash(store: SqlStore) -> None:
    assert await store.find_api_key(hash_key("sk_live_unknown")) is None


async def test_duplicate_hash_raises(store: SqlStore) -> None:
    await store.create_api_key(make_key(1))
    duplicate = make_key(2, key_hash=make_key(1).key_hash)

    with pytest.raises(StorageError) as raised:
        await store.create_api_key(duplicate)

    assert duplicate.key_hash not in str(raised.value)


async def test_list_oldest_first(store: SqlStore) -> None:
    for number in (3, 1, 2):
        await store.create_api_key(make_key(number))

    keys = await store.list_api_keys()

    assert [key.id for key in keys] == ["key_1", "key_2", "key_3"]


async def test_revoke_keeps_first_time(store: SqlStore) -> None:
    await store.create_api_key(make_key())

    revoked = await store.revoke_api_key("key_1", T0 + timedelta(hours=1))
    again = await store.revoke_api_key("key_1", T0 + timedelta(hours=2))

    assert revoked is not None
    assert revoked.revoked_at == T0 + timedelta(hours=1)
    assert again == revoked


async def test_revoke_unknown(store: SqlStore) -> None:
    assert await store.revoke_api_key("key_missing", T0) is None


async def test_touch_once_a_minute(store: SqlStore) -> None:
    await store.create_api_key(make_key())

    await store.touch_api_key("key_1", T0)
    await store.touch_api_key("key_1", T0 + timedelta(seconds=30))
    soon = await store.get_api_key("key_1")
    await store.touch_api_key("key_1", T0 + timedelta(seconds=61))
    later = await store.get_api_key("key_1")

    assert soon is not None
    assert soon.last_used_at == T0
    assert later is not None
    assert later.last_used_at == T0 + timedelta(seconds=61)


async def test_count_request_counts(store: SqlStore) -> None:
    window = 1_776_600_000

    counts = [await store.count_request("key_1", window) for _ in range(3)]
    other_key = await store.count_request("key_2", window)
    next_window = await store.count_request("key_1", window + WINDOW_SECONDS)

    assert counts == [1, 2, 3]
    assert other_key == 1
    assert next_window == 1


async def test_count_request_concurrent(
    store: SqlStore, second_store: SqlStore
) -> None:
    window = 1_776_600_000
    counts: list[int] = []

    async def count_one(index: int) -> None:
        target = store if index % 2 == 0 else second_store
        counts.append(await target.count_request("key_1", window))

    async with anyio.create_task_group() as group:
        for index in range(200):
            group.start_soon(count_one, index)

    assert sorted(counts) == list(range(1, 201))


async def test_old_windows_pruned(store: SqlStore, second_store: SqlStore) -> None:
    window = 1_776_600_000
    await store.count_request("key_1", window)
    await store.count_request("key_1", window + WINDOW_SECONDS)

    await store.count_request("key_1", window + 2 * WINDOW_SECONDS)

    # A window that was pruned starts again from one.
    assert await second_store.count_request("key_1", window) == 1
    assert await second_store.count_request("key_1", window + WINDOW_SECONDS) == 2


async def test_find_and_count_counts(store: SqlStore) -> None:
    key = make_key()
    await store.create_api_key(key)
    now = T0 + timedelta(hours=1)

    results = [await store.find_and_count_request(key.key_hash, now) for _ in range(3)]
    touched = await store.get_api_key(key.id)

    assert [found.id if found else None for found, _ in results] == [key.id] * 3
    assert [count for _, count in results] == [1, 2, 3]
    assert touched is not None
    assert touched.last_used_at == now


async def test_find_and_count_unknown(store: SqlStore) -> None:
    found, count = await store.find_and_count_request(hash_key("sk_live_unknown"), T0)

    assert found is None
    assert count == 0


async def test_find_and_count_skips_revoked(store: SqlStore) -> None:
    key = make_key()
    await store.create_api_key(key)
    revoked = await store.revoke_api_key(key.id, T0 + timedelta(minutes=1))
    now = T0 + timedelta(minutes=2)

    found, count = await store.find_and_count_request(key.key_hash, now)
    stored = await store.get_api_key(key.id)

    assert found == revoked
    assert count == 0
    assert stored is not None
    assert stored.last_used_at is None
    assert await store.count_request(key.id, window_of(now)) == 1


async def test_find_and_count_skips_expired(store: SqlStore) -> None:
    key = make_key()
    await store.create_api_key(key)
    assert key.expires_at is not None

    found, count = await store.find_and_count_request(key.key_hash, key.expires_at)

    assert found == key
    assert count == 0


async def test_find_and_count_concurrent(
    store: SqlStore, second_store: SqlStore
) -> None:
    first, second = make_key(1), make_key(2)
    await store.create_api_key(first)
    await store.create_api_key(second)
    counts: dict[str, list[int]] = {first.id: [], second.id: []}

    async def count_one(index: int) -> None:
        target = store if index % 2 == 0 else second_store
        key = first if index % 3 == 0 else second
        found, count = await target.find_and_count_request(key.key_hash, T0)
        assert found is not None
        counts[found.id].append(count)

    async with anyio.create_task_group() as group:
        for index in range(200):
            group.start_soon(count_one, index)

    assert sorted(counts[first.id]) == list(range(1, 68))
    assert sorted(counts[second.id]) == list(range(1, 134))
