"""Leasing webhook deliveries: disjoint claims, lease expiry, message order."""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

import anyio
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.events.services import EventServices
from sendarix_backends.webhooks.model import (
    AttemptOutcome,
    AttemptRecord,
    ClaimedDelivery,
    EndpointChanges,
    EndpointShare,
)
from sendarix_core.clock import ManualClock
from tests.conftest import DOMAIN
from tests.support.lock_holder import hold_lock
from tests.support.server_process import free_port
from tests.webhooks.conftest import message_body

pytestmark = pytest.mark.anyio

LEASE = timedelta(seconds=30)


async def queued_deliveries(
    engine: Engine, services: EventServices, count: int
) -> None:
    await services.webhooks.create(
        f"http://127.0.0.1:{free_port()}/", event_types=["message.queued"]
    )
    for number in range(count):
        await engine.send(message_body(f"user{number}@{DOMAIN}"))
    await services.processor.drain()


async def test_concurrent_claims_disjoint(
    engine: Engine, services: EventServices, clock: ManualClock
) -> None:
    await queued_deliveries(engine, services, 10)
    claims: dict[str, list[str]] = {}

    async def claim(worker: str) -> None:
        claimed = await services.storage.claim_deliveries(worker, clock.now(), 6, LEASE)
        claims[worker] = [delivery.id for delivery in claimed]

    async with anyio.create_task_group() as group:
        group.start_soon(claim, "a")
        group.start_soon(claim, "b")

    assert not set(claims["a"]) & set(claims["b"])
    assert len(claims["a"]) + len(claims["b"]) == 10


async def test_expired_lease_claimable_again(
    engine: Engine, services: EventServices, clock: ManualClock
) -> None:
    await queued_deliveries(engine, services, 2)
    first = await services.storage.claim_deliveries("a", clock.now(), 10, LEASE)

    assert await services.storage.claim_deliveries("b", clock.now(), 10, LEASE) == []
    clock.advance(LEASE + timedelta(seconds=1))
    again = await services.storage.claim_deliveries("b", clock.now(), 10, LEASE)

    assert {d.id for d in again} == {d.id for d in first}
    assert {d.attempts for d in again} == {0}


async def test_later_event_waits_for_earlier(
    engine: Engine, services: EventServices, clock: ManualClock
) -> None:
    await services.webhooks.create(f"http://127.0.0.1:{free_port()}/")
    sent = await engine.send(message_body())
    await engine.deliver_due()
    await services.processor.drain()

    claimed = await services.storage.claim_deliveries("a", clock.now(), 10, LEASE)
    clock.advance(LEASE + timedelta(seconds=1))
    reclaimed = await services.storage.claim_deliveries("b", clock.now(), 10, LEASE)

    assert [d.event_type for d in claimed] == ["message.queued"]
    assert [d.message_id for d in claimed] == [sent.message_id]
    assert [d.event_type for d in reclaimed] == ["message.queued"]


# The writer lock file exists on SQLite only.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_idle_claim_skips_write_lock(
    engine: Engine, services: EventServices, clock: ManualClock
) -> None:
    database = engine.settings.database_url.removeprefix("sqlite:///")
    holder = hold_lock(f"{database}-lock")
    try:
        # Nothing is due, so the claim reads and returns without waiting for
        # the lock that the other process holds.
        with anyio.fail_after(10):
            claimed = await services.storage.claim_deliveries(
                "a", clock.now(), 10, LEASE
            )
    finally:
        holder.kill()
        holder.wait(timeout=30)

    assert claimed == []


async def test_attempt_of_deleted_endpoint_dropped(
    engine: Engine, services: EventServices, clock: ManualClock
) -> None:
    kept = await services.webhooks.create(
        f"http://127.0.0.1:{free_port()}/kept", event_types=["message.queued"]
    )
    deleted = await services.webhooks.create(
        f"http://127.0.0.1:{free_port()}/deleted", event_types=["message.queued"]
    )
    await engine.send(message_body())
    await services.processor.drain()
    claimed = await services.storage.claim_deliveries("a", clock.now(), 10, LEASE)
    # The endpoint is deleted while its delivery is being posted.
    await services.webhooks.delete(deleted.id)

    records = [succeeded(delivery, clock.now()) for delivery in claimed]
    saved = await services.storage.record_attempts(
        records, "a", clock.now(), timedelta(days=5)
    )

    assert {delivery.endpoint_id for delivery in claimed} == {kept.id, deleted.id}
    assert saved.dropped == {d.id for d in claimed if d.endpoint_id == deleted.id}
    attempts = await services.webhooks.attempts(kept.id)
    assert [attempt.outcome for attempt in attempts.items] == ["succeeded"]
    assert await services.storage.claim_deliveries("b", clock.now(), 10, LEASE) == []


def succeeded(delivery: ClaimedDelivery, now: datetime) -> AttemptRecord:
    return AttemptRecord(
        delivery_id=delivery.id,
        endpoint_id=delivery.endpoint_id,
        attempt=delivery.attempts + 1,
        attempted_at=now,
        status_code=204,
        latency=timedelta(milliseconds=5),
        response="",
        error=None,
        outcome=AttemptOutcome.SUCCEEDED,
    )


async def backlog_and_one_other(
    engine: Engine, services: EventServices, clock: ManualClock, backlog_size: int = 5
) -> tuple[str, str]:
    """Queue ``backlog_size`` deliveries for one endpoint, then one for
    another; return the two endpoint ids."""
    backlog = await services.webhooks.create(
        f"http://127.0.0.1:{free_port()}/backlog", event_types=["message.queued"]
    )
    for number in range(backlog_size):
        await engine.send(message_body(f"user{number}@{DOMAIN}"))
    await services.processor.drain()
    clock.advance(timedelta(seconds=1))
    # The next message is not bounced, so the backlog endpoint gets no delivery.
    bounced_only = EndpointChanges(event_types=["message.bounced"])
    await services.webhooks.update(backlog.id, bounced_only)
    other = await services.webhooks.create(
        f"http://127.0.0.1:{free_port()}/other", event_types=["message.queued"]
    )
    await engine.send(message_body())
    await services.processor.drain()
    return backlog.id, other.id


async def test_claim_leaves_share_to_others(
    engine: Engine, services: EventServices, clock: ManualClock
) -> None:
    backlog, other = await backlog_and_one_other(engine, services, clock)
    share = EndpointShare(per_endpoint=2, in_flight={})

    claimed = await services.storage.claim_deliveries("a", clock.now(), 4, LEASE, share)

    assert Counter(d.endpoint_id for d in claimed) == {backlog: 2, other: 1}


async def test_claim_skips_full_endpoint(
    engine: Engine, services: EventServices, clock: ManualClock
) -> None:
    backlog, other = await backlog_and_one_other(engine, services, clock)
    share = EndpointShare(per_endpoint=2, in_flight={backlog: 2})

    claimed = await services.storage.claim_deliveries("a", clock.now(), 4, LEASE, share)

    assert [d.endpoint_id for d in claimed] == [other]


async def test_claim_applies_lower_limit(
    engine: Engine, services: EventServices, clock: ManualClock
) -> None:
    backlog, other = await backlog_and_one_other(engine, services, clock)
    share = EndpointShare(per_endpoint=2, in_flight={}, limits={backlog: 1})

    claimed = await services.storage.claim_deliveries("a", clock.now(), 4, LEASE, share)

    assert Counter(d.endpoint_id for d in claimed) == {backlog: 1, other: 1}


async def test_claim_skips_endpoint_at_lower_limit(
    engine: Engine, services: EventServices, clock: ManualClock
) -> None:
    backlog, other = await backlog_and_one_other(engine, services, clock)
    share = EndpointShare(per_endpoint=2, in_flight={backlog: 1}, limits={backlog: 1})

    claimed = await services.storage.claim_deliveries("a", clock.now(), 4, LEASE, share)

    assert [d.endpoint_id for d in claimed] == [other]


async def test_claim_without_share_oldest_first(
    engine: Engine, services: EventServices, clock: ManualClock
) -> None:
    backlog, _ = await backlog_and_one_other(engine, services, clock)

    claimed = await services.storage.claim_deliveries("a", clock.now(), 4, LEASE)

    assert [d.endpoint_id for d in claimed] == [backlog] * 4


async def test_dispatcher_posts_behind_backlog(
    engine: Engine, services: EventServices, clock: ManualClock
) -> None:
    backlog, other = await backlog_and_one_other(engine, services, clock, 25)

    # Twenty posts at once, of which the backlog's endpoint gets half.
    assert await services.dispatcher.run_once() == 11

    assert len((await services.webhooks.attempts(backlog, limit=100)).items) == 10
    assert len((await services.webhooks.attempts(other)).items) == 1
