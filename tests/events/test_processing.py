"""Event processing, retention and unsubscribes on the event log."""

from __future__ import annotations

import functools
from datetime import timedelta

import anyio
import httpx
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.events.analytics import AnalyticsQuery, Interval
from sendarix_backends.events.processor import EventProcessor
from sendarix_backends.events.query import EventQuery
from sendarix_backends.events.services import EventServices
from sendarix_backends.settings import Settings
from sendarix_backends.sql import SqlStore, events
from sendarix_core.clock import ManualClock
from sendarix_core.suppression import SuppressionReason
from sendarix_http.app import create_app
from tests.core.factories import T0
from tests.webhooks.conftest import api_client, message_body
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.anyio

_HOUR_OF_T0 = AnalyticsQuery(
    start=T0, end=T0 + timedelta(hours=1), interval=Interval.HOUR
)
# Nothing listens here; the tests only create deliveries, never send them.
_RECEIVER_URL = "http://127.0.0.1:9/hooks"


async def test_processing_takes_each_event_once(
    engine: Engine, services: EventServices
) -> None:
    for _ in range(3):
        await engine.send(message_body())
    await engine.deliver_due()

    assert await services.processor.drain() == 9
    assert await services.processor.drain() == 0


async def test_cleanup_deletes_old_processed_events(
    engine: Engine, services: EventServices, clock: ManualClock
) -> None:
    old = await engine.send(message_body())
    await services.processor.drain()
    clock.advance(timedelta(days=31))
    recent = await engine.send(message_body())

    deleted = await services.cleaner.run_once()

    remaining = (await services.search(EventQuery())).items
    assert deleted == 1
    assert [e.message_id for e in remaining] == [recent.message_id]
    assert old.message_id not in {e.message_id for e in remaining}


async def test_cleanup_keeps_unprocessed_events(
    engine: Engine, services: EventServices, clock: ManualClock
) -> None:
    await engine.send(message_body())
    clock.advance(timedelta(days=31))

    assert await services.cleaner.run_once() == 0
    assert len((await services.search(EventQuery())).items) == 1


async def test_cleanup_works_in_batches(
    engine: Engine, services: EventServices, clock: ManualClock
) -> None:
    from sendarix_backends.events.processor import RetentionCleaner

    for _ in range(5):
        await engine.send(message_body())
    await services.processor.drain()
    clock.advance(timedelta(days=31))
    cleaner = RetentionCleaner(
        storage=services.storage,
        clock=clock,
        retention=timedelta(days=30),
        batch_size=2,
    )

    assert await cleaner.run_once() == 5
    assert (await services.search(EventQuery())).items == []


async def test_unsubscribe_records_event_once(
    engine: Engine, services: EventServices
) -> None:
    entry = await engine.unsubscribe("Ada@Example.test")
    again = await engine.unsubscribe("ada@example.test")

    events = (
        await services.search(EventQuery(types=frozenset({"recipient.unsubscribed"})))
    ).items
    assert entry.reason is SuppressionReason.USER_UNSUBSCRIBED
    assert again.recipient == "ada@example.test"
    assert len(events) == 1
    assert events[0].message_id is None
    assert events[0].recipient == "ada@example.test"


async def test_unsubscribe_with_message_id(
    engine: Engine, services: EventServices
) -> None:
    sent = await engine.send(message_body())

    await engine.unsubscribe("ada@example.test", message_id=sent.message_id)

    [event] = (
        await services.search(
            EventQuery(
                message_id=sent.message_id, types=frozenset({"recipient.unsubscribed"})
            )
        )
    ).items
    assert event.message_id == sent.message_id


async def test_unsubscribe_over_suppression_keeps_reason(
    engine: Engine, services: EventServices
) -> None:
    await engine.suppress("ada@example.test", SuppressionReason.HARD_BOUNCE)

    entry = await engine.unsubscribe("ada@example.test")

    assert entry.reason is SuppressionReason.HARD_BOUNCE
    assert len((await services.search(EventQuery())).items) == 1


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/unsubscribes", {"recipient": "ada@example.test"}),
        (
            "/v1/suppressions",
            {"recipient": "ada@example.test", "reason": "user_unsubscribed"},
        ),
    ],
)
async def test_api_unsubscribe_fires_event(
    engine: Engine, path: str, body: dict[str, str]
) -> None:
    async with api_client(engine) as client:
        created = await client.post(path, json=body)
        listed = await client.get(
            "/v1/events", params={"type": "recipient.unsubscribed"}
        )

    assert created.status_code == 201
    [event] = listed.json()["data"]
    assert event["recipient"] == "ada@example.test"
    assert event["message_id"] is None


async def test_api_search_filters(engine: Engine) -> None:
    secret, _ = await engine.create_api_key("tests")
    sent = await engine.send(message_body(metadata={"user_id": "42"}, tags=["otp"]))
    await engine.send(message_body(metadata={"user_id": "7"}))
    transport = httpx.ASGITransport(app=create_app(engine))
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://sendarix.test",
        headers={"Authorization": f"Bearer {secret}"},
    ) as client:
        by_metadata = await client.get("/v1/events", params={"metadata[user_id]": "42"})
        by_tag = await client.get("/v1/events", params={"tag": "otp", "order": "asc"})
        paged = await client.get("/v1/events", params={"limit": 1})
        bad_type = await client.get("/v1/events", params={"type": "message.sent"})
        bad_order = await client.get("/v1/events", params={"order": "up"})

    assert [e["message_id"] for e in by_metadata.json()["data"]] == [sent.message_id]
    assert [e["message_id"] for e in by_tag.json()["data"]] == [sent.message_id]
    assert paged.json()["next_cursor"] is not None
    assert bad_type.status_code == 422
    assert bad_order.status_code == 422


async def test_cleanup_deletes_finished_deliveries(
    engine: Engine, services: EventServices, clock: ManualClock, receiver: Receiver
) -> None:
    receiver.start()
    endpoint = await services.webhooks.create(receiver.url)
    await engine.send(message_body())
    await services.processor.drain()
    await services.dispatcher.run_once()
    assert len((await services.webhooks.attempts(endpoint.id)).items) == 1

    clock.advance(timedelta(days=31))
    await services.cleaner.run_once()

    assert (await services.webhooks.attempts(endpoint.id)).items == []


async def _prepare(engine: Engine, clock: ManualClock) -> events.PreparedBatch | None:
    run = functools.partial(
        events.prepare_events,
        now=clock.now(),
        limit=100,
        retry_window=timedelta(hours=1),
    )
    return await _sql_store(engine).run_transaction("read_events", run, write=False)


async def _apply(
    engine: Engine, clock: ManualClock, prepared: events.PreparedBatch
) -> tuple[int, int]:
    run = functools.partial(events.apply_events, now=clock.now())
    return await _sql_store(engine).run_transaction(
        "process_events", run, prepared, write=True
    )


def _sql_store(engine: Engine) -> SqlStore:
    assert isinstance(engine.store, SqlStore)
    return engine.store


async def test_stale_batch_is_not_counted(
    engine: Engine, services: EventServices, clock: ManualClock
) -> None:
    await engine.send(message_body())
    prepared = await _prepare(engine, clock)
    assert prepared is not None
    assert len(prepared.sequences) == 1
    assert await services.processor.drain() == 1

    with pytest.raises(events.BatchChanged):
        await _apply(engine, clock, prepared)

    [bucket] = (await services.analytics(_HOUR_OF_T0))["data"]
    assert bucket["counts"]["queued"] == 1


async def test_batch_rereads_after_endpoint_change(
    engine: Engine, services: EventServices, clock: ManualClock
) -> None:
    await engine.send(message_body())
    prepared = await _prepare(engine, clock)
    assert prepared is not None
    assert prepared.deliveries == []
    async with api_client(engine) as client:
        created = await client.post("/v1/webhooks", json={"url": _RECEIVER_URL})
        assert created.status_code == 201

    with pytest.raises(events.BatchChanged):
        await _apply(engine, clock, prepared)
    # The endpoint was created after the event, so the processor's own read
    # of the batch creates no delivery for it.
    assert await services.processor.drain() == 1
    [bucket] = (await services.analytics(_HOUR_OF_T0))["data"]
    assert bucket["counts"]["queued"] == 1


async def test_prepared_batch_applies_once(
    engine: Engine, services: EventServices, clock: ManualClock
) -> None:
    for _ in range(2):
        await engine.send(message_body())
    prepared = await _prepare(engine, clock)
    assert prepared is not None

    assert await _apply(engine, clock, prepared) == (2, 0)
    with pytest.raises(events.BatchChanged):
        await _apply(engine, clock, prepared)
    assert await services.processor.drain() == 0
    [bucket] = (await services.analytics(_HOUR_OF_T0))["data"]
    assert bucket["counts"]["queued"] == 2


async def test_concurrent_processors_count_once(
    engine: Engine, services: EventServices, settings: Settings, clock: ManualClock
) -> None:
    for _ in range(60):
        await engine.send(message_body())
    totals: list[int] = []

    async def drain(processor: EventProcessor) -> None:
        totals.append(await processor.drain())

    async with Engine.from_settings(settings, clock=clock, workers=False) as other:
        assert other.events is not None
        small = [
            EventProcessor(
                storage=storage,
                clock=clock,
                retry_window=timedelta(hours=1),
                poll_interval=0.01,
                on_deliveries=lambda: None,
                batch_size=7,
            )
            for storage in (services.storage, other.events.storage)
        ]
        async with anyio.create_task_group() as group:
            for processor in small:
                group.start_soon(drain, processor)

    assert sum(totals) == 60
    [bucket] = (await services.analytics(_HOUR_OF_T0))["data"]
    assert bucket["counts"]["queued"] == 60
