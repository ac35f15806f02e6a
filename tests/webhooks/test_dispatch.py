"""Webhook deliveries to a real receiver process on loopback."""

from __future__ import annotations

import functools
import logging
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import attrs
import orjson
import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from sendarix_backends.engine import Engine
from sendarix_backends.events.services import EventServices
from sendarix_backends.settings import Settings
from sendarix_backends.webhooks.dispatcher import _is_struggling
from sendarix_backends.webhooks.signing import delivery_headers
from sendarix_core.clock import ManualClock
from sendarix_core.ports import WebhookResponse
from tests.conftest import DOMAIN
from tests.webhooks.conftest import message_body
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.anyio

DELIVERED_TYPES = ["message.queued", "message.accepted", "message.delivered"]


@pytest.fixture
def clock() -> ManualClock:
    # Receivers check webhook-timestamp against the wall clock.
    return ManualClock(datetime.now(UTC))


async def dispatch_all(services: EventServices) -> int:
    """Process events and post deliveries until nothing is due."""
    total = 0
    await services.processor.drain()
    while claimed := await services.dispatcher.run_once():
        total += claimed
    return total


async def test_receiver_gets_events_in_order(
    engine: Engine, services: EventServices, receiver: Receiver
) -> None:
    receiver.start()
    endpoint = await services.webhooks.create(receiver.url)
    sent = await engine.send(message_body())
    await engine.deliver_due()

    assert await dispatch_all(services) == 3
    requests = receiver.wait_for(3)

    webhook = Webhook(endpoint.secret)
    payloads = [webhook.verify(r["body"], r["headers"]) for r in requests]
    assert [p["type"] for p in payloads] == DELIVERED_TYPES
    assert {p["data"]["message_id"] for p in payloads} == {sent.message_id}
    assert [p["test_mode"] for p in payloads] == [False] * 3
    assert [p["data"]["type"] for p in payloads] == DELIVERED_TYPES


async def test_tampered_body_fails_verification(
    engine: Engine, services: EventServices, receiver: Receiver
) -> None:
    receiver.start()
    endpoint = await services.webhooks.create(receiver.url)
    await engine.send(message_body())
    await dispatch_all(services)
    [request] = receiver.wait_for(1)
    webhook = Webhook(endpoint.secret)

    with pytest.raises(WebhookVerificationError):
        webhook.verify(request["body"] + b" ", request["headers"])
    changed_time = {**request["headers"], "webhook-timestamp": "1"}
    with pytest.raises(WebhookVerificationError):
        webhook.verify(request["body"], changed_time)


async def test_old_timestamp_fails_verification(
    engine: Engine, services: EventServices, receiver: Receiver, clock: ManualClock
) -> None:
    receiver.start()
    endpoint = await services.webhooks.create(receiver.url)
    await engine.send(message_body())
    await dispatch_all(services)
    [request] = receiver.wait_for(1)

    old = delivery_headers(
        [endpoint.secret],
        request["headers"]["webhook-id"],
        clock.now() - timedelta(minutes=10),
        request["body"],
    )
    with pytest.raises(WebhookVerificationError, match="too old"):
        Webhook(endpoint.secret).verify(request["body"], old)


async def test_receiver_down_then_up(
    engine: Engine, services: EventServices, receiver: Receiver, clock: ManualClock
) -> None:
    endpoint = await services.webhooks.create(receiver.url)
    message_ids = []
    for number in range(3):
        sent = await engine.send(message_body(f"user{number}@{DOMAIN}"))
        message_ids.append(sent.message_id)
    await engine.deliver_due()
    await services.processor.drain()

    # Down: only the first event of each message is tried, and it fails.
    assert await services.dispatcher.run_once() == 3
    assert await services.dispatcher.run_once() == 0
    failed = (await services.webhooks.attempts(endpoint.id)).items
    assert len(failed) == 3
    assert {a.event_type for a in failed} == {"message.queued"}
    assert {a.outcome for a in failed} == {"retrying"}
    assert all(a.status_code is None and a.error for a in failed)

    receiver.start()
    clock.advance(timedelta(minutes=1))
    assert await dispatch_all(services) == 9
    requests = receiver.wait_for(9)

    ids = Counter(r["headers"]["webhook-id"] for r in requests)
    assert len(ids) == 9
    assert set(ids.values()) == {1}
    payloads = [orjson.loads(r["body"]) for r in requests]
    for message_id in message_ids:
        types = [p["type"] for p in payloads if p["data"]["message_id"] == message_id]
        assert types == DELIVERED_TYPES


async def test_signature_matches_receiver_secret(
    engine: Engine, services: EventServices, receiver: Receiver
) -> None:
    receiver.start()
    endpoint = await services.webhooks.create(
        receiver.url, event_types=["message.delivered"]
    )
    await engine.send(message_body())
    await engine.deliver_due()
    await dispatch_all(services)
    [request] = receiver.wait_for(1)

    payload = Webhook(endpoint.secret).verify(request["body"], request["headers"])
    assert payload["type"] == "message.delivered"
    assert request["headers"]["content-type"] == "application/json"


async def test_rotation_signs_with_both_secrets(
    engine: Engine, services: EventServices, receiver: Receiver
) -> None:
    receiver.start()
    endpoint = await services.webhooks.create(receiver.url)
    rotated = await services.webhooks.rotate_secret(endpoint.id)
    await engine.send(message_body())
    await dispatch_all(services)
    [request] = receiver.wait_for(1)

    assert len(request["headers"]["webhook-signature"].split(" ")) == 2
    assert Webhook(endpoint.secret).verify(request["body"], request["headers"])
    assert Webhook(rotated.secret).verify(request["body"], request["headers"])
    assert rotated.secret != endpoint.secret


async def test_second_rotation_keeps_first_secret(
    engine: Engine, services: EventServices, receiver: Receiver, clock: ManualClock
) -> None:
    receiver.start()
    endpoint = await services.webhooks.create(receiver.url)
    # A client that lost the response to its first rotation sends it again.
    first = await services.webhooks.rotate_secret(endpoint.id)
    second = await services.webhooks.rotate_secret(endpoint.id)
    await engine.send(message_body())
    await dispatch_all(services)
    [request] = receiver.wait_for(1)

    assert len(request["headers"]["webhook-signature"].split(" ")) == 3
    for secret in (endpoint.secret, first.secret, second.secret):
        assert Webhook(secret).verify(request["body"], request["headers"])
    assert second.previous_secret_expires_at == clock.now() + timedelta(hours=24)


async def test_rotated_secrets_expire_separately(
    services: EventServices, clock: ManualClock
) -> None:
    endpoint = await services.webhooks.create("http://127.0.0.1:9/")
    first = await services.webhooks.rotate_secret(endpoint.id)
    clock.advance(timedelta(hours=23))
    second = await services.webhooks.rotate_secret(endpoint.id)

    clock.advance(timedelta(hours=2))
    signing = second.signing_secrets(clock.now())

    assert signing == (second.secret, first.secret)


async def test_attempt_logged_without_secret(
    engine: Engine,
    services: EventServices,
    receiver: Receiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    receiver.start()
    endpoint = await services.webhooks.create(receiver.url)
    sent = await engine.send(message_body())

    with caplog.at_level(logging.INFO, logger="sendarix.webhooks"):
        await dispatch_all(services)

    [record] = [r for r in caplog.records if r.name == "sendarix.webhooks"]
    assert record.getMessage() == "webhook succeeded"
    assert record.__dict__["message_id"] == sent.message_id
    assert record.__dict__["endpoint_id"] == endpoint.id
    assert record.__dict__["status_code"] == 200
    assert record.__dict__["webhook_id"].startswith("whd_")
    secret_key = endpoint.secret.removeprefix("whsec_")
    assert all(secret_key not in str(value) for value in record.__dict__.values())


async def test_endpoint_share_refills_without_poll(
    settings: Settings, clock: ManualClock, receiver: Receiver
) -> None:
    # One endpoint may have half the dispatcher's posts in flight. Once its
    # share is full, a claim finds nothing, and the next claim must follow
    # the end of a post rather than the poll interval.
    slow_poll = attrs.evolve(settings, poll_interval=60)
    receiver.start(delay=0.05)
    async with Engine.from_settings(slow_poll, clock=clock, workers=False) as engine:
        services = engine.events
        assert services is not None
        await services.webhooks.create(receiver.url)
        for number in range(15):
            await engine.send(message_body(f"user{number}@{DOMAIN}"))
        await engine.deliver_due()
        await services.processor.drain()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(services.dispatcher.run)
            # Waiting for the poll, the 45 posts would take minutes.
            requests = await anyio.to_thread.run_sync(
                functools.partial(receiver.wait_for, 45, timeout=30)
            )
            tasks.cancel_scope.cancel()

    assert len(requests) == 45


async def test_failing_endpoint_gets_one_post(
    engine: Engine, services: EventServices, clock: ManualClock, tmp_path: Path
) -> None:
    # After its posts got 503, an endpoint gets one post at a time, so it
    # cannot fill the dispatcher's slots. A success gives it back half.
    failing = Receiver(tmp_path)
    failing.start(status=503)
    await services.webhooks.create(failing.url)
    for number in range(15):
        await engine.send(message_body(f"user{number}@{DOMAIN}"))
    await services.processor.drain()

    try:
        assert await services.dispatcher.run_once() == 10
        assert await services.dispatcher.run_once() == 1
    finally:
        failing.stop()

    recovered = Receiver(tmp_path, port=failing.port)
    recovered.start()
    try:
        assert await services.dispatcher.run_once() == 1
        # The 11 failed deliveries are due again, beside 3 never posted.
        clock.advance(timedelta(minutes=1))
        assert await services.dispatcher.run_once() == 10
    finally:
        recovered.stop()


@pytest.mark.parametrize(
    ("status_code", "struggling"),
    [(None, True), (429, True), (500, True), (503, True), (200, False), (400, False)],
)
def test_struggling_responses(status_code: int | None, struggling: bool) -> None:
    response = WebhookResponse(
        status_code=status_code,
        body_excerpt="",
        elapsed=timedelta(seconds=1),
        error="timed out after 5 s" if status_code is None else None,
    )

    assert _is_struggling(response) is struggling
