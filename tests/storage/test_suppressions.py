"""The suppression list: add, look up, list by reason and remove."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sendarix_backends.sql import SqlStore
from sendarix_core.errors import ValidationError
from sendarix_core.ports import SuppressionQuery
from sendarix_core.suppression import Suppression, SuppressionReason
from tests.storage.conftest import T0

pytestmark = pytest.mark.anyio

REASONS = list(SuppressionReason)


def entry(number: int, reason: SuppressionReason | None = None) -> Suppression:
    return Suppression(
        recipient=f"user{number}@example.com",
        reason=reason or REASONS[number % len(REASONS)],
        # Pairs share a creation time, so the cursor must also order by recipient.
        created_at=T0 + timedelta(seconds=number // 2),
        message_id=f"msg_{number}" if number % 2 else None,
    )


async def list_all(store: SqlStore, query: SuppressionQuery) -> list[Suppression]:
    items: list[Suppression] = []
    cursor = None
    while True:
        page = await store.list_suppressions(
            SuppressionQuery(reasons=query.reasons, limit=query.limit, cursor=cursor)
        )
        items.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return items


async def test_add_and_get(store: SqlStore) -> None:
    added = await store.add_suppression(entry(1))

    found = await store.get_suppressions(["user1@example.com", "other@example.com"])

    assert added == entry(1)
    assert found == {"user1@example.com": entry(1)}


async def test_add_existing_returns_stored(store: SqlStore) -> None:
    first = entry(1, SuppressionReason.HARD_BOUNCE)
    await store.add_suppression(first)

    again = await store.add_suppression(
        Suppression(
            recipient=first.recipient,
            reason=SuppressionReason.MANUAL,
            created_at=T0 + timedelta(days=1),
        )
    )

    assert again == first


async def test_get_many(store: SqlStore) -> None:
    for number in range(10):
        await store.add_suppression(entry(number))

    found = await store.get_suppressions(
        [f"user{n}@example.com" for n in range(0, 20, 2)]
    )

    assert sorted(found) == sorted(f"user{n}@example.com" for n in range(0, 10, 2))


async def test_get_none(store: SqlStore) -> None:
    assert await store.get_suppressions([]) == {}


async def test_remove(store: SqlStore) -> None:
    await store.add_suppression(entry(1))

    removed = await store.remove_suppression("user1@example.com")
    removed_again = await store.remove_suppression("user1@example.com")

    assert removed is True
    assert removed_again is False
    assert await store.get_suppressions(["user1@example.com"]) == {}


async def test_list_newest_first(store: SqlStore) -> None:
    entries = [entry(number) for number in range(25)]
    for suppression in entries:
        await store.add_suppression(suppression)

    listed = await list_all(store, SuppressionQuery(limit=4))

    expected = sorted(entries, key=lambda s: (s.created_at, s.recipient), reverse=True)
    assert listed == expected


async def test_list_by_reason(store: SqlStore) -> None:
    entries = [entry(number) for number in range(25)]
    for suppression in entries:
        await store.add_suppression(suppression)
    reasons = frozenset({SuppressionReason.COMPLAINT, SuppressionReason.MANUAL})

    listed = await list_all(store, SuppressionQuery(reasons=reasons, limit=3))

    expected = [s for s in entries if s.reason in reasons]
    assert {s.recipient for s in listed} == {s.recipient for s in expected}
    assert len(listed) == len(expected)


async def test_invalid_cursor_raises(store: SqlStore) -> None:
    with pytest.raises(ValidationError):
        await store.list_suppressions(SuppressionQuery(cursor="bm90LWEtY3Vyc29y"))
