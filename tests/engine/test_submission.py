"""Submission through the engine: idempotency, leases, test keys."""

from __future__ import annotations

import logging
from datetime import timedelta

import anyio
import pytest

from sendarix_backends.engine import Engine
from sendarix_core.clock import ManualClock
from sendarix_core.errors import IdempotencyConflictError, ValidationError
from sendarix_core.keys import Environment
from sendarix_core.lifecycle import Transition, accept, deliver
from sendarix_core.model import SmtpReply
from sendarix_core.ports import MessageQuery
from sendarix_core.states import MessageStatus
from tests.engine.conftest import message_body
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.anyio


async def count_messages(engine: Engine) -> int:
    page = await engine.list_messages(MessageQuery(limit=100))
    return len(page.items)


async def test_replay_returns_first_response(engine: Engine) -> None:
    first = await engine.send(message_body(), idempotency_key="9b1d")
    second = await engine.send(message_body(), idempotency_key="9b1d")

    assert second.replayed
    assert second.message_id == first.message_id
    assert second.response == first.response
    assert await count_messages(engine) == 1


async def test_body_header_key_replays(engine: Engine) -> None:
    body = message_body(headers={"X-Idempotency-Key": "order-42"})
    first = await engine.send(body)
    second = await engine.send(body)
    assert second.replayed
    assert second.message_id == first.message_id


async def test_key_reused_with_other_body(engine: Engine) -> None:
    await engine.send(message_body(), idempotency_key="9b1d")
    with pytest.raises(IdempotencyConflictError):
        await engine.send(message_body(subject="Another"), idempotency_key="9b1d")
    assert await count_messages(engine) == 1


async def test_null_field_replays_as_absent(engine: Engine) -> None:
    first = await engine.send(message_body(), idempotency_key="9b1d")
    second = await engine.send(
        message_body(priority=None, tags=None), idempotency_key="9b1d"
    )

    assert second.replayed
    assert second.message_id == first.message_id
    assert await count_messages(engine) == 1


async def test_batch_null_fields_replay_as_absent(engine: Engine) -> None:
    body = {"messages": [message_body()]}
    with_nulls = {"mode": None, "messages": [message_body(priority=None)]}

    first = await engine.send_batch(body, api_key=None, idempotency_key="b1")
    second = await engine.send_batch(with_nulls, api_key=None, idempotency_key="b1")

    assert second.replayed
    assert second.response == first.response
    assert await count_messages(engine) == 1


async def test_key_usable_after_window(engine: Engine, clock: ManualClock) -> None:
    first = await engine.send(message_body(), idempotency_key="9b1d")
    clock.advance(timedelta(hours=24))
    second = await engine.send(message_body(), idempotency_key="9b1d")
    assert not second.replayed
    assert second.message_id != first.message_id


async def test_concurrent_identical_requests(engine: Engine) -> None:
    results = []

    async def submit() -> None:
        results.append(await engine.send(message_body(), idempotency_key="same"))

    async with anyio.create_task_group() as task_group:
        for _ in range(20):
            task_group.start_soon(submit)

    assert len({result.message_id for result in results}) == 1
    assert sum(not result.replayed for result in results) == 1
    assert await count_messages(engine) == 1


async def test_invalid_request_stores_nothing(engine: Engine) -> None:
    with pytest.raises(ValidationError) as caught:
        await engine.send(message_body(recipient="bob@", subject="a\r\nBcc: x@y.z"))
    fields = {error.field for error in caught.value.errors}
    assert fields == {"recipient", "subject"}
    assert await count_messages(engine) == 0


async def test_test_key_uses_sink(engine: Engine, smtp_server: SmtpServer) -> None:
    _, key = await engine.create_api_key("ci", environment=Environment.TEST)
    result = await engine.send(message_body(), api_key=key)
    await engine.deliver_due()

    message = await engine.get_message(result.message_id)
    assert message.status == MessageStatus.DELIVERED
    assert message.test_mode
    assert message.last_reply is not None
    assert message.last_reply.mx_host == "sink"
    assert smtp_server.connections == 0


async def test_sender_domain_restriction(engine: Engine) -> None:
    _, key = await engine.create_api_key("billing", sender_domains=["billing.example"])
    with pytest.raises(ValidationError) as caught:
        await engine.send(message_body(), api_key=key)
    assert caught.value.errors[0].code == "sender_domain_not_allowed"


async def test_dead_worker_lease_taken_over(
    engine: Engine,
    smtp_server: SmtpServer,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    accepted = await _accepted_by("dead-worker", engine, clock)
    message_id = accepted.after.id

    assert await engine.deliver_due() == 0
    clock.advance(engine.lease)
    with caplog.at_level(logging.INFO, logger="sendarix.delivery"):
        assert await engine.deliver_due() == 1

    message = await engine.get_message(message_id)
    assert message.status == MessageStatus.DELIVERED
    assert len(smtp_server.messages) == 1
    types = [str(event.type) for event in await engine.list_events(message_id)]
    assert types == ["message.queued", "message.accepted", "message.delivered"]
    actions = [getattr(record, "action", None) for record in caplog.records]
    assert "lease_taken_over" in actions

    reply = SmtpReply(code=250, enhanced_code="2.0.0", text="late", mx_host="mx")
    late = deliver(
        accepted.after, reply, now=clock.now(), event_id=engine.new_id("evt")
    )
    assert await engine.store.save_transitions([late]) == [message_id]


async def test_released_lease_resumed_without_warning(
    engine: Engine,
    smtp_server: SmtpServer,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    accepted = await _accepted_by("stopping", engine, clock)

    # What a worker stopped with SIGTERM does with deliveries it cancelled.
    await engine.queue.renew_leases([accepted.after], clock.now(), timedelta(0))
    with caplog.at_level(logging.INFO, logger="sendarix.delivery"):
        assert await engine.deliver_due() == 1

    message = await engine.get_message(accepted.after.id)
    assert message.status == MessageStatus.DELIVERED
    assert len(smtp_server.messages) == 1
    actions = [getattr(record, "action", None) for record in caplog.records]
    assert "lease_released" in actions
    assert "lease_taken_over" not in actions


async def _accepted_by(worker: str, engine: Engine, clock: ManualClock) -> Transition:
    """Queue a message, claim it as ``worker`` and save it as accepted."""
    result = await engine.send(message_body())
    claimed = await engine.queue.claim_due(worker, clock.now(), 10, engine.lease)
    assert [message.id for message in claimed] == [result.message_id]
    accepted = accept(claimed[0], now=clock.now(), event_id=engine.new_id("evt"))
    assert await engine.store.save_transitions([accepted]) == []
    return accepted
