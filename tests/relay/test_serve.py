"""The relay inside a real ``sendarix serve`` process."""

from __future__ import annotations

import shutil
import smtplib
import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from sendarix_backends.sql.migrate import upgrade
from tests.e2e.test_server import wait_for_status
from tests.relay.conftest import RECIPIENT, SENDER, message_bytes
from tests.support.certificates import TestCertificate
from tests.support.dns_server import DnsServer
from tests.support.server_process import ServerProcess, free_port
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.e2e


@pytest.fixture
def server(
    tmp_path: Path,
    dns_server: DnsServer,
    smtp_server: SmtpServer,
    certificate: TestCertificate,
) -> Iterator[ServerProcess]:
    certificate_path = tmp_path / "relay.pem"
    key_path = tmp_path / "relay.key"
    certificate_path.write_bytes(certificate.certificate_pem)
    key_path.write_bytes(certificate.key_pem)
    process = ServerProcess(
        tmp_path,
        {
            "SENDARIX_DNS_NAMESERVERS": f"127.0.0.1:{dns_server.port}",
            "SENDARIX_DESTINATION_PORT": str(smtp_server.port),
            "SENDARIX_HELO_NAME": "sendarix.test",
            "SENDARIX_LEASE_SECONDS": "2",
            "SENDARIX_POLL_INTERVAL": "0.2",
            "SENDARIX_RELAY_PORT": str(free_port()),
            "SENDARIX_RELAY_TLS_CERT": str(certificate_path),
            "SENDARIX_RELAY_TLS_KEY": str(key_path),
        },
    )
    yield process
    process.stop()


def relay_port(server: ServerProcess) -> int:
    return int(server.env["SENDARIX_RELAY_PORT"])


def submit(
    server: ServerProcess, certificate: TestCertificate, key: str
) -> tuple[int, str]:
    with smtplib.SMTP("127.0.0.1", relay_port(server), timeout=10) as client:
        client.starttls(context=certificate.client_context())
        client.login("legacy-app", key)
        client.mail(SENDER)
        client.rcpt(RECIPIENT)
        code, reply = client.data(message_bytes())
    return code, reply.decode().split("queued as ")[1].split()[0]


def test_serve_relays_to_mx(
    server: ServerProcess, smtp_server: SmtpServer, certificate: TestCertificate
) -> None:
    key = server.create_key()
    server.start()

    code, message_id = submit(server, certificate, key)
    assert code == 250
    client = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {key}"}
    )
    message = wait_for_status(client, message_id, "delivered")
    assert message["status"] == "delivered", server.log()

    listing = client.get("/v1/messages").json()["data"]
    assert [item["message_id"] for item in listing] == [message_id]
    events = client.get(f"/v1/messages/{message_id}/events").json()["data"]
    assert [event["type"] for event in events] == [
        "message.queued",
        "message.accepted",
        "message.delivered",
    ]
    [received] = smtp_server.wait_for_messages(1)
    assert received.mail_from == SENDER
    assert "relay_started" in server.log()


@pytest.mark.skipif(shutil.which("swaks") is None, reason="swaks is not installed")
def test_serve_accepts_swaks(
    server: ServerProcess, smtp_server: SmtpServer, certificate: TestCertificate
) -> None:
    key = server.create_key()
    server.start()

    command = [
        "swaks",
        "--server", f"127.0.0.1:{relay_port(server)}",
        "--tls",
        "--auth", "LOGIN",
        "--auth-user", "legacy-app",
        "--auth-password", key,
        "--from", SENDER,
        "--to", RECIPIENT,
    ]  # fmt: skip
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout
    smtp_server.wait_for_messages(1, timeout=30)
    assert key not in server.log()


def test_sigkill_after_250_still_delivers(
    server: ServerProcess, smtp_server: SmtpServer, certificate: TestCertificate
) -> None:
    key = server.create_key()
    # The first attempt hangs, so the message is certainly not delivered
    # before the kill.
    smtp_server.tarpit()
    server.start()

    code, message_id = submit(server, certificate, key)
    assert code == 250
    server.kill()
    assert smtp_server.messages == []

    smtp_server.tarpit(enabled=False)
    server.start()
    client = httpx.Client(
        base_url=server.url, headers={"Authorization": f"Bearer {key}"}
    )
    message = wait_for_status(client, message_id, "delivered", timeout=30)
    assert message["status"] == "delivered", server.log()
    [received] = smtp_server.wait_for_messages(1)
    assert received.message_id == message["message_id_header"]


def test_serve_self_signed_certificate(tmp_path: Path, smtp_server: SmtpServer) -> None:
    process = ServerProcess(
        tmp_path,
        {"SENDARIX_RELAY_PORT": str(free_port()), "SENDARIX_DELIVERY_MODE": "sink"},
    )
    key = process.create_key()
    process.start()
    try:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        with smtplib.SMTP("127.0.0.1", relay_port(process), timeout=10) as client:
            client.starttls(context=context)
            client.login("legacy-app", key)
            assert client.mail(SENDER)[0] == 250
    finally:
        process.stop()
    assert "self-signed certificate" in process.log()


def test_serve_relay_port_taken(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = ServerProcess(tmp_path, {"SENDARIX_RELAY_PORT": str(port)})
        with pytest.raises(RuntimeError):
            process.start()
    log = process.log()
    assert f"cannot listen on 127.0.0.1:{port}" in log
    assert "SENDARIX_RELAY_PORT (0 turns it off)" in log
    assert "Traceback" not in log


def failed_start(process: ServerProcess) -> tuple[str, int | None]:
    """Start a server that is expected to exit; return its log and status."""
    with pytest.raises(RuntimeError):
        process.start()
    process.stop()
    assert process.process is not None
    return process.log(), process.process.returncode


def test_serve_missing_certificate_one_line(tmp_path: Path) -> None:
    process = ServerProcess(
        tmp_path,
        {
            "SENDARIX_RELAY_PORT": str(free_port()),
            "SENDARIX_RELAY_TLS_CERT": str(tmp_path / "missing.pem"),
            "SENDARIX_RELAY_TLS_KEY": str(tmp_path / "missing.key"),
        },
    )
    log, status = failed_start(process)

    assert "sendarix: cannot load the relay certificate" in log
    assert "Traceback" not in log
    assert "serve_started" not in log
    assert status == 2


def test_serve_old_schema_one_line(tmp_path: Path) -> None:
    upgrade(f"sqlite:///{tmp_path / 'sendarix.db'}", "0004_delivery_control")
    process = ServerProcess(tmp_path, {"SENDARIX_RELAY_PORT": "0"})
    log, status = failed_start(process)

    assert "run `sendarix migrate`" in log
    assert "Traceback" not in log
    assert "serve_started" not in log
    assert status == 1
