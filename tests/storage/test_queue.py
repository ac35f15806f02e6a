"""The queue: claim order, leases, fencing and transitions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta

import anyio
import pytest

from sendarix_backends.sql import SqlStore
from sendarix_core.lifecycle import (
    Transition,
    accept,
    bounce,
    cancel,
    decide_claimed,
    defer_or_bounce,
    deliver,
)
from sendarix_core.model import Message, SmtpReply
from sendarix_core.states import MessageStatus, Priority
from sendarix_core.suppression import (
    Suppression,
    SuppressionReason,
    normalize_recipient,
)
from tests.storage.conftest import T0, Factory

pytestmark = pytest.mark.anyio

LEASE = timedelta(minutes=5)
OK = SmtpReply(code=250, enhanced_code="2.0.0", text="OK", mx_host="mx.example")
BUSY = SmtpReply(
    code=451, enhanced_code="4.3.0", text="try later", mx_host="mx.example"
)
NO_MAILBOX = SmtpReply(
    code=550, enhanced_code="5.1.1", text="no such user", mx_host="mx.example"
)


async def enqueue(store: SqlStore, factory: Factory, **changes: object) -> Message:
    message = factory.message(**changes)  # type: ignore[arg-type]
    await store.create_messages([factory.submission(message)], T0)
    return message


async def test_claim_by_priority_then_fifo(store: SqlStore, factory: Factory) -> None:
    enqueued: list[Message] = []
    for minute in (3, 1, 2, 0):
        for priority in (Priority.LOW, Priority.HIGH, Priority.NORMAL):
            created_at = T0 + timedelta(minutes=minute)
            enqueued.append(
                await enqueue(store, factory, priority=priority, created_at=created_at)
            )
    expected = sorted(enqueued, key=lambda m: (m.priority.rank, m.created_at))

    claimed = await store.claim_due("w1", T0 + timedelta(hours=1), 100, LEASE)

    assert [m.id for m in claimed] == [m.id for m in expected]


async def test_claim_limit_takes_highest(store: SqlStore, factory: Factory) -> None:
    low = await enqueue(store, factory, priority=Priority.LOW)
    high = await enqueue(store, factory, priority=Priority.HIGH)

    first = await store.claim_due("w1", T0, 1, LEASE)
    second = await store.claim_due("w1", T0, 1, LEASE)

    assert [message.id for message in first] == [high.id]
    assert [message.id for message in second] == [low.id]


async def test_claim_ties_broken_by_id(store: SqlStore, factory: Factory) -> None:
    messages = [await enqueue(store, factory) for _ in range(5)]

    claimed = await store.claim_due("w1", T0, 10, LEASE)

    assert [m.id for m in claimed] == sorted(m.id for m in messages)


async def test_scheduled_waits_until_due(store: SqlStore, factory: Factory) -> None:
    later = T0 + timedelta(hours=2)
    message = await enqueue(
        store, factory, status=MessageStatus.SCHEDULED, scheduled_at=later
    )

    early = await store.claim_due("w1", later - timedelta(microseconds=1), 10, LEASE)
    on_time = await store.claim_due("w1", later, 10, LEASE)

    assert early == []
    assert [m.id for m in on_time] == [message.id]


async def test_claim_sets_lease_and_version(store: SqlStore, factory: Factory) -> None:
    message = await enqueue(store, factory)

    claimed = await store.claim_due("w1", T0, 10, LEASE)
    again = await store.claim_due("w2", T0 + LEASE - timedelta(seconds=1), 10, LEASE)
    after_lease = await store.claim_due("w2", T0 + LEASE, 10, LEASE)

    assert claimed[0].version == message.version + 1
    assert claimed[0].status is MessageStatus.QUEUED
    assert again == []
    assert [m.version for m in after_lease] == [message.version + 2]


async def test_expired_lease_fences_worker(store: SqlStore, factory: Factory) -> None:
    await enqueue(store, factory)
    [held] = await store.claim_due("w1", T0, 1, LEASE)
    later = T0 + LEASE + timedelta(seconds=1)
    [taken] = await store.claim_due("w2", later, 1, LEASE)

    late_accept = accept(held, now=later, event_id=factory.event_id())
    stale = await store.save_transitions([late_accept])
    fresh_accept = accept(taken, now=later, event_id=factory.event_id())
    fresh_stale = await store.save_transitions([fresh_accept])

    assert stale == [held.id]
    assert fresh_stale == []
    assert await store.get_message(held.id) == fresh_accept.after


async def test_stale_transition_writes_no_event(
    store: SqlStore, factory: Factory
) -> None:
    message = await enqueue(store, factory)
    [held] = await store.claim_due("w1", T0, 1, LEASE)
    await store.claim_due("w2", T0 + LEASE, 1, LEASE)

    await store.save_transitions([accept(held, now=T0, event_id=factory.event_id())])
    events = await store.list_message_events(message.id)

    assert len(events) == 1


async def test_resumed_accepted_message(store: SqlStore, factory: Factory) -> None:
    await enqueue(store, factory)
    [held] = await store.claim_due("w1", T0, 1, LEASE)
    accepted = accept(held, now=T0, event_id=factory.event_id())
    await store.save_transitions([accepted])

    later = T0 + LEASE
    [resumed] = await store.claim_due("w2", later, 1, LEASE)
    decision = decide_claimed(resumed, None, now=later, event_id=factory.event_id())
    late_delivery = deliver(accepted.after, OK, now=later, event_id=factory.event_id())
    stale = await store.save_transitions([late_delivery])

    assert resumed.status is MessageStatus.ACCEPTED
    assert decision is None
    assert stale == [held.id]


def decide_all(
    claimed: Sequence[Message], suppressions: Mapping[str, Suppression]
) -> list[Transition]:
    decided = []
    for message in claimed:
        transition = decide_claimed(
            message, suppressions.get(message.id), now=T0, event_id=f"evt_{message.id}"
        )
        if transition is not None:
            decided.append(transition)
    return decided


async def test_claim_and_decide_saves(store: SqlStore, factory: Factory) -> None:
    message = await enqueue(store, factory)

    result = await store.claim_and_decide("w1", T0, 10, LEASE, decide_all)
    [transition] = result.transitions
    events = await store.list_message_events(message.id)

    assert [m.version for m in result.messages] == [message.version + 1]
    assert result.messages[0].status is MessageStatus.QUEUED
    assert result.stale == []
    assert transition.after.status is MessageStatus.ACCEPTED
    assert transition.after.version == message.version + 2
    assert await store.get_message(message.id) == transition.after
    assert [event.type for event in events][-1] == transition.event.type
    assert await store.next_due_at() == T0 + LEASE


async def test_claim_and_decide_suppressed(store: SqlStore, factory: Factory) -> None:
    message = await enqueue(store, factory)
    recipient = normalize_recipient(message.recipient.email)
    await store.add_suppression(
        Suppression(recipient=recipient, reason=SuppressionReason.MANUAL, created_at=T0)
    )

    result = await store.claim_and_decide("w1", T0, 10, LEASE, decide_all)
    stored = await store.get_message(message.id)

    assert [t.after.status for t in result.transitions] == [MessageStatus.SUPPRESSED]
    assert stored is not None
    assert stored.status is MessageStatus.SUPPRESSED
    assert await store.next_due_at() is None


async def test_claim_and_decide_empty(store: SqlStore, factory: Factory) -> None:
    calls: list[int] = []

    def decide(
        claimed: Sequence[Message], suppressions: Mapping[str, Suppression]
    ) -> list[Transition]:
        calls.append(len(claimed))
        return []

    result = await store.claim_and_decide("w1", T0, 10, LEASE, decide)

    assert result.messages == []
    assert result.transitions == []
    assert calls == [0]


async def test_claim_and_decide_resumes_accepted(
    store: SqlStore, factory: Factory
) -> None:
    message = await enqueue(store, factory)
    first = await store.claim_and_decide("w1", T0, 10, LEASE, decide_all)
    [accepted] = [t.after for t in first.transitions]
    later = T0 + LEASE

    resumed = await store.claim_and_decide("w2", later, 10, LEASE, decide_all)
    during_lease = await store.claim_due("w3", later + LEASE / 2, 10, LEASE)

    assert resumed.transitions == []
    assert [m.version for m in resumed.messages] == [accepted.version + 1]
    assert resumed.messages[0].status is MessageStatus.ACCEPTED
    assert during_lease == []
    assert await store.next_due_at() == later + LEASE
    stored = await store.get_message(message.id)
    assert stored is not None
    assert stored.version == accepted.version + 1


async def test_claim_and_decide_mixes_new_and_resumed(
    store: SqlStore, factory: Factory
) -> None:
    await enqueue(store, factory)
    first = await store.claim_and_decide("w1", T0, 10, LEASE, decide_all)
    [accepted] = [t.after for t in first.transitions]
    fresh = await enqueue(store, factory)
    later = T0 + LEASE

    result = await store.claim_and_decide("w2", later, 10, LEASE, decide_all)
    versions = {m.id: m.version for m in result.messages}

    assert versions == {accepted.id: accepted.version + 1, fresh.id: fresh.version + 1}
    assert [t.after.id for t in result.transitions] == [fresh.id]
    assert result.stale == []
    for message_id, version in [
        (accepted.id, accepted.version + 1),
        (fresh.id, fresh.version + 2),
    ]:
        stored = await store.get_message(message_id)
        assert stored is not None
        assert (stored.status, stored.version) == (MessageStatus.ACCEPTED, version)
    assert await store.next_due_at() == later + LEASE


async def test_claim_and_decide_fences(store: SqlStore, factory: Factory) -> None:
    await enqueue(store, factory)
    [held] = await store.claim_due("w1", T0, 1, LEASE)
    later = T0 + LEASE

    result = await store.claim_and_decide("w2", later, 1, LEASE, decide_all)
    stale = await store.save_transitions(
        [accept(held, now=later, event_id=factory.event_id())]
    )

    assert [m.id for m in result.messages] == [held.id]
    assert result.stale == []
    assert stale == [held.id]


async def test_renew_lease_extends(store: SqlStore, factory: Factory) -> None:
    await enqueue(store, factory)
    [held] = await store.claim_due("w1", T0, 1, LEASE)

    await store.renew_leases([held], T0 + timedelta(minutes=4), LEASE)
    before_renewed_end = await store.claim_due("w2", T0 + LEASE, 1, LEASE)
    after_renewed_end = await store.claim_due("w2", T0 + timedelta(minutes=9), 1, LEASE)

    assert before_renewed_end == []
    assert [m.id for m in after_renewed_end] == [held.id]


async def test_renew_after_takeover_ignored(store: SqlStore, factory: Factory) -> None:
    await enqueue(store, factory)
    [held] = await store.claim_due("w1", T0, 1, LEASE)
    [taken] = await store.claim_due("w2", T0 + LEASE, 1, LEASE)

    await store.renew_leases([held], T0 + LEASE, timedelta(hours=1))
    reclaimed = await store.claim_due("w3", T0 + 2 * LEASE, 1, LEASE)

    assert [m.version for m in reclaimed] == [taken.version + 1]


async def test_accept_keeps_lease(store: SqlStore, factory: Factory) -> None:
    await enqueue(store, factory)
    [held] = await store.claim_due("w1", T0, 1, LEASE)

    await store.save_transitions([accept(held, now=T0, event_id=factory.event_id())])

    assert await store.next_due_at() == T0 + LEASE


async def test_deliver_leaves_queue(store: SqlStore, factory: Factory) -> None:
    await enqueue(store, factory)
    [held] = await store.claim_due("w1", T0, 1, LEASE)
    accepted = accept(held, now=T0, event_id=factory.event_id())
    delivered = deliver(accepted.after, OK, now=T0, event_id=factory.event_id())

    stale = await store.save_transitions([accepted, delivered])

    assert stale == []
    assert await store.next_due_at() is None
    assert await store.claim_due("w1", T0 + timedelta(days=1), 10, LEASE) == []


async def test_deferred_due_at_next_attempt(store: SqlStore, factory: Factory) -> None:
    await enqueue(store, factory)
    [held] = await store.claim_due("w1", T0, 1, LEASE)
    accepted = accept(held, now=T0, event_id=factory.event_id())
    deferred = defer_or_bounce(
        accepted.after, BUSY, now=T0, event_id=factory.event_id()
    )
    await store.save_transitions([accepted, deferred])
    retry_at = deferred.after.next_attempt_at
    assert retry_at is not None

    early = await store.claim_due("w1", retry_at - timedelta(seconds=1), 1, LEASE)
    on_time = await store.claim_due("w1", retry_at, 1, LEASE)

    assert await store.next_due_at() == retry_at + LEASE
    assert early == []
    assert [m.status for m in on_time] == [MessageStatus.DEFERRED]


async def test_expiry_caps_due_time(store: SqlStore, factory: Factory) -> None:
    expires_at = T0 + timedelta(hours=1)
    await enqueue(
        store,
        factory,
        status=MessageStatus.SCHEDULED,
        scheduled_at=T0 + timedelta(hours=3),
        expires_at=expires_at,
    )

    assert await store.next_due_at() == expires_at


async def test_next_due_at_earliest(store: SqlStore, factory: Factory) -> None:
    assert await store.next_due_at() is None
    await enqueue(store, factory, priority=Priority.LOW, created_at=T0)
    await enqueue(
        store, factory, priority=Priority.HIGH, created_at=T0 + timedelta(minutes=1)
    )

    assert await store.next_due_at() == T0


async def test_cancelled_not_claimed(store: SqlStore, factory: Factory) -> None:
    message = await enqueue(store, factory)

    cancelled = cancel(message, now=T0, event_id=factory.event_id())
    stale = await store.save_transitions([cancelled])

    assert stale == []
    assert await store.claim_due("w1", T0 + timedelta(days=1), 10, LEASE) == []


async def test_bounce_adds_suppression(store: SqlStore, factory: Factory) -> None:
    first = await enqueue(store, factory)
    second = await enqueue(store, factory, recipient=first.recipient)
    claimed = await store.claim_due("w1", T0, 2, LEASE)
    accepted = [accept(m, now=T0, event_id=factory.event_id()) for m in claimed]
    bounced = [
        bounce(t.after, NO_MAILBOX, now=T0, event_id=factory.event_id())
        for t in accepted
    ]

    stale = await store.save_transitions([*accepted, *bounced])
    recipient = bounced[0].suppression.recipient if bounced[0].suppression else ""
    entries = await store.get_suppressions([recipient])

    assert stale == []
    assert second.recipient == first.recipient
    assert entries[recipient].reason is SuppressionReason.HARD_BOUNCE
    assert entries[recipient].message_id in {first.id, second.id}


async def test_create_transition_rejected(store: SqlStore, factory: Factory) -> None:
    with pytest.raises(ValueError, match="create_messages"):
        await store.save_transitions([factory.created(factory.message())])


async def test_concurrent_claimers_disjoint(
    store: SqlStore, second_store: SqlStore, factory: Factory
) -> None:
    for start in range(0, 2000, 500):
        batch = factory.batch(500, start=T0 + timedelta(seconds=start))
        await store.create_messages(batch, T0)
    claims: dict[str, list[str]] = {}
    now = T0 + timedelta(hours=1)

    async def claim_all(worker_id: str, target: SqlStore) -> None:
        claims[worker_id] = []
        while claimed := await target.claim_due(worker_id, now, 50, LEASE):
            claims[worker_id].extend(message.id for message in claimed)

    async with anyio.create_task_group() as group:
        for index in range(4):
            target = store if index % 2 == 0 else second_store
            group.start_soon(claim_all, f"w{index}", target)

    every_claim = [message_id for ids in claims.values() for message_id in ids]
    assert len(every_claim) == 2000
    assert len(set(every_claim)) == 2000
