"""Retries, giving up, disabling a failing endpoint, and replays."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.events.query import EventQuery
from sendarix_backends.events.services import EventServices
from sendarix_backends.webhooks.model import AttemptOutcome, DeliveryStatus
from sendarix_backends.webhooks.schedule import DEFAULT_WEBHOOK_POLICY, WebhookPolicy
from sendarix_core.clock import ManualClock
from sendarix_core.errors import NotFoundError
from sendarix_core.states import EventType
from tests.core.factories import T0
from tests.support.server_process import free_port
from tests.webhooks.conftest import message_body
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.anyio

QUEUED_ONLY = [str(EventType.QUEUED)]


def closed_url() -> str:
    return f"http://127.0.0.1:{free_port()}/hooks"


async def fail_until_finished(
    services: EventServices, clock: ManualClock, endpoint_id: str
) -> None:
    """Post and advance the clock until the endpoint's deliveries have finished."""
    while await services.dispatcher.run_once() or not await _finished(
        services, endpoint_id
    ):
        clock.advance(timedelta(hours=5))


def test_delays_grow_with_jitter() -> None:
    policy = WebhookPolicy()
    until = T0 + timedelta(days=1)

    low = [policy.next_attempt_at(n, T0, until, 0.0) for n in (1, 2, 3, 10)]
    high = [policy.next_attempt_at(n, T0, until, 0.999) for n in (1, 2, 3, 10)]

    assert [when - T0 for when in low if when] == [
        timedelta(seconds=8),
        timedelta(seconds=24),
        timedelta(seconds=72),
        timedelta(hours=4) * 0.8,
    ]
    assert all(
        later and earlier and later > earlier
        for later, earlier in zip(high, low, strict=True)
    )


def test_policy_gives_up_after_window() -> None:
    policy = WebhookPolicy()
    until = T0 + policy.retry_window

    assert policy.next_attempt_at(3, until - timedelta(seconds=1), until, 0.5)
    assert policy.next_attempt_at(3, until, until, 0.5) is None


def test_huge_attempt_count_stays_capped() -> None:
    when = WebhookPolicy().next_attempt_at(10_000, T0, T0 + timedelta(days=1), 0.5)

    assert when == T0 + timedelta(hours=4)


async def test_delivery_fails_after_retry_window(
    engine: Engine, services: EventServices, clock: ManualClock
) -> None:
    endpoint = await services.webhooks.create(closed_url(), event_types=QUEUED_ONLY)
    await engine.send(message_body())
    await services.processor.drain()

    attempts = 0
    while attempts < 100:
        attempts += await services.dispatcher.run_once()
        page = await services.webhooks.attempts(endpoint.id, limit=100)
        if page.items[0].delivery_status is DeliveryStatus.FAILED:
            break
        clock.advance(timedelta(minutes=30))

    history = (await services.webhooks.attempts(endpoint.id, limit=100)).items
    assert history[0].outcome is AttemptOutcome.FAILED
    assert {a.outcome for a in history[1:]} == {AttemptOutcome.RETRYING}
    assert history[0].attempted_at - history[-1].attempted_at >= timedelta(hours=24)
    assert [a.attempt for a in history] == list(range(len(history), 0, -1))
    assert (await services.webhooks.get(endpoint.id)).enabled


async def test_endpoint_disabled_after_failing_days(
    engine: Engine, services: EventServices, clock: ManualClock
) -> None:
    endpoint = await services.webhooks.create(closed_url(), event_types=QUEUED_ONLY)
    await engine.send(message_body())
    await services.processor.drain()
    await services.dispatcher.run_once()

    clock.advance(DEFAULT_WEBHOOK_POLICY.disable_after)
    await engine.send(message_body())
    await services.processor.drain()
    # Two deliveries are due, but a failing endpoint gets one post at a time.
    assert await services.dispatcher.run_once() == 1

    disabled = await services.webhooks.get(endpoint.id)
    assert not disabled.enabled
    assert disabled.disabled_at == clock.now()
    assert disabled.disabled_reason is not None
    assert "failed" in disabled.disabled_reason
    assert await services.dispatcher.run_once() == 0
    found = await services.search(EventQuery(types=frozenset({"webhook.disabled"})))
    assert [event.data["webhook_id"] for event in found.items] == [endpoint.id]


async def test_success_resets_failure_window(
    engine: Engine, services: EventServices, clock: ManualClock, receiver: Receiver
) -> None:
    endpoint = await services.webhooks.create(receiver.url, event_types=QUEUED_ONLY)
    await engine.send(message_body())
    await services.processor.drain()
    await services.dispatcher.run_once()
    assert (await services.webhooks.get(endpoint.id)).failing_since == clock.now()

    receiver.start()
    clock.advance(timedelta(minutes=1))
    await services.dispatcher.run_once()

    assert (await services.webhooks.get(endpoint.id)).failing_since is None


async def test_enabling_clears_disabled_state(
    engine: Engine, services: EventServices, clock: ManualClock
) -> None:
    from sendarix_backends.webhooks.model import EndpointChanges

    endpoint = await services.webhooks.create(closed_url())
    await services.webhooks.update(endpoint.id, EndpointChanges(enabled=False))
    enabled = await services.webhooks.update(endpoint.id, EndpointChanges(enabled=True))

    assert enabled.enabled
    assert enabled.disabled_reason is None


async def test_replay_posts_failed_delivery_again(
    engine: Engine, services: EventServices, clock: ManualClock, receiver: Receiver
) -> None:
    endpoint = await services.webhooks.create(receiver.url, event_types=QUEUED_ONLY)
    await engine.send(message_body())
    await services.processor.drain()
    await fail_until_finished(services, clock, endpoint.id)
    [failed, *_] = (await services.webhooks.attempts(endpoint.id)).items
    assert failed.delivery_status is DeliveryStatus.FAILED

    receiver.start()
    await services.webhooks.replay(endpoint.id, failed.delivery_id)
    assert await services.dispatcher.run_once() == 1

    [request] = receiver.wait_for(1)
    assert request["headers"]["webhook-id"] == failed.delivery_id
    latest = (await services.webhooks.attempts(endpoint.id)).items[0]
    assert latest.delivery_status is DeliveryStatus.SUCCEEDED
    assert latest.status_code == 200
    assert latest.response == '{"received": true}'


async def test_replay_restarts_retry_schedule(
    engine: Engine, services: EventServices, clock: ManualClock
) -> None:
    endpoint = await services.webhooks.create(closed_url(), event_types=QUEUED_ONLY)
    await engine.send(message_body())
    await services.processor.drain()
    await fail_until_finished(services, clock, endpoint.id)
    [failed, *_] = (await services.webhooks.attempts(endpoint.id)).items

    await services.webhooks.replay(endpoint.id, failed.delivery_id)
    assert await services.dispatcher.run_once() == 1
    [replayed, *_] = (await services.webhooks.attempts(endpoint.id)).items
    clock.advance(DEFAULT_WEBHOOK_POLICY.first_delay * 1.2)
    retried_after_first_delay = await services.dispatcher.run_once()

    assert replayed.attempt == failed.attempt + 1
    assert replayed.outcome is AttemptOutcome.RETRYING
    assert retried_after_first_delay == 1
    [retried, *_] = (await services.webhooks.attempts(endpoint.id)).items
    assert retried.attempt == failed.attempt + 2


async def test_replay_posts_pending_delivery_now(
    engine: Engine, services: EventServices, receiver: Receiver
) -> None:
    endpoint = await services.webhooks.create(receiver.url, event_types=QUEUED_ONLY)
    await engine.send(message_body())
    await services.processor.drain()
    assert await services.dispatcher.run_once() == 1
    [retrying] = (await services.webhooks.attempts(endpoint.id)).items
    assert retrying.outcome is AttemptOutcome.RETRYING
    assert await services.dispatcher.run_once() == 0

    receiver.start()
    assert await services.webhooks.replay(endpoint.id, retrying.delivery_id)
    assert await services.dispatcher.run_once() == 1

    [request] = receiver.wait_for(1)
    assert request["headers"]["webhook-id"] == retrying.delivery_id
    latest = (await services.webhooks.attempts(endpoint.id)).items[0]
    assert latest.delivery_status is DeliveryStatus.SUCCEEDED


async def test_replay_leaves_posting_delivery(
    engine: Engine, services: EventServices, clock: ManualClock
) -> None:
    endpoint = await services.webhooks.create(closed_url(), event_types=QUEUED_ONLY)
    await engine.send(message_body())
    await services.processor.drain()
    [posting] = await services.storage.claim_deliveries(
        "other-worker", clock.now(), 10, timedelta(seconds=30)
    )

    queued = await services.webhooks.replay(endpoint.id, posting.id)

    assert queued is False
    assert await services.dispatcher.run_once() == 0


async def test_replay_range_queues_failed_only(
    engine: Engine, services: EventServices, clock: ManualClock, receiver: Receiver
) -> None:
    endpoint = await services.webhooks.create(receiver.url, event_types=QUEUED_ONLY)
    for _ in range(3):
        await engine.send(message_body())
    await services.processor.drain()
    await fail_until_finished(services, clock, endpoint.id)

    receiver.start()
    queued = await services.webhooks.replay_range(
        endpoint.id, T0 - timedelta(hours=1), T0 + timedelta(hours=1)
    )
    assert queued == 3
    # The endpoint's posts failed, so it gets one post until one succeeds.
    assert await services.dispatcher.run_once() == 1
    assert await services.dispatcher.run_once() == 2
    assert len(receiver.wait_for(3)) == 3
    again = await services.webhooks.replay_range(
        endpoint.id, T0 - timedelta(hours=1), T0 + timedelta(hours=1)
    )
    assert again == 0


async def test_replay_unknown_delivery_raises(
    engine: Engine, services: EventServices
) -> None:
    endpoint = await services.webhooks.create(closed_url())

    with pytest.raises(NotFoundError):
        await services.webhooks.replay(endpoint.id, "whd_unknown")


async def test_endpoint_gets_only_later_events(
    engine: Engine, services: EventServices, clock: ManualClock
) -> None:
    await engine.send(message_body())
    clock.advance(timedelta(seconds=1))
    endpoint = await services.webhooks.create(closed_url())
    await services.processor.drain()

    assert await services.dispatcher.run_once() == 0
    assert (await services.webhooks.attempts(endpoint.id)).items == []


async def test_deleted_endpoint_gets_nothing(
    engine: Engine, services: EventServices
) -> None:
    endpoint = await services.webhooks.create(closed_url())
    await engine.send(message_body())
    await services.processor.drain()
    await services.webhooks.delete(endpoint.id)

    assert await services.dispatcher.run_once() == 0
    with pytest.raises(NotFoundError):
        await services.webhooks.get(endpoint.id)


async def _finished(services: EventServices, endpoint_id: str) -> bool:
    items = (await services.webhooks.attempts(endpoint_id, limit=100)).items
    return bool(items) and all(
        a.delivery_status is not DeliveryStatus.PENDING for a in items
    )
