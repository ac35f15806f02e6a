"""End to end: a real ``sendarix serve`` process, DNS server and SMTP server."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import DOMAIN
from tests.support.dns_server import DnsServer
from tests.support.server_process import SENDARIX, ServerProcess
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.e2e


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
            "SENDARIX_SMTP_TIMEOUT": "30",
        },
    )
    yield process
    process.stop()


def wait_for_status(
    client: httpx.Client, message_id: str, status: str, timeout: float = 20
) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while True:
        message: dict[str, object] = client.get(f"/v1/messages/{message_id}").json()
        if message["status"] == status or time.monotonic() > deadline:
            return message
        time.sleep(0.1)


def body(number: int = 0) -> dict[str, object]:
    return {
        "recipient": f"user{number}@{DOMAIN}",
        "from": "Acme <no-reply@acme.example>",
        "subject": "Your verification code",
        "text": f"Your code is {number:06d}.",
    }


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
def test_posted_message_delivered(
    server: ServerProcess, smtp_server: SmtpServer, event_loop: str
) -> None:
    server.env["SENDARIX_EVENT_LOOP"] = event_loop
    key = server.create_key()
    server.start()
    client = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {key}"}
    )

    accepted = client.post("/v1/messages", json=body())
    assert accepted.status_code == 202
    message_id = accepted.json()["message_id"]

    message = wait_for_status(client, message_id, "delivered")
    assert message["status"] == "delivered", server.log()
    reply = message["last_smtp_reply"]
    assert isinstance(reply, dict)
    assert reply["code"] == 250
    assert reply["mx_host"] == "mx1.example.test"
    events = client.get(f"/v1/messages/{message_id}/events").json()["data"]
    assert [event["type"] for event in events] == [
        "message.queued",
        "message.accepted",
        "message.delivered",
    ]
    assert len(smtp_server.messages) == 1
    assert smtp_server.messages[0].message_id == message["message_id_header"]
    assert f"event_loop={event_loop}" in server.log()


def test_keys_create_prints_only_key(server: ServerProcess) -> None:
    key = server.create_key("--test", "--scope", "messages:send")
    assert key.startswith("sk_test_")
    assert len(key.split()) == 1


@pytest.mark.parametrize(
    ("expires_at", "problem"),
    [
        (
            "2020-01-01T00:00:00Z",
            "expires_at: '2020-01-01T00:00:00Z' is not in the future",
        ),
        ("tomorrow", "expires_at: expected an ISO 8601 time"),
    ],
)
def test_keys_create_checks_expiry(
    server: ServerProcess, expires_at: str, problem: str
) -> None:
    result = subprocess.run(
        [*SENDARIX, "keys", "create", "--name", "e2e", "--expires-at", expires_at],
        env=server.env,
        cwd=server.workdir,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )

    assert result.returncode != 0
    assert result.stdout == ""
    assert problem in result.stderr


def test_crash_after_202_delivers_once(
    server: ServerProcess, smtp_server: SmtpServer
) -> None:
    key = server.create_key()
    smtp_server.tarpit()
    server.start()
    client = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {key}"}
    )

    message_ids = []
    for number in range(20):
        response = client.post("/v1/messages", json=body(number))
        assert response.status_code == 202
        message_ids.append(response.json()["message_id"])
    # Let the worker claim them and hang in the tarpit, then kill it.
    time.sleep(1.0)
    server.kill()
    assert smtp_server.messages == []

    smtp_server.tarpit(enabled=False)
    server.start()
    smtp_server.wait_for_messages(20, timeout=30)
    for message_id in message_ids:
        status = wait_for_status(client, message_id, "delivered")["status"]
        assert status == "delivered", server.log()

    time.sleep(1.0)
    counts = Counter(message.message_id for message in smtp_server.messages)
    assert len(counts) == 20
    assert set(counts.values()) == {1}


def test_sigterm_releases_in_flight(
    server: ServerProcess, smtp_server: SmtpServer
) -> None:
    # A long lease: only the release at shutdown lets the restarted server
    # resume the message within the wait below.
    server.env["SENDARIX_LEASE_SECONDS"] = "300"
    key = server.create_key()
    smtp_server.tarpit()
    server.start()
    client = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {key}"}
    )
    message_id = client.post("/v1/messages", json=body()).json()["message_id"]
    wait_for_status(client, message_id, "accepted", timeout=10)

    server.stop()
    assert "worker stopped" in server.log()
    smtp_server.tarpit(enabled=False)
    server.start()

    message = wait_for_status(client, message_id, "delivered", timeout=20)
    assert message["status"] == "delivered", server.log()
    assert len(smtp_server.messages) == 1


def test_worker_process_delivers_for_serve(
    server: ServerProcess, smtp_server: SmtpServer
) -> None:
    server.env["SENDARIX_SERVE_WORKERS"] = "false"
    key = server.create_key()
    server.start()
    client = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {key}"}
    )
    message_id = client.post("/v1/messages", json=body()).json()["message_id"]

    # Two poll intervals of the server's own workers, had it started any.
    time.sleep(0.5)
    assert client.get(f"/v1/messages/{message_id}").json()["status"] == "queued"
    assert smtp_server.messages == []

    with (server.workdir / "worker.log").open("ab") as log:
        worker = subprocess.Popen(
            [*SENDARIX, "worker", "--log-level", "DEBUG"],
            env=server.env,
            cwd=server.workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        message = wait_for_status(client, message_id, "delivered")
    finally:
        worker.terminate()
        worker.wait(timeout=15)
    worker_log = (server.workdir / "worker.log").read_text(errors="replace")
    assert message["status"] == "delivered", worker_log
    assert len(smtp_server.messages) == 1
