"""Leasing webhook deliveries: disjoint claims, lease expiry, message order."""

from __future__ import annotations

from datetime import datetime, timedelta

import anyio
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.events.services import EventServices
from sendarix_backends.webhooks.model import (
    AttemptOutcome,
    AttemptRecord,
    ClaimedDelivery,
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
    await services.storage.record_attempts(records, "a", clock.now(), timedelta(days=5))

    assert {delivery.endpoint_id for delivery in claimed} == {kept.id, deleted.id}
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
