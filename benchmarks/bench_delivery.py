"""Delivery: a pre-filled queue drained to ``smtp-sink``, beside raw aiosmtplib.

Sendarix side: ``fill.fill_queue`` queues the messages in a fresh SQLite
database, then ``sendarix worker`` delivers them in smarthost mode to
``smtp-sink`` on loopback, with its default 200 deliveries in flight over at
most 10 pooled sessions. The rate counts from the first completed message
to the last, so process start-up is left out.

A second unsigned series runs two ``sendarix worker`` processes on the same
database, as an operator would run one per core. Each process has its own
pool, so they open up to 20 sessions between them, and its reference is two
aiosmtplib processes with as many sessions each as the one-process reference.

The DKIM-signed runs, on a smaller queue since signing dominates their
time, first add the sender domain with new keys (RSA 2048) and store it as
verified, so the worker signs every message.

Reference: aiosmtplib alone sends the same unsigned message bytes to the
same sink over as many reused sessions as Sendarix's pool opens, with
nothing stored, on the event loop the worker runs on.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime

import aiosmtplib
import anyio

from benchmarks import loops
from benchmarks.fill import count_messages, fill_queue
from benchmarks.options import Options
from benchmarks.processes import (
    LOOPBACK,
    SendarixProcess,
    SmtpSink,
    check_deadline,
    find_tool,
)
from benchmarks.queue_throughput import build_submissions
from benchmarks.report import Row, Series, counted, not_available
from sendarix_backends.domains import DomainStatus
from sendarix_backends.engine import Engine
from sendarix_backends.settings import Settings
from sendarix_backends.sql import SqlStore
from sendarix_backends.sql.domains import SqlDomainStore
from sendarix_core.mime import build_message_bytes

TARGET = "≥ 40% of the raw client's rate"
DKIM_TARGET = "report DKIM-signed too"
# The sender domain of the messages that fill.fill_queue queues.
SENDER_DOMAIN = "acme.example"
POLL_SECONDS = 0.1


def run(options: Options) -> list[Row]:
    title = f"delivery to smtp-sink, {options.delivery_count:,} queued, unsigned"
    split_title = f"{title}, two worker processes"
    signed_title = f"delivery to smtp-sink, {options.dkim_count:,} queued, DKIM-signed"
    if find_tool("smtp-sink") is None:
        reason = "smtp-sink is not installed (Debian package postfix)"
        return [
            not_available(title, TARGET, reason),
            not_available(split_title, TARGET, reason),
            not_available(signed_title, DKIM_TARGET, reason),
        ]

    unsigned = _sendarix_series(options, signed=False)
    split = _sendarix_series(options, signed=False, processes=2)
    signed = _sendarix_series(options, signed=True)
    reference = _raw_series(options, processes=1)
    split_reference = _raw_series(options, processes=2)
    note = "sendarix worker, smarthost mode"
    if options.worker_concurrency is not None:
        note += f", {options.worker_concurrency} in flight"
    rows = [
        Row(
            benchmark=name,
            measured=series,
            reference=raw,
            target=TARGET,
            met=series.median >= 0.4 * raw.median,
            note=row_note,
        )
        for name, series, raw, row_note in [
            (title, unsigned, reference, note),
            (
                split_title,
                split,
                split_reference,
                f"{note}, two processes on one database, each with its own pool",
            ),
        ]
    ]
    rows.append(
        Row(
            benchmark=signed_title,
            measured=signed,
            reference=reference,
            target=DKIM_TARGET,
            note=f"{note}, RSA 2048 relaxed/relaxed; the reference sends unsigned",
        )
    )
    return rows


def _raw_series(options: Options, *, processes: int) -> Series:
    label = "" if processes == 1 else f", {processes} processes"
    rates = []
    for number in range(options.runs):
        rate = _measure_raw(options, number, processes)
        options.progress(f"delivery aiosmtplib{label}: {rate:,.0f} messages/s")
        rates.append(rate)
    sessions = counted(options.smtp_connections, "session")
    if processes > 1:
        sessions += " each"
    return Series(f"aiosmtplib{label}, {sessions}", "messages/s", tuple(rates))


def _sendarix_series(options: Options, *, signed: bool, processes: int = 1) -> Series:
    kind = "DKIM-signed" if signed else "unsigned"
    if processes > 1:
        kind += f", {processes} processes"
    rates = []
    for number in range(options.runs):
        rate = _measure_sendarix(options, number, signed=signed, processes=processes)
        options.progress(f"delivery Sendarix, {kind}: {rate:,.0f} messages/s")
        rates.append(rate)
    return Series(f"Sendarix, {kind}", "messages/s", tuple(rates))


def _measure_sendarix(
    options: Options, number: int, *, signed: bool, processes: int
) -> float:
    kind = "signed" if signed else "unsigned"
    workdir = options.workdir / f"delivery-{kind}-{processes}-{number}"
    workdir.mkdir()
    database_url = f"sqlite:///{workdir / 'sendarix.db'}"
    count = options.dkim_count if signed else options.delivery_count
    fill_queue(database_url, count)
    if signed:
        anyio.run(add_verified_domain, database_url, SENDER_DOMAIN)
    with SmtpSink(workdir) as sink:
        settings = {
            "SENDARIX_DATABASE_URL": database_url,
            "SENDARIX_DELIVERY_MODE": "smarthost",
            "SENDARIX_SMARTHOST": f"smtp://{LOOPBACK}:{sink.port}",
            "SENDARIX_HELO_NAME": "bench.localhost",
            **options.worker_settings(),
        }
        with contextlib.ExitStack() as stack:
            workers = []
            for index in range(processes):
                worker = SendarixProcess(
                    workdir, settings, command="worker", name=f"worker-{index}"
                )
                workers.append(stack.enter_context(worker))
            rate = drain_rate(workers, database_url, count)
        if sink.received() < count:
            raise RuntimeError(
                f"smtp-sink received {sink.received()} of {count} messages"
            )
    return rate


async def add_verified_domain(database_url: str, name: str) -> None:
    """Add a sending domain with new DKIM keys and store it as verified.

    The DNS check is skipped: outbound signs for any domain stored as
    verified, which is the state a successful check leaves.
    """
    settings = Settings(database_url=database_url)
    async with Engine.from_settings(settings, workers=False) as engine:
        await engine.content.domains.add({"domain": name})
        assert isinstance(engine.store, SqlStore)
        await SqlDomainStore(engine.store).record_check(
            name,
            status=DomainStatus.VERIFIED,
            checked_at=datetime.now(UTC),
            missing=(),
        )


def drain_rate(
    workers: Sequence[SendarixProcess], database_url: str, total: int
) -> float:
    """Wait until no message is unfinished; return the completion rate.

    The clock starts at the first poll that finds a message finished. When
    that poll finds all of them finished, as with the few messages of a
    smoke run, the clock starts with the wait instead, start-up included.
    """
    first: tuple[float, int] | None = None
    waiting_since = time.perf_counter()
    while True:
        for worker in workers:
            worker.check_running()
        check_deadline(waiting_since, f"the worker to deliver {total} messages")
        unfinished = count_messages(database_url, unfinished=True)
        now = time.perf_counter()
        if first is None and unfinished < total:
            first = (now, unfinished)
        if unfinished == 0 and first is not None:
            started, left = first
            if left == 0:
                started, left = waiting_since, total
            return left / max(now - started, POLL_SECONDS)
        time.sleep(POLL_SECONDS)


def _measure_raw(options: Options, number: int, processes: int = 1) -> float:
    workdir = options.workdir / f"delivery-raw-{processes}-{number}"
    workdir.mkdir()
    messages = _message_bytes(options.delivery_count)
    sessions = options.smtp_connections
    with SmtpSink(workdir) as sink:
        if processes == 1:
            seconds = loops.run(_send_all, sink.port, messages, sessions)
        else:
            # Each process times its own sending, so interpreter start-up is
            # left out. The clock runs from the first start to the last end.
            spawn = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(processes, mp_context=spawn) as pool:
                shares = [messages[index::processes] for index in range(processes)]
                spans = list(
                    pool.map(
                        _send_in_process,
                        [sink.port] * processes,
                        shares,
                        [sessions] * processes,
                    )
                )
            seconds = max(end for _, end in spans) - min(start for start, _ in spans)
    return len(messages) / seconds


def _send_in_process(
    port: int, envelopes: list[tuple[str, str, bytes]], sessions: int
) -> tuple[float, float]:
    """Send ``envelopes`` in this process; return its start and end times."""
    started = time.monotonic()
    loops.run(_send_all, port, envelopes, sessions)
    return started, time.monotonic()


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
