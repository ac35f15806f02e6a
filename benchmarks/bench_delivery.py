"""Delivery: a pre-filled queue drained to ``smtp-sink``, beside raw aiosmtplib.

Sendarix side: ``fill.fill_queue`` queues the messages in a fresh SQLite
database, then ``sendarix worker`` delivers them in smarthost mode to
``smtp-sink`` on loopback, with its default 50 deliveries in flight over at
most 10 pooled sessions. The rate counts from the first completed message
to the last, so process start-up is left out.

Reference: aiosmtplib alone sends the same message bytes to the same sink
over as many reused sessions as Sendarix's pool opens, with nothing stored.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime

import aiosmtplib
import anyio

from benchmarks.fill import count_messages, fill_queue
from benchmarks.options import Options
from benchmarks.processes import LOOPBACK, SendarixProcess, SmtpSink, find_tool
from benchmarks.queue_throughput import build_submissions
from benchmarks.report import Row, Series, not_available
from sendarix_core.mime import build_message_bytes

TARGET = "≥ 40% of the raw client's rate"
DKIM_TARGET = "report DKIM-signed too"
POLL_SECONDS = 0.1


def run(options: Options) -> list[Row]:
    title = f"delivery to smtp-sink, {options.delivery_count:,} queued, unsigned"
    dkim = not_available(
        "delivery, DKIM-signed",
        DKIM_TARGET,
        "DKIM signing is not part of the delivery path yet",
    )
    if find_tool("smtp-sink") is None:
        reason = "smtp-sink is not installed (Debian package postfix)"
        return [not_available(title, TARGET, reason), dkim]

    sendarix = []
    for number in range(options.runs):
        rate = _measure_sendarix(options, number)
        options.progress(f"delivery Sendarix: {rate:,.0f} messages/s")
        sendarix.append(rate)
    raw = []
    for number in range(options.runs):
        rate = _measure_raw(options, number)
        options.progress(f"delivery aiosmtplib: {rate:,.0f} messages/s")
        raw.append(rate)

    measured = Series("Sendarix", "messages/s", tuple(sendarix))
    reference = Series(
        f"aiosmtplib, {options.smtp_connections} sessions", "messages/s", tuple(raw)
    )
    row = Row(
        benchmark=title,
        measured=measured,
        reference=reference,
        target=TARGET,
        met=measured.median >= 0.4 * reference.median,
        note="sendarix worker, smarthost mode",
    )
    return [row, dkim]


def _measure_sendarix(options: Options, number: int) -> float:
    workdir = options.workdir / f"delivery-{number}"
    workdir.mkdir()
    database_url = f"sqlite:///{workdir / 'sendarix.db'}"
    fill_queue(database_url, options.delivery_count)
    with SmtpSink(workdir) as sink:
        settings = {
            "SENDARIX_DATABASE_URL": database_url,
            "SENDARIX_DELIVERY_MODE": "smarthost",
            "SENDARIX_SMARTHOST": f"smtp://{LOOPBACK}:{sink.port}",
            "SENDARIX_HELO_NAME": "bench.localhost",
        }
        with SendarixProcess(workdir, settings, command="worker") as worker:
            rate = drain_rate(worker, database_url, options.delivery_count)
        if sink.received() < options.delivery_count:
            raise RuntimeError(
                f"smtp-sink received {sink.received()} of "
                f"{options.delivery_count} messages"
            )
    return rate


def drain_rate(worker: SendarixProcess, database_url: str, total: int) -> float:
    """Wait until no message is unfinished; return the completion rate.

    The clock starts at the first poll that sees a message finished.
    """
    first: tuple[float, int] | None = None
    while True:
        worker.check_running()
        unfinished = count_messages(database_url, unfinished=True)
        now = time.perf_counter()
        if first is None and unfinished < total:
            first = (now, unfinished)
        if unfinished == 0 and first is not None:
            started, left = first
            return left / max(now - started, POLL_SECONDS)
        time.sleep(POLL_SECONDS)


def _measure_raw(options: Options, number: int) -> float:
    workdir = options.workdir / f"delivery-raw-{number}"
    workdir.mkdir()
    messages = _message_bytes(options.delivery_count)
    with SmtpSink(workdir) as sink:
        seconds = anyio.run(_send_all, sink.port, messages, options.smtp_connections)
    return len(messages) / seconds


def _message_bytes(count: int) -> list[tuple[str, str, bytes]]:
    submissions = build_submissions(count, datetime.now(UTC))
    envelopes = []
    for submission in submissions:
        message = submission.transition.after
        data = build_message_bytes(message, date=message.created_at)
        envelopes.append((message.sender.email, message.recipient.email, data))
    return envelopes


async def _send_all(
    port: int, envelopes: list[tuple[str, str, bytes]], sessions: int
) -> float:
    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for index in range(sessions):
            group.start_soon(_send_share, port, envelopes[index::sessions])
    return time.perf_counter() - started


async def _send_share(port: int, envelopes: list[tuple[str, str, bytes]]) -> None:
    client = aiosmtplib.SMTP(
        hostname=LOOPBACK, port=port, start_tls=False, local_hostname="bench.localhost"
    )
    async with client:
        for sender, recipient, data in envelopes:
            await client.sendmail(sender, [recipient], data)
