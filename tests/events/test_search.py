"""Searching the event log: filters, order and keyset pages."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.events.query import EventOrder, EventQuery
from sendarix_backends.events.services import EventServices
from sendarix_core.clock import ManualClock
from sendarix_core.errors import ValidationError
from sendarix_core.keys import Environment
from sendarix_core.model import Event
from tests.conftest import DOMAIN
from tests.core.factories import T0
from tests.webhooks.conftest import api_client, message_body

pytestmark = pytest.mark.anyio


async def all_pages(services: EventServices, query: EventQuery) -> list[Event]:
    found: list[Event] = []
    cursor = None
    while True:
        page = await services.search(EventQuery(**{**_fields(query), "cursor": cursor}))
        found.extend(page.items)
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


def _fields(query: EventQuery) -> dict[str, object]:
    return {
        "types": query.types,
        "recipient": query.recipient,
        "message_id": query.message_id,
        "tag": query.tag,
        "metadata": query.metadata,
        "created_after": query.created_after,
        "created_before": query.created_before,
        "order": query.order,
        "limit": query.limit,
    }


async def test_filters_by_type_and_message(
    engine: Engine, services: EventServices
) -> None:
    first = await engine.send(message_body())
    await engine.send(message_body(f"bob@{DOMAIN}"))
    await engine.deliver_due()

    delivered = await all_pages(
        services, EventQuery(types=frozenset({"message.delivered"}))
    )
    of_first = await all_pages(services, EventQuery(message_id=first.message_id))

    assert len(delivered) == 2
    assert {e.type for e in delivered} == {"message.delivered"}
    assert [e.type for e in of_first] == [
        "message.delivered",
        "message.accepted",
        "message.queued",
    ]


async def test_recipient_ignores_case(engine: Engine, services: EventServices) -> None:
    await engine.send(message_body(f"Ada.Lovelace@{DOMAIN}"))
    await engine.send(message_body(f"bob@{DOMAIN}"))

    found = await all_pages(
        services, EventQuery(recipient=f"ada.lovelace@{DOMAIN.upper()}")
    )

    assert [e.recipient for e in found] == [f"Ada.Lovelace@{DOMAIN}"]


async def test_recipient_non_ascii_in_sent_case(
    engine: Engine, services: EventServices
) -> None:
    await engine.send(message_body(f"ÜNÏ-Ada@{DOMAIN}"))

    found = await all_pages(services, EventQuery(recipient=f"ÜNÏ-ada@{DOMAIN}"))

    assert [e.recipient for e in found] == [f"ÜNÏ-Ada@{DOMAIN}"]


async def test_recipient_idn_domain(engine: Engine, services: EventServices) -> None:
    await engine.send(message_body("user@bücher.test"))

    by_unicode = await all_pages(services, EventQuery(recipient="user@bücher.test"))
    by_a_label = await all_pages(
        services, EventQuery(recipient="user@xn--bcher-kva.test")
    )

    assert [e.recipient for e in by_unicode] == ["user@xn--bcher-kva.test"]
    assert [e.recipient for e in by_a_label] == ["user@xn--bcher-kva.test"]


async def test_filters_by_tag_and_metadata(
    engine: Engine, services: EventServices
) -> None:
    otp = await engine.send(
        message_body(tags=["otp", "login"], metadata={"user_id": "42"})
    )
    await engine.send(message_body(tags=["news"], metadata={"user_id": "7"}))
    await engine.send(message_body(metadata={"user_id": "42", "plan": "pro"}))

    tagged = await all_pages(services, EventQuery(tag="otp"))
    by_user = await all_pages(services, EventQuery(metadata={"user_id": "42"}))
    both = await all_pages(
        services, EventQuery(tag="login", metadata={"user_id": "42"})
    )
    none = await all_pages(services, EventQuery(tag="otp", metadata={"plan": "pro"}))

    assert [e.message_id for e in tagged] == [otp.message_id]
    assert len(by_user) == 2
    assert [e.message_id for e in both] == [otp.message_id]
    assert none == []


async def test_time_range_bounds(
    engine: Engine, services: EventServices, clock: ManualClock
) -> None:
    for _ in range(3):
        await engine.send(message_body())
        clock.advance(timedelta(minutes=1))

    found = await all_pages(
        services,
        EventQuery(
            created_after=T0 + timedelta(minutes=1),
            created_before=T0 + timedelta(minutes=2),
        ),
    )

    assert [e.created_at for e in found] == [T0 + timedelta(minutes=1)]


@pytest.mark.parametrize("order", list(EventOrder))
async def test_pages_no_gap_or_repeat(
    engine: Engine, services: EventServices, order: EventOrder
) -> None:
    for _ in range(7):
        await engine.send(message_body(tags=["otp"]))
    before = await all_pages(services, EventQuery(tag="otp", order=order, limit=100))

    seen: list[Event] = []
    added: list[str] = []
    cursor = None
    while True:
        page = await services.search(
            EventQuery(tag="otp", order=order, limit=3, cursor=cursor)
        )
        seen.extend(page.items)
        # New matching events arrive between pages.
        added.append((await engine.send(message_body(tags=["otp"]))).message_id)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor

    ids = [event.event_id for event in seen]
    assert len(ids) == len(set(ids))
    if order is EventOrder.NEWEST_FIRST:
        assert ids == [event.event_id for event in before]
    else:
        assert ids[: len(before)] == [event.event_id for event in before]
        assert {e.message_id for e in seen[len(before) :]} <= set(added)


async def test_newest_first_by_default(engine: Engine, services: EventServices) -> None:
    first = await engine.send(message_body())
    second = await engine.send(message_body())

    page = await services.search(EventQuery())

    assert [e.message_id for e in page.items] == [second.message_id, first.message_id]


async def test_cursor_of_other_order_rejected(
    engine: Engine, services: EventServices
) -> None:
    for _ in range(3):
        await engine.send(message_body())
    page = await services.search(EventQuery(limit=1))
    assert page.next_cursor is not None

    with pytest.raises(ValidationError):
        await services.search(
            EventQuery(order=EventOrder.OLDEST_FIRST, cursor=page.next_cursor)
        )
    with pytest.raises(ValidationError):
        await services.search(EventQuery(cursor="not-a-cursor!"))


async def test_test_mode_filter(engine: Engine, services: EventServices) -> None:
    _, test_key = await engine.create_api_key("ci", environment=Environment.TEST)
    live = await engine.send(message_body())
    test = await engine.send(message_body(), api_key=test_key)
    await engine.unsubscribe(f"gone@{DOMAIN}")

    test_only = await services.search(EventQuery(test_mode=True))
    live_only = await services.search(EventQuery(test_mode=False))
    everything = await services.search(EventQuery())

    assert {event.message_id for event in test_only.items} == {test.message_id}
    # The unsubscribe belongs to no message, and counts as live.
    assert {event.message_id for event in live_only.items} == {live.message_id, None}
    assert {event.message_id for event in everything.items} == {
        live.message_id,
        test.message_id,
        None,
    }


async def test_api_shows_events_of_own_environment(
    engine: Engine, services: EventServices
) -> None:
    secret, test_key = await engine.create_api_key("ci", environment=Environment.TEST)
    live = await engine.send(message_body())
    test = await engine.send(message_body(), api_key=test_key)
    as_test_key = {"Authorization": f"Bearer {secret}"}

    async with api_client(engine) as client:
        live_on_test = await client.get(
            "/v1/events", params={"message_id": test.message_id}
        )
        live_all = await client.get("/v1/events")
        test_on_live = await client.get(
            "/v1/events", params={"message_id": live.message_id}, headers=as_test_key
        )
        test_all = await client.get("/v1/events", headers=as_test_key)

    assert live_on_test.status_code == 200
    assert live_on_test.json()["data"] == []
    assert {e["message_id"] for e in live_all.json()["data"]} == {live.message_id}
    assert test_on_live.status_code == 200
    assert test_on_live.json()["data"] == []
    assert {e["message_id"] for e in test_all.json()["data"]} == {test.message_id}


async def test_api_metadata_key_with_brackets(engine: Engine) -> None:
    tagged = await engine.send(message_body(metadata={"arr[0]": "4"}))
    await engine.send(message_body(metadata={"arr[0]": "5"}))

    async with api_client(engine) as client:
        response = await client.get("/v1/events", params={"metadata[arr[0]]": "4"})

    assert response.status_code == 200
    found = {event["message_id"] for event in response.json()["data"]}
    assert found == {tagged.message_id}


@pytest.mark.parametrize("name", ["metadata[u", "metadata[]", "metadata[a]b"])
async def test_api_malformed_metadata_rejected(engine: Engine, name: str) -> None:
    async with api_client(engine) as client:
        response = await client.get("/v1/events", params={name: "1", "limit": "0"})

    assert response.status_code == 422
    errors = response.json()["error"]["errors"]
    assert {error["field"] for error in errors} == {name, "limit"}
    [error] = [error for error in errors if error["field"] == name]
    assert error["code"] == "invalid_parameter"
    assert "metadata[KEY]=VALUE" in error["message"]
