"""Queue control through the engine and the HTTP API: counts, pauses,
parking, retries and cancellations, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest

from sendarix_backends.engine import Engine
from sendarix_core import lifecycle
from sendarix_core.clock import ManualClock
from sendarix_core.errors import NotFoundError, ValidationError
from sendarix_core.lifecycle import Transition
from sendarix_core.states import MessageStatus
from sendarix_http.app import create_app
from tests.engine.conftest import DOMAIN, message_body
from tests.pacing.conftest import EXAMPLE_SITE, OTHER, OTHER_SITE
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(engine: Engine) -> AsyncIterator[httpx.AsyncClient]:
    secret, _ = await engine.create_api_key("queue tests")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(engine)),
        base_url="http://sendarix.test",
        headers={"Authorization": f"Bearer {secret}"},
    ) as opened:
        yield opened


async def status_of(engine: Engine, message_id: str) -> MessageStatus:
    return (await engine.get_message(message_id)).status


async def event_types(engine: Engine, message_id: str) -> list[str]:
    return [str(event.type) for event in await engine.list_events(message_id)]


async def test_paused_tier_waits(engine: Engine, smtp_server: SmtpServer) -> None:
    queue = engine.control.queue
    await queue.pause({"priority": "low"})
    low = await engine.send(message_body(priority="low"))
    high = await engine.send(message_body(priority="high"))

    await engine.deliver_due()

    assert await status_of(engine, high.message_id) == MessageStatus.DELIVERED
    assert await status_of(engine, low.message_id) == MessageStatus.QUEUED
    await queue.resume({"priority": "low"})
    await engine.deliver_due()
    assert await status_of(engine, low.message_id) == MessageStatus.DELIVERED


async def test_paused_tier_expires_on_resume(
    engine: Engine, clock: ManualClock, smtp_server: SmtpServer
) -> None:
    queue = engine.control.queue
    await queue.pause({"priority": "low"})
    deadline = clock.now() + timedelta(minutes=5)
    body = message_body(priority="low", expires_at=deadline.isoformat())
    low = await engine.send(body)
    clock.advance(timedelta(minutes=10))

    await engine.deliver_due()
    paused_status = await status_of(engine, low.message_id)
    await queue.resume({"priority": "low"})
    await engine.deliver_due()

    # Documented in docs/limitations.md: claims skip a paused tier, so the
    # message expires only at the first claim after the resume.
    assert paused_status == MessageStatus.QUEUED
    assert await status_of(engine, low.message_id) == MessageStatus.EXPIRED
    assert "message.delivered" not in await event_types(engine, low.message_id)
    expired = (await engine.list_events(low.message_id))[-1]
    assert expired.created_at == clock.now()


async def test_paused_site_parks(engine: Engine, smtp_server: SmtpServer) -> None:
    queue = engine.control.queue
    await queue.pause({"site": EXAMPLE_SITE})
    parked = await engine.send(message_body())
    other = await engine.send(message_body(f"ada@{OTHER}"))

    await engine.deliver_due()

    assert await status_of(engine, other.message_id) == MessageStatus.DELIVERED
    assert await status_of(engine, parked.message_id) == MessageStatus.QUEUED
    assert await event_types(engine, parked.message_id) == ["message.queued"]
    assert await engine.deliver_due() == 0
    view = await queue.view()
    [site] = [item for item in view.sites if item.site == EXAMPLE_SITE]
    assert site.parked == 1
    assert site.paused

    _, _, unparked = await queue.resume({"site": EXAMPLE_SITE})
    assert unparked == 1
    await engine.deliver_due()
    assert await status_of(engine, parked.message_id) == MessageStatus.DELIVERED


async def test_cancelled_parked_message_not_counted(engine: Engine) -> None:
    queue = engine.control.queue
    await queue.pause({"site": EXAMPLE_SITE})
    kept = await engine.send(message_body())
    cancelled = await engine.send(message_body())
    await engine.deliver_due()

    await engine.cancel(cancelled.message_id)
    view = await queue.view()

    [site] = [item for item in view.sites if item.site == EXAMPLE_SITE]
    assert site.parked == 1
    assert await status_of(engine, kept.message_id) == MessageStatus.QUEUED


async def test_parked_message_expires(
    engine: Engine, smtp_server: SmtpServer, clock: ManualClock
) -> None:
    await engine.control.queue.pause({"site": EXAMPLE_SITE})
    deadline = clock.now() + timedelta(minutes=5)
    result = await engine.send(message_body(expires_at=deadline.isoformat()))
    await engine.deliver_due()

    clock.advance(timedelta(minutes=5))
    assert await engine.deliver_due() == 1

    assert await status_of(engine, result.message_id) == MessageStatus.EXPIRED
    assert smtp_server.messages == []


async def test_resume_unknown_pause(engine: Engine) -> None:
    with pytest.raises(NotFoundError):
        await engine.control.queue.resume({"priority": "normal"})


async def test_pause_needs_one_target(engine: Engine) -> None:
    with pytest.raises(ValidationError):
        await engine.control.queue.pause({"priority": "low", "site": "x"})


async def test_retry_deferred_now(
    engine: Engine, smtp_server: SmtpServer, clock: ManualClock
) -> None:
    smtp_server.reply_with("451 4.3.0 mailbox busy")
    deferred = await engine.send(message_body())
    await engine.deliver_due()
    assert await status_of(engine, deferred.message_id) == MessageStatus.DEFERRED

    counted = await engine.control.queue.retry({"dry_run": True})
    retried = await engine.control.queue.retry({"filter": {"recipient_domain": DOMAIN}})
    await engine.deliver_due()

    assert counted.count == 1
    assert retried.count == 1
    assert await status_of(engine, deferred.message_id) == MessageStatus.DELIVERED


async def test_cancel_by_filter(engine: Engine) -> None:
    queue = engine.control.queue
    tagged = [
        (await engine.send(message_body(tags=["newsletter"]))).message_id
        for _ in range(3)
    ]
    kept = await engine.send(message_body(tags=["otp"]))
    body = {"filter": {"tag": ["newsletter"], "status": "queued"}}

    dry = await queue.cancel({**body, "dry_run": True})
    assert dry.count == 3
    assert dry.dry_run
    assert await status_of(engine, tagged[0]) == MessageStatus.QUEUED

    done = await queue.cancel(body)
    assert done.count == 3
    assert not done.more
    for message_id in tagged:
        assert await status_of(engine, message_id) == MessageStatus.CANCELLED
        assert (await event_types(engine, message_id))[-1] == "message.cancelled"
    assert await status_of(engine, kept.message_id) == MessageStatus.QUEUED


async def test_cancel_limit_reports_more(engine: Engine) -> None:
    for _ in range(3):
        await engine.send(message_body())

    outcome = await engine.control.queue.cancel({"filter": {}, "limit": 2})

    assert outcome.count == 2
    assert outcome.more


async def test_cancel_reports_more_after_lost_races(
    engine: Engine, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    for _ in range(12):
        await engine.send(message_body())
    save = engine.store.save_transitions

    async def cancelled_elsewhere_first(transitions: list[Transition]) -> list[str]:
        # Another node cancels the same messages first, so every round of
        # this call finds its transitions stale.
        now = clock.now()
        await save(
            [
                lifecycle.cancel(t.before, now=now, event_id=engine.new_id("evt"))
                for t in transitions
                if t.before is not None
            ]
        )
        return await save(transitions)

    monkeypatch.setattr(engine.store, "save_transitions", cancelled_elsewhere_first)
    outcome = await engine.control.queue.cancel({"filter": {}, "limit": 1})

    assert outcome.count == 0
    assert outcome.more


@pytest.mark.parametrize("body", [{}, {"filter": None}, {"dry_run": False}])
async def test_cancel_needs_filter(engine: Engine, body: dict[str, object]) -> None:
    sent = await engine.send(message_body())

    with pytest.raises(ValidationError) as caught:
        await engine.control.queue.cancel(body)

    assert caught.value.errors[0].field == "filter"
    assert caught.value.errors[0].code == "missing_field"
    assert await status_of(engine, sent.message_id) == MessageStatus.QUEUED


async def test_cancel_rejects_deferred_status(engine: Engine) -> None:
    with pytest.raises(ValidationError) as caught:
        await engine.control.queue.cancel({"filter": {"status": ["deferred"]}})

    assert caught.value.errors[0].code == "invalid_status"


async def test_cancel_by_site(engine: Engine, smtp_server: SmtpServer) -> None:
    await engine.control.queue.pause({"site": OTHER_SITE})
    await engine.send(message_body(f"ada@{OTHER}"))
    await engine.deliver_due()
    kept = await engine.send(message_body())

    outcome = await engine.control.queue.cancel({"filter": {"site": OTHER_SITE}})

    assert outcome.count == 1
    assert await status_of(engine, kept.message_id) == MessageStatus.QUEUED


async def test_queue_view_counts(
    client: httpx.AsyncClient, engine: Engine, smtp_server: SmtpServer
) -> None:
    smtp_server.reply_with("451 4.3.0 mailbox busy")
    await engine.send(message_body(priority="high"))
    await engine.deliver_due()
    await engine.send(message_body(priority="low"))
    await engine.send(message_body(f"ada@{OTHER}", priority="low"))

    response = await client.get("/v1/queue")

    assert response.status_code == 200, response.text
    queue = response.json()
    assert queue["counts"]["total"] == 3
    assert queue["counts"]["status"]["deferred"] == 1
    assert queue["counts"]["status"]["queued"] == 2
    assert queue["counts"]["priority"] == {"high": 1, "normal": 0, "low": 2}
    assert queue["oldest_age_seconds"] == 0
    [retry] = queue["next_retries"]
    assert retry["next_attempt_at"] == "2026-04-19T14:30:30.000Z"
    sites = {item["site"]: item for item in queue["sites"]}
    assert sites[EXAMPLE_SITE]["waiting"] == 2
    assert sites[None]["recipient_domains"] == [OTHER]


@pytest.mark.parametrize("priority", [["low"], {"a": 1}, 5])
@pytest.mark.parametrize("path", ["/v1/queue/pause", "/v1/queue/resume"])
async def test_queue_pause_priority_not_string(
    client: httpx.AsyncClient, path: str, priority: object
) -> None:
    response = await client.post(path, json={"priority": priority})

    assert response.status_code == 422, response.text
    [error] = response.json()["error"]["errors"]
    assert (error["field"], error["code"]) == ("priority", "invalid_priority")


async def test_queue_api_pause_cycle(client: httpx.AsyncClient, engine: Engine) -> None:
    paused = await client.post("/v1/queue/pause", json={"priority": "low"})
    listed = await client.get("/v1/queue")
    resumed = await client.post("/v1/queue/resume", json={"priority": "low"})
    again = await client.post("/v1/queue/resume", json={"priority": "low"})

    assert paused.json() == {
        "kind": "priority",
        "value": "low",
        "paused": True,
        "unparked": 0,
    }
    assert listed.json()["paused"] == {"priorities": ["low"], "sites": []}
    assert resumed.status_code == 200
    assert again.status_code == 404


async def test_queue_api_cancel_dry_run(
    client: httpx.AsyncClient, engine: Engine
) -> None:
    await engine.send(message_body())

    dry = await client.post("/v1/queue/cancel", json={"filter": {}, "dry_run": True})
    done = await client.post("/v1/queue/cancel", json={"filter": {}})

    assert dry.json() == {"count": 1, "dry_run": True, "more": False}
    assert done.json() == {"count": 1, "dry_run": False, "more": False}
