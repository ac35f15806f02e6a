"""Webhook delivery rate and the cost of webhooks on the send path.

Run from the repository root::

    .venv/bin/python -m benchmarks.webhooks [--events 2000] [--messages 2000]
        [--runs 3]

1. Delivery rate: ``--events`` messages are queued (one ``message.queued``
   event each) with one webhook endpoint subscribed, then the event
   processor and the dispatcher run until a receiver process on loopback
   has returned 200 for every post. Prints events per second.
2. Send path: ``--messages`` submissions from 64 concurrent callers through
   ``Engine.send`` with delivery workers on (sink mode) and the background
   event tasks on, first with no endpoint and then with two subscribed
   endpoints. Prints messages per second.

Everything runs on SQLite in a temporary folder and on loopback. The
receiver is a one-route uvicorn app in its own process.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import anyio.to_thread
import httpx

from sendarix_backends.engine import Engine
from sendarix_backends.settings import Settings
from tests.support.server_process import free_port

_RECEIVER = """
import sys
import uvicorn

count = 0

async def app(scope, receive, send):
    global count
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    if scope["method"] == "POST":
        count += 1
        body = b"ok"
    else:
        body = str(count).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
"""


class CountingReceiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        # One client for every count: a new one builds an SSL context each
        # time, which took 16% of the measured process's CPU in a profile.
        self._client = httpx.Client(timeout=2, trust_env=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def __enter__(self) -> CountingReceiver:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _RECEIVER, str(self.port)]
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                self.count()
                return self
            except httpx.TransportError:
                time.sleep(0.05)
        raise RuntimeError("the receiver did not start")

    def __exit__(self, *exc_info: object) -> None:
        self._client.close()
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def count(self) -> int:
        return int(self._client.get(f"http://127.0.0.1:{self.port}/count").text)


def _settings(folder: Path, name: str) -> Settings:
    return Settings(
        database_url=f"sqlite:///{folder / name}",
        delivery_mode="sink",
        webhook_allow_private=True,
    )


def _body(number: int) -> dict[str, object]:
    return {
        "recipient": f"user{number}@example.test",
        "from": "Acme <no-reply@acme.example>",
        "subject": "Your verification code",
        "text": f"Your code is {number:06d}.",
        "tags": ["otp"],
    }


async def _send_all(engine: Engine, count: int, callers: int = 64) -> float:
    numbers = iter(range(count))
    started = time.perf_counter()

    async def caller() -> None:
        for number in numbers:
            await engine.send(_body(number))

    async with anyio.create_task_group() as group:
        for _ in range(callers):
            group.start_soon(caller)
    return time.perf_counter() - started


async def delivery_rate(folder: Path, events: int) -> float:
    with CountingReceiver() as receiver:
        engine = Engine.from_settings(_settings(folder, "rate.db"), workers=False)
        async with engine:
            assert engine.events is not None
            await engine.events.webhooks.create(
                receiver.url, event_types=["message.queued"]
            )
            await _send_all(engine, events)
            started = time.perf_counter()
            async with anyio.create_task_group() as group:
                await group.start(engine.events.run)
                while await anyio.to_thread.run_sync(receiver.count) < events:
                    await anyio.sleep(0.05)
                group.cancel_scope.cancel()
            return events / (time.perf_counter() - started)


async def send_throughput(folder: Path, messages: int, endpoints: int) -> float:
    with CountingReceiver() as receiver:
        name = f"send-{endpoints}.db"
        async with Engine.from_settings(_settings(folder, name)) as engine:
            assert engine.events is not None
            for _ in range(endpoints):
                await engine.events.webhooks.create(receiver.url)
            elapsed = await _send_all(engine, messages)
            return messages / elapsed


def _summary(values: list[float], unit: str) -> str:
    ordered = sorted(values)
    median = ordered[len(ordered) // 2]
    return f"{median:,.0f} {unit} ({ordered[0]:,.0f}-{ordered[-1]:,.0f})"


async def main(events: int, messages: int, runs: int) -> None:
    print(f"cpus: {len(os.sched_getaffinity(0))}, load: {os.getloadavg()[0]:.2f}")
    print(f"sqlite, loopback receiver, median of {runs} runs (min-max)")
    rates: list[float] = []
    sends: dict[int, list[float]] = {0: [], 2: []}
    for run in range(runs):
        with tempfile.TemporaryDirectory() as temporary:
            folder = Path(temporary)
            rates.append(await delivery_rate(folder, events))
            for endpoints, values in sends.items():
                values.append(await send_throughput(folder, messages, endpoints))
        print(f"run {run + 1} done, load: {os.getloadavg()[0]:.2f}")
    print(f"webhook delivery rate ({events} events): {_summary(rates, 'events/s')}")
    for endpoints, values in sends.items():
        summary = _summary(values, "messages/s")
        print(f"send path, {endpoints} endpoints ({messages} messages): {summary}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    arguments = parser.parse_args()
    anyio.run(main, arguments.events, arguments.messages, arguments.runs)
