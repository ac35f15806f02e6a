"""An SMTP load generator: sessions in parallel, each sending its share.

Each session connects once, logs in with AUTH PLAIN when the environment
variable ``BENCH_SMTP_PASSWORD`` is set, and sends its messages one after
another with aiosmtplib. It prints one JSON line: messages sent, seconds,
and the p50 and p99 time from MAIL to the reply after DATA, in
milliseconds.

    python -m benchmarks.smtp_load --port 2525 --sessions 64 --messages 5000
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import aiosmtplib
import anyio
import orjson

from benchmarks.payload import SEND_REQUEST

LOOPBACK = "127.0.0.1"


def message_bytes() -> bytes:
    """Return a message with the headers and bodies of ``SEND_REQUEST``."""
    lines = [
        f"From: {SEND_REQUEST['from']}",
        f"To: {SEND_REQUEST['recipient']}",
        f"Subject: {SEND_REQUEST['subject']}",
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=utf-8",
        "",
        str(SEND_REQUEST["text"]).rstrip("\n"),
        "",
    ]
    return "\r\n".join(lines).encode()


async def send_share(
    arguments: argparse.Namespace, count: int, latencies: list[float]
) -> None:
    client = aiosmtplib.SMTP(
        hostname=LOOPBACK,
        port=arguments.port,
        start_tls=False,
        local_hostname="bench.localhost",
        timeout=60,
    )
    data = message_bytes()
    async with client:
        password = os.environ.get("BENCH_SMTP_PASSWORD")
        if password:
            await client.ehlo()
            await client.auth_plain("bench", password)
        for _ in range(count):
            started = time.perf_counter()
            await client.sendmail("no-reply@acme.example", ["ada@example.com"], data)
            latencies.append(time.perf_counter() - started)


async def run(arguments: argparse.Namespace) -> dict[str, float]:
    latencies: list[float] = []
    sessions = arguments.sessions
    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for index in range(sessions):
            share = arguments.messages // sessions
            share += int(index < arguments.messages % sessions)
            group.start_soon(send_share, arguments, share, latencies)
    seconds = time.perf_counter() - started
    cut_points = statistics.quantiles(latencies, n=100)
    return {
        "messages": len(latencies),
        "seconds": seconds,
        "p50_ms": cut_points[49] * 1000,
        "p99_ms": cut_points[98] * 1000,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True, help="port on 127.0.0.1")
    parser.add_argument("--sessions", type=int, default=64, help="parallel sessions")
    parser.add_argument("--messages", type=int, default=5000, help="messages in all")
    arguments = parser.parse_args()
    print(orjson.dumps(anyio.run(run, arguments)).decode(), flush=True)


if __name__ == "__main__":
    main()
