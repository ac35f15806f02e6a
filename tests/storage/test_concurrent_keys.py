"""Concurrent key lookups and rate-limit counts, which share transactions."""

from __future__ import annotations

import anyio
import pytest

from sendarix_backends.sql import SqlStore
from sendarix_core.keys import ApiKey, hash_key
from tests.storage.test_api_keys import make_key

pytestmark = pytest.mark.anyio


async def test_concurrent_lookups_match(store: SqlStore) -> None:
    keys = [make_key(1), make_key(2, key_hash=hash_key("sk_test_other"))]
    for key in keys:
        await store.create_api_key(key)
    hashes = [key.key_hash for key in keys] + [hash_key("sk_test_unknown")]
    found: dict[int, ApiKey | None] = {}

    async def look_up(index: int) -> None:
        found[index] = await store.find_api_key(hashes[index % 3])

    async with anyio.create_task_group() as group:
        for index in range(30):
            group.start_soon(look_up, index)

    for index in range(30):
        expected = keys[index % 3] if index % 3 < 2 else None
        assert found[index] == expected, index


async def test_concurrent_counts_per_key(store: SqlStore) -> None:
    window = 1_776_600_000
    counts: dict[str, list[int]] = {"key_1": [], "key_2": []}

    async def count_one(index: int) -> None:
        key_id = "key_1" if index % 3 else "key_2"
        counts[key_id].append(await store.count_request(key_id, window))

    async with anyio.create_task_group() as group:
        for index in range(90):
            group.start_soon(count_one, index)

    assert sorted(counts["key_1"]) == list(range(1, 61))
    assert sorted(counts["key_2"]) == list(range(1, 31))
