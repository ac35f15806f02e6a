"""A 60 MB body against a real server: ``413`` without the server holding it all.

A body that streams without a declared length is read until it passes the
50 MB limit, so the server's memory may rise by up to that much for a
moment. It must never rise by the whole body, nor by a copy of it.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server_process import ServerProcess

pytestmark = pytest.mark.e2e

MB = 1024 * 1024


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(tmp_path, {"SENDARIX_DELIVERY_MODE": "sink"})
    yield process
    process.stop()


def peak_rss_bytes(server: ServerProcess) -> int:
    assert server.process is not None
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("VmHWM missing from /proc/PID/status")


def post_chunked(server: ServerProcess, key: str, size: int) -> bytes:
    """Stream ``size`` bytes as a chunked body; return the raw response.

    A raw socket keeps reading the response after the server stops reading
    the body, where an HTTP client would report the broken upload instead.
    """
    head = (
        "POST /v1/messages HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    # The body is never parsed: the server rejects it on size alone.
    chunk = b"%x\r\n" % MB + b"a" * MB + b"\r\n"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head)
        try:
            for _ in range(size // MB):
                sock.sendall(chunk)
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        return _read_response(sock)


def _read_response(sock: socket.socket) -> bytes:
    received = b""
    try:
        while b"\r\n\r\n" not in received or not received.endswith(b"}"):
            data = sock.recv(65536)
            if not data:
                break
            received += data
    except ConnectionResetError:
        pass
    return received


def test_60mb_body_rejected_at_limit(server: ServerProcess) -> None:
    key = server.create_key()
    server.start()
    warm_up = httpx.post(
        f"{server.url}/v1/messages",
        json={"recipient": "a@example.com", "subject": "s", "text": "a" * MB},
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert warm_up.status_code == 422
    before = peak_rss_bytes(server)

    response = post_chunked(server, key, 60 * MB)

    after = peak_rss_bytes(server)
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert b'"payload_too_large"' in response
    # The 50 MB read before the limit trips, and a little more; never the
    # 60 MB body, nor a joined copy of what was read.
    assert after - before < 58 * MB, (before, after)


def test_declared_60mb_rejected(server: ServerProcess) -> None:
    key = server.create_key()
    server.start()
    head = (
        "POST /v1/messages HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {key}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {60 * MB}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head + b"{")
        response = _read_response(sock)
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
