"""Listing messages newest first, with filters and cursors."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sendarix_backends.sql import SqlStore
from sendarix_core.errors import ValidationError
from sendarix_core.lifecycle import cancel
from sendarix_core.model import Address, Message
from sendarix_core.ports import MessageQuery
from sendarix_core.states import MessageStatus
from tests.storage.conftest import T0, Factory

pytestmark = pytest.mark.anyio


async def list_all(store: SqlStore, query: MessageQuery) -> list[Message]:
    """Follow cursors until the last page and return every item in order."""
    items: list[Message] = []
    page = await store.list_messages(query)
    items.extend(page.items)
    while page.next_cursor is not None:
        assert len(page.items) == query.limit
        query = MessageQuery(
            status=query.status,
            recipient=query.recipient,
            created_after=query.created_after,
            created_before=query.created_before,
            limit=query.limit,
            cursor=page.next_cursor,
        )
        page = await store.list_messages(query)
        items.extend(page.items)
    return items


@pytest.fixture
async def messages(store: SqlStore, factory: Factory) -> list[Message]:
    """Store 30 messages a minute apart and cancel every fourth.

    Every third message goes to Ada@Example.com.
    """
    created = []
    for minute in range(30):
        changes: dict[str, Address] = {}
        if minute % 3 == 0:
            changes["recipient"] = Address("Ada", "Example.com")
        created.append(
            factory.message(created_at=T0 + timedelta(minutes=minute), **changes)
        )
    await store.create_messages([factory.submission(m) for m in created], T0)
    cancelled = [cancel(m, now=T0, event_id=factory.event_id()) for m in created[::4]]
    await store.save_transitions(cancelled)
    return created


async def test_pages_newest_first(store: SqlStore, messages: list[Message]) -> None:
    listed = await list_all(store, MessageQuery(limit=7))

    assert [m.id for m in listed] == sorted((m.id for m in messages), reverse=True)


async def test_single_page_has_no_cursor(
    store: SqlStore, messages: list[Message]
) -> None:
    page = await store.list_messages(MessageQuery(limit=30))

    assert len(page.items) == 30
    assert page.next_cursor is None


async def test_filter_by_status(store: SqlStore, messages: list[Message]) -> None:
    listed = await list_all(
        store, MessageQuery(status=MessageStatus.CANCELLED, limit=4)
    )

    expected = sorted((m.id for m in messages[::4]), reverse=True)
    assert [m.id for m in listed] == expected
    assert all(m.status is MessageStatus.CANCELLED for m in listed)


async def test_filter_by_recipient(store: SqlStore, messages: list[Message]) -> None:
    listed = await list_all(store, MessageQuery(recipient=" ADA@example.COM ", limit=3))

    expected = [m.id for m in messages if m.recipient.local_part == "Ada"]
    assert [m.id for m in listed] == sorted(expected, reverse=True)


async def test_filter_by_created_range(
    store: SqlStore, messages: list[Message]
) -> None:
    after = T0 + timedelta(minutes=10)
    before = T0 + timedelta(minutes=20)

    listed = await list_all(
        store, MessageQuery(created_after=after, created_before=before, limit=4)
    )

    expected = [m.id for m in messages if after <= m.created_at < before]
    assert [m.id for m in listed] == sorted(expected, reverse=True)
    assert len(listed) == 10


async def test_invalid_cursor_raises(store: SqlStore) -> None:
    with pytest.raises(ValidationError) as raised:
        await store.list_messages(MessageQuery(cursor="%%%"))

    assert raised.value.errors[0].field == "cursor"
