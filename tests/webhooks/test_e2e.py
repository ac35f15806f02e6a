"""End to end: ``sendarix serve`` posting webhooks and taking reports."""

from __future__ import annotations

import smtplib
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests.conftest import DOMAIN
from tests.inbound.reports import dsn
from tests.support.dns_server import DnsServer
from tests.support.server_process import ServerProcess, free_port
from tests.support.smtp_server import SmtpServer
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.e2e

RETURN_DOMAIN = "bounces.acme.example"


@pytest.fixture
def server(
    tmp_path: Path, dns_server: DnsServer, smtp_server: SmtpServer
) -> Iterator[ServerProcess]:
    process = ServerProcess(
        tmp_path,
        {
            "SENDARIX_DNS_NAMESERVERS": f"127.0.0.1:{dns_server.port}",
            "SENDARIX_DESTINATION_PORT": str(smtp_server.port),
            "SENDARIX_HELO_NAME": "sendarix.test",
            "SENDARIX_LEASE_SECONDS": "2",
            "SENDARIX_POLL_INTERVAL": "0.2",
            "SENDARIX_WEBHOOK_ALLOW_PRIVATE": "true",
            "SENDARIX_WEBHOOK_TIMEOUT": "3",
            "SENDARIX_RETURN_PATH_DOMAIN": RETURN_DOMAIN,
            "SENDARIX_INBOUND_PORT": str(free_port()),
        },
    )
    yield process
    process.stop()


def client_for(server: ServerProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"})


def event_ids_received(receiver: Receiver) -> list[str]:
    return [orjson.loads(r["body"])["data"]["event_id"] for r in receiver.requests()]


def body(number: int) -> dict[str, object]:
    return {
        "recipient": f"user{number}@{DOMAIN}",
        "from": "Acme <no-reply@acme.example>",
        "subject": "Your verification code",
        "text": f"Your code is {number:06d}.",
    }


def test_sigkill_mid_delivery_loses_nothing(
    server: ServerProcess, receiver: Receiver
) -> None:
    key = server.create_key()
    receiver.start(delay=1.5)
    server.start()
    client = client_for(server, key)
    created = client.post("/v1/webhooks", json={"url": receiver.url})
    assert created.status_code == 201
    message_ids = [
        client.post("/v1/messages", json=body(number)).json()["message_id"]
        for number in range(3)
    ]

    receiver.wait_for(1, timeout=30)
    server.kill()
    server.start()

    expected: set[str] = set()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        expected = {
            event["event_id"]
            for message_id in message_ids
            for event in client.get(f"/v1/messages/{message_id}/events").json()["data"]
        }
        if len(expected) == 9 and expected <= set(event_ids_received(receiver)):
            break
        time.sleep(0.2)

    assert len(expected) == 9, server.log()
    assert expected <= set(event_ids_received(receiver)), server.log()
    payloads = [orjson.loads(r["body"]) for r in receiver.requests()]
    for message_id in message_ids:
        first_seen: list[str] = []
        for payload in payloads:
            of_message = payload["data"]["message_id"] == message_id
            if of_message and payload["type"] not in first_seen:
                first_seen.append(payload["type"])
        assert first_seen == [
            "message.queued",
            "message.accepted",
            "message.delivered",
        ]


def test_bounce_report_over_smtp(server: ServerProcess) -> None:
    key = server.create_key()
    server.start()
    client = client_for(server, key)
    message_id = client.post("/v1/messages", json=body(1)).json()["message_id"]
    deadline = time.monotonic() + 30
    while client.get(f"/v1/messages/{message_id}").json()["status"] != "delivered":
        assert time.monotonic() < deadline, server.log()
        time.sleep(0.1)
    message = client.get(f"/v1/messages/{message_id}").json()

    report = dsn(
        recipient=f"user1@{DOMAIN}",
        original_message_id=message["message_id_header"],
    )
    inbound_port = int(server.env["SENDARIX_INBOUND_PORT"])
    with smtplib.SMTP("127.0.0.1", inbound_port, timeout=10) as smtp:
        smtp.sendmail("", [f"bounces+{message_id}@{RETURN_DOMAIN}"], report)

    events = client.get(
        "/v1/events", params={"message_id": message_id, "type": "message.bounced"}
    ).json()["data"]
    assert len(events) == 1
    assert events[0]["data"]["asynchronous"] is True
    suppression = client.get(f"/v1/suppressions/user1@{DOMAIN}")
    assert suppression.json()["reason"] == "hard_bounce"
    assert client.get(f"/v1/messages/{message_id}").json()["status"] == "delivered"
