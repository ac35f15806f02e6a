"""Which endpoints an event goes to when endpoints change before processing."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import pytest
import sqlalchemy as sa

from sendarix_backends.engine import Engine
from sendarix_backends.events.services import EventServices
from sendarix_backends.sql import webhooks
from sendarix_backends.webhooks.model import EndpointChanges, WebhookEndpoint
from sendarix_backends.webhooks.schedule import DEFAULT_WEBHOOK_POLICY
from sendarix_core.clock import ManualClock
from sendarix_core.states import EventType
from tests.conftest import DOMAIN
from tests.support.server_process import free_port
from tests.webhooks.conftest import message_body
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.anyio

QUEUED_ONLY = [str(EventType.QUEUED)]


def posted_message_ids(receiver: Receiver) -> list[str]:
    return [
        json.loads(request["body"])["data"]["message_id"]
        for request in receiver.requests()
    ]


async def test_events_change_applies_to_later_events(
    engine: Engine, services: EventServices, clock: ManualClock, receiver: Receiver
) -> None:
    receiver.start()
    endpoint = await services.webhooks.create(receiver.url, event_types=QUEUED_ONLY)
    before = await engine.send(message_body(f"before@{DOMAIN}"))
    clock.advance(timedelta(seconds=1))
    await services.webhooks.update(
        endpoint.id, EndpointChanges(event_types=(str(EventType.DELIVERED),))
    )
    clock.advance(timedelta(seconds=1))
    await engine.send(message_body(f"after@{DOMAIN}"))

    await services.processor.drain()
    posted = await services.dispatcher.run_once()

    assert posted == 1
    receiver.wait_for(1)
    assert posted_message_ids(receiver) == [before.message_id]


async def test_disabling_keeps_earlier_events(
    engine: Engine, services: EventServices, clock: ManualClock, receiver: Receiver
) -> None:
    receiver.start()
    endpoint = await services.webhooks.create(receiver.url, event_types=QUEUED_ONLY)
    before = await engine.send(message_body(f"before@{DOMAIN}"))
    clock.advance(timedelta(seconds=1))
    await services.webhooks.update(endpoint.id, EndpointChanges(enabled=False))
    clock.advance(timedelta(seconds=1))
    await engine.send(message_body(f"while-disabled@{DOMAIN}"))
    await services.processor.drain()
    posted_while_disabled = await services.dispatcher.run_once()

    clock.advance(timedelta(seconds=1))
    await services.webhooks.update(endpoint.id, EndpointChanges(enabled=True))
    clock.advance(timedelta(seconds=1))
    after = await engine.send(message_body(f"after@{DOMAIN}"))
    await services.processor.drain()
    posted_after_enabling = await services.dispatcher.run_once()

    assert posted_while_disabled == 0
    assert posted_after_enabling == 2
    receiver.wait_for(2)
    assert sorted(posted_message_ids(receiver)) == sorted(
        [before.message_id, after.message_id]
    )


async def test_disabled_endpoint_skipped_when_never_enabled_since(
    engine: Engine, services: EventServices, clock: ManualClock, receiver: Receiver
) -> None:
    endpoint = await services.webhooks.create(receiver.url, event_types=QUEUED_ONLY)
    clock.advance(timedelta(seconds=1))
    await services.webhooks.update(endpoint.id, EndpointChanges(enabled=False))
    clock.advance(timedelta(seconds=1))
    await engine.send(message_body())
    await services.processor.drain()
    await services.webhooks.update(endpoint.id, EndpointChanges(enabled=True))

    assert await services.dispatcher.run_once() == 0


async def test_old_subscription_changes_dropped(
    services: EventServices, clock: ManualClock
) -> None:
    endpoint = await services.webhooks.create("http://127.0.0.1:9/")
    await services.webhooks.update(endpoint.id, EndpointChanges(enabled=False))
    clock.advance(timedelta(hours=2))

    updated = await services.webhooks.update(endpoint.id, EndpointChanges(enabled=True))

    [period] = updated.earlier_subscriptions
    assert period.until == clock.now()
    assert period.enabled is False


async def failing_endpoint(
    engine: Engine, services: EventServices, clock: ManualClock
) -> WebhookEndpoint:
    """Create an endpoint that has failed for ``disable_after``, with one
    delivery due whose failure disables it."""
    endpoint = await services.webhooks.create(
        f"http://127.0.0.1:{free_port()}/hooks", event_types=QUEUED_ONLY
    )
    await engine.send(message_body())
    await services.processor.drain()
    await services.dispatcher.run_once()
    clock.advance(DEFAULT_WEBHOOK_POLICY.disable_after)
    await engine.send(message_body(f"later@{DOMAIN}"))
    await services.processor.drain()
    return endpoint


async def test_disabling_for_failures_keeps_earlier_events(
    engine: Engine, services: EventServices, clock: ManualClock
) -> None:
    endpoint = await failing_endpoint(engine, services, clock)
    await services.dispatcher.run_once()

    disabled = await services.webhooks.get(endpoint.id)

    [period] = disabled.earlier_subscriptions
    assert period.enabled is True
    assert period.until == disabled.disabled_at
    assert disabled.receives(str(EventType.QUEUED), period.until - timedelta(seconds=1))
    assert not disabled.receives(str(EventType.QUEUED), clock.now())


async def test_disabling_for_failures_keeps_concurrent_update(
    engine: Engine, services: EventServices, clock: ManualClock
) -> None:
    endpoint = await failing_endpoint(engine, services, clock)
    disabled_at = clock.now()
    updated_at = disabled_at + timedelta(seconds=1)
    store = services.storage._store
    changes = EndpointChanges(event_types=(str(EventType.DELIVERED),))
    updates: list[threading.Thread] = []

    def update() -> None:
        store._transaction(
            "update_webhook",
            True,
            webhooks.update_endpoint,
            endpoint.id,
            changes,
            updated_at,
        )

    def update_after_read(
        _connection: object, _cursor: object, statement: str, *_rest: object
    ) -> None:
        # Commits an update between the read of the failing endpoints and
        # their update, unless the read locked them.
        if updates or "failing_since <=" not in statement:
            return
        updates.append(threading.Thread(target=update))
        updates[0].start()
        updates[0].join(timeout=1)

    sa.event.listen(store._engine, "after_cursor_execute", update_after_read)
    try:
        await services.dispatcher.run_once()
    finally:
        sa.event.remove(store._engine, "after_cursor_execute", update_after_read)
    [update_thread] = updates
    update_thread.join(timeout=30)

    stored = await services.webhooks.get(endpoint.id)

    assert stored.enabled is False
    assert stored.event_types == (str(EventType.DELIVERED),)
    periods = [(p.until, p.enabled) for p in stored.earlier_subscriptions]
    assert periods == [(disabled_at, True), (updated_at, False)]
