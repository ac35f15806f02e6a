"""Analytics over a scripted scenario with known outcomes."""

from __future__ import annotations

from datetime import timedelta

import attrs
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.events.analytics import (
    AnalyticsQuery,
    GroupBy,
    Interval,
    latency_bucket,
    percentile,
)
from sendarix_backends.events.services import EventServices
from sendarix_core.clock import ManualClock
from sendarix_core.keys import Environment
from tests.conftest import DOMAIN
from tests.core.factories import T0
from tests.inbound.reports import arf
from tests.support.smtp_server import SmtpServer
from tests.webhooks.conftest import api_client, message_body

pytestmark = pytest.mark.anyio

HOUR = AnalyticsQuery(start=T0, end=T0 + timedelta(hours=1), interval=Interval.HOUR)


async def run_scenario(
    engine: Engine, services: EventServices, smtp: SmtpServer, clock: ManualClock
) -> None:
    """Six messages: four delivered at once, one deferred once then
    delivered 31 s later, one bounced; one delivered one complained about."""
    smtp.reject_recipient(f"gone@{DOMAIN}")
    smtp.reply_with("451 4.7.1 try again later")
    sent = []
    for number in range(5):
        tags = ["otp"] if number < 3 else ["news"]
        sent.append(
            await engine.send(message_body(f"user{number}@{DOMAIN}", tags=tags))
        )
    await engine.send(message_body(f"gone@{DOMAIN}", tags=["news"]))
    await engine.deliver_due()
    clock.advance(timedelta(seconds=31))
    await engine.deliver_due()

    message = await engine.get_message(sent[0].message_id)
    report = arf(
        recipient=message.recipient.email,
        original_message_id=message.message_id_header,
    )
    result = await services.reports.receive(["fbl@bounces.acme.example"], report)
    assert len(result.events) == 1
    await services.processor.drain()


async def test_counts_and_rates_exact(
    engine: Engine, services: EventServices, smtp_server: SmtpServer, clock: ManualClock
) -> None:
    await run_scenario(engine, services, smtp_server, clock)

    report = await services.analytics(HOUR)

    [bucket] = report["data"]
    counts = bucket["counts"]
    assert counts["queued"] == 6
    assert counts["accepted"] == 7
    assert counts["delivered"] == 5
    assert counts["deferred"] == 1
    assert counts["bounced"] == 1
    assert counts["complained"] == 1
    assert counts["suppressed"] == 0
    assert bucket["rates"] == {
        "delivery_rate": 5 / 6,
        "bounce_rate": 1 / 6,
        "complaint_rate": 1 / 5,
        "deferral_rate": 1 / 7,
    }


async def test_latency_percentiles(
    engine: Engine, services: EventServices, smtp_server: SmtpServer, clock: ManualClock
) -> None:
    await run_scenario(engine, services, smtp_server, clock)

    [bucket] = (await services.analytics(HOUR))["data"]

    latency = bucket["delivery_latency_ms"]
    assert latency["samples"] == 5
    assert latency["p50"] <= 1
    assert 31_000 / 1.1 <= latency["p95"] <= 31_000 * 1.1


async def test_group_by_tag(
    engine: Engine, services: EventServices, smtp_server: SmtpServer, clock: ManualClock
) -> None:
    await run_scenario(engine, services, smtp_server, clock)

    report = await services.analytics(
        AnalyticsQuery(
            start=T0,
            end=T0 + timedelta(days=1),
            interval=Interval.DAY,
            group_by=GroupBy.TAG,
        )
    )

    by_tag = {entry["tag"]: entry["counts"] for entry in report["data"]}
    assert set(by_tag) == {"otp", "news"}
    assert by_tag["otp"]["queued"] == 3
    assert by_tag["news"]["queued"] == 3
    assert by_tag["news"]["bounced"] == 1
    assert by_tag["otp"]["complained"] == 1
    assert by_tag["otp"]["delivered"] + by_tag["news"]["delivered"] == 5


async def test_group_by_domain(
    engine: Engine, services: EventServices, smtp_server: SmtpServer, clock: ManualClock
) -> None:
    await run_scenario(engine, services, smtp_server, clock)

    report = await services.analytics(
        AnalyticsQuery(
            start=T0,
            end=T0 + timedelta(hours=2),
            interval=Interval.HOUR,
            group_by=GroupBy.DOMAIN,
        )
    )

    [entry] = report["data"]
    assert entry["domain"] == DOMAIN
    assert entry["counts"]["delivered"] == 5


async def test_one_batch_spanning_two_hours(
    engine: Engine, services: EventServices, smtp_server: SmtpServer, clock: ManualClock
) -> None:
    # T0 is 14:30, so the second round of messages falls in the next hour,
    # and one drain writes rows of both hours.
    for count in (2, 3):
        for number in range(count):
            await engine.send(message_body(f"user{number}@{DOMAIN}"))
        await engine.deliver_due()
        clock.advance(timedelta(minutes=40))
    await services.processor.drain()

    report = await services.analytics(
        AnalyticsQuery(start=T0, end=T0 + timedelta(hours=2), interval=Interval.HOUR)
    )

    queued = [bucket["counts"]["queued"] for bucket in report["data"]]
    delivered = [bucket["counts"]["delivered"] for bucket in report["data"]]
    assert queued == [2, 3]
    assert delivered == [2, 3]


async def test_empty_range_has_no_buckets(services: EventServices) -> None:
    report = await services.analytics(HOUR)

    assert report["data"] == []


async def test_batches_add_to_stored_counts(
    engine: Engine, services: EventServices, smtp_server: SmtpServer
) -> None:
    # Each drain writes the same hour, domain and tag rows, so the second
    # adds to what the first stored.
    for count in (2, 3):
        for number in range(count):
            await engine.send(message_body(f"user{number}@{DOMAIN}", tags=["otp"]))
        await engine.deliver_due()
        await services.processor.drain()

    report = await services.analytics(attrs.evolve(HOUR, group_by=GroupBy.TAG))

    [bucket] = report["data"]
    assert bucket["tag"] == "otp"
    assert bucket["counts"]["queued"] == 5
    assert bucket["counts"]["delivered"] == 5
    assert bucket["delivery_latency_ms"]["samples"] == 5


async def test_bounds_align_to_interval(services: EventServices) -> None:
    report = await services.analytics(
        AnalyticsQuery(
            start=T0 + timedelta(minutes=10),
            end=T0 + timedelta(hours=2, minutes=5),
            interval=Interval.DAY,
        )
    )

    assert report["from"] == "2026-04-19T00:00:00.000Z"
    assert report["to"] == "2026-04-20T00:00:00.000Z"


def test_percentile_nearest_rank() -> None:
    histogram = {
        latency_bucket(timedelta(milliseconds=ms)): 1 for ms in (10, 100, 1000)
    }

    p50 = percentile(histogram, 0.5)
    assert p50 is not None
    assert 100 / 1.1 <= p50 <= 100 * 1.1
    assert percentile({}, 0.5) is None


async def test_api_report_and_errors(
    engine: Engine, services: EventServices, smtp_server: SmtpServer, clock: ManualClock
) -> None:
    await run_scenario(engine, services, smtp_server, clock)
    async with api_client(engine) as client:
        ok = await client.get(
            "/v1/analytics",
            params={
                "from": "2026-04-19T00:00:00Z",
                "to": "2026-04-20T00:00:00Z",
                "interval": "day",
                "group_by": "tag",
            },
        )
        missing = await client.get(
            "/v1/analytics", params={"from": "2026-04-19T00:00Z"}
        )
        reversed_range = await client.get(
            "/v1/analytics",
            params={"from": "2026-04-20T00:00:00Z", "to": "2026-04-19T00:00:00Z"},
        )
        too_long = await client.get(
            "/v1/analytics",
            params={
                "from": "2026-01-01T00:00:00Z",
                "to": "2026-04-19T00:00:00Z",
                "interval": "hour",
            },
        )

    assert ok.status_code == 200
    assert {entry["tag"] for entry in ok.json()["data"]} == {"otp", "news"}
    assert missing.status_code == 422
    assert reversed_range.status_code == 422
    assert too_long.status_code == 422


async def test_api_reports_every_bad_parameter(engine: Engine) -> None:
    params = {"from": "2026-04-19T00:00:00Z", "interval": "minute", "group_by": "x"}

    async with api_client(engine) as client:
        response = await client.get("/v1/analytics", params=params)

    assert response.status_code == 422
    fields = [error["field"] for error in response.json()["error"]["errors"]]
    assert fields == ["to", "interval", "group_by"]


async def test_test_traffic_counted_apart(
    engine: Engine, services: EventServices, smtp_server: SmtpServer
) -> None:
    secret, test_key = await engine.create_api_key("ci", environment=Environment.TEST)
    await engine.send(message_body(f"live@{DOMAIN}", tags=["otp"]))
    for number in range(2):
        await engine.send(message_body(f"test{number}@{DOMAIN}"), api_key=test_key)
    await engine.deliver_due()
    await services.processor.drain()

    live = await services.analytics(HOUR)
    test = await services.analytics(attrs.evolve(HOUR, test_mode=True))
    params = {"from": "2026-04-19T00:00:00Z", "to": "2026-04-20T00:00:00Z"}
    async with api_client(engine) as client:
        live_reply = await client.get("/v1/analytics", params=params)
        test_reply = await client.get(
            "/v1/analytics",
            params=params,
            headers={"Authorization": f"Bearer {secret}"},
        )

    assert live["data"][0]["counts"]["delivered"] == 1
    assert live["data"][0]["delivery_latency_ms"]["samples"] == 1
    assert test["data"][0]["counts"]["delivered"] == 2
    assert test["data"][0]["delivery_latency_ms"]["samples"] == 2
    assert live_reply.json()["data"][0]["counts"]["delivered"] == 1
    assert test_reply.json()["data"][0]["counts"]["delivered"] == 2
    assert len(smtp_server.messages) == 1


async def test_api_range_at_year_9999(engine: Engine) -> None:
    params = {"from": "9999-12-30T00:00:00Z", "to": "9999-12-31T23:59:59Z"}

    async with api_client(engine) as client:
        response = await client.get("/v1/analytics", params=params)

    assert response.status_code == 200


async def test_domain_counts_unsubscribe_without_message(
    engine: Engine, services: EventServices
) -> None:
    params = {
        "from": "2026-04-19T00:00:00Z",
        "to": "2026-04-20T00:00:00Z",
        "interval": "day",
    }
    async with api_client(engine) as client:
        created = await client.post(
            "/v1/unsubscribes", json={"recipient": "Unsub@Example.test"}
        )
        await services.processor.drain()
        totals = await client.get("/v1/analytics", params=params)
        by_domain = await client.get(
            "/v1/analytics", params={**params, "group_by": "domain"}
        )

    assert created.status_code == 201
    assert totals.json()["data"][0]["counts"]["unsubscribed"] == 1
    [row] = by_domain.json()["data"]
    assert row["domain"] == "example.test"
    assert row["counts"]["unsubscribed"] == 1
