"""Storing and reading messages and their events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from sendarix_backends.sql import SqlStore
from sendarix_core.errors import StorageError
from sendarix_core.lifecycle import accept, deliver
from sendarix_core.model import Address, Attachment, MessageContent, SmtpReply
from sendarix_core.states import EventType, MessageStatus, Priority
from tests.storage.conftest import T0, Factory

pytestmark = pytest.mark.anyio


def full_content() -> MessageContent:
    return MessageContent(
        subject="Grüße — 你好 ✉",
        text="Hallo Zoë,\r\nline two\n",
        html="<p>Héllo <b>wörld</b> 🌍</p>",
        attachments=(
            Attachment("invoice.pdf", "application/pdf", bytes(range(256))),
            Attachment(
                "logo.png",
                "image/png",
                b"\x89PNG\r\n\x00",
                content_id="logo",
                inline=True,
            ),
            Attachment("empty.txt", "text/plain", b""),
        ),
        headers=(("X-Campaign", "spring"), ("X-Entity-Ref", "42"), ("X-A", "ä")),
        template="welcome",
        template_data={
            "name": "Zoë",
            "items": [1, 2.5, None, True],
            "nested": {"a": []},
        },
    )


async def test_round_trip_every_field(store: SqlStore, factory: Factory) -> None:
    message = factory.message(
        status=MessageStatus.SCHEDULED,
        priority=Priority.HIGH,
        sender=Address("billing", "xn--bcher-kva.example", "Bücher GmbH"),
        recipient=Address("zoë", "example.com", "Zoë Ünal"),
        content=full_content(),
        created_at=T0 + timedelta(microseconds=123457),
        updated_at=T0 + timedelta(microseconds=123457),
        scheduled_at=T0 + timedelta(hours=2, microseconds=1),
        expires_at=T0 + timedelta(days=3),
        metadata={"order": "A-17", "ключ": "значение"},
        tags=("receipt", "émoji-🙂"),
        api_key_id="key_abc",
        test_mode=True,
        message_id_header="<msg_1@acme.example>",
    )

    outcomes = await store.create_messages([factory.submission(message)], T0)
    stored = await store.get_message(message.id)

    assert outcomes[0].message == message
    assert stored == message


async def test_round_trip_times_are_utc(store: SqlStore, factory: Factory) -> None:
    created_at = datetime(2026, 4, 19, 16, 30, 0, 999999, tzinfo=UTC)
    message = factory.message(created_at=created_at, updated_at=created_at)

    await store.create_messages([factory.submission(message)], created_at)
    stored = await store.get_message(message.id)

    assert stored is not None
    assert stored.created_at == created_at
    assert stored.created_at.utcoffset() == timedelta(0)


async def test_round_trip_last_reply(store: SqlStore, factory: Factory) -> None:
    message = factory.message()
    await store.create_messages([factory.submission(message)], T0)
    reply = SmtpReply(
        code=250, enhanced_code="2.0.0", text="OK queued as 9F1", mx_host="mx.example"
    )

    accepted = accept(message, now=T0, event_id=factory.event_id())
    delivered = deliver(accepted.after, reply, now=T0, event_id=factory.event_id())
    stale = await store.save_transitions([accepted, delivered])
    stored = await store.get_message(message.id)

    assert stale == []
    assert stored == delivered.after


async def test_get_unknown_message(store: SqlStore) -> None:
    assert await store.get_message("msg_unknown") is None


async def test_create_stores_first_event(store: SqlStore, factory: Factory) -> None:
    submission = factory.submission()

    await store.create_messages([submission], T0)
    events = await store.list_message_events(submission.transition.after.id)

    assert events == [submission.transition.event]


async def test_events_oldest_first(store: SqlStore, factory: Factory) -> None:
    message = factory.message()
    await store.create_messages([factory.submission(message)], T0)
    accepted = accept(message, now=T0, event_id=factory.event_id())
    reply = SmtpReply(code=250, enhanced_code=None, text="OK")
    delivered = deliver(accepted.after, reply, now=T0, event_id=factory.event_id())

    await store.save_transitions([accepted])
    await store.save_transitions([delivered])
    events = await store.list_message_events(message.id)

    assert [event.type for event in events] == [
        EventType.QUEUED,
        EventType.ACCEPTED,
        EventType.DELIVERED,
    ]
    assert events[2] == delivered.event


async def test_create_batch_keeps_order(store: SqlStore, factory: Factory) -> None:
    submissions = factory.batch(50)

    outcomes = await store.create_messages(submissions, T0)

    assert [outcome.message for outcome in outcomes] == [
        submission.transition.after for submission in submissions
    ]


async def test_create_empty_batch(store: SqlStore) -> None:
    assert await store.create_messages([], T0) == []


async def test_naive_time_raises(store: SqlStore, factory: Factory) -> None:
    naive = datetime(2026, 4, 19, 14, 30)
    message = factory.message(created_at=naive, updated_at=naive)

    with pytest.raises(ValueError, match="naive datetime"):
        await store.create_messages([factory.submission(message)], T0)
    with pytest.raises(ValueError, match="naive datetime"):
        await store.claim_due("w1", naive, 10, timedelta(minutes=1))


async def test_duplicate_id_raises_storage_error(
    store: SqlStore, factory: Factory
) -> None:
    submission = factory.submission()
    await store.create_messages([submission], T0)

    with pytest.raises(StorageError, match="create_messages failed"):
        await store.create_messages(
            [factory.submission(submission.transition.after)], T0
        )
