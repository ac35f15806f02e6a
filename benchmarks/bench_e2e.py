"""End to end: HTTP in, SMTP out to ``smtp-sink``, beside Postfix relaying.

Sendarix side: ``sendarix serve`` on a fresh SQLite database delivers in
smarthost mode to ``smtp-sink``, while ``wrk`` posts messages over 64
connections for a fixed time. The rate is the messages stored, divided by
the time from the start of the load until the last of them is delivered.

Reference: a private Postfix instance (``postfix.PostfixInstance``) relays to
the same kind of sink what ``smtp-source`` sends it over as many sessions,
with messages of about the same size. Its rate is the messages sent divided
by the time until the sink has received all of them.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.fill import count_messages
from benchmarks.options import Options
from benchmarks.payload import SEND_REQUEST, write_body
from benchmarks.postfix import PostfixInstance, postfix_missing_reason
from benchmarks.processes import (
    LOOPBACK,
    SendarixProcess,
    SmtpSink,
    check_deadline,
    find_tool,
)
from benchmarks.report import Row, Series, not_available
from benchmarks.wrk import run_wrk, wrk_missing_reason
from sendarix_core.mime import build_message_bytes
from sendarix_core.submission import new_message
from sendarix_core.validation import validate_send_request

TARGET = "≥ 2x Postfix's rate"
POLL_SECONDS = 0.1


def run(options: Options) -> list[Row]:
    title = "end to end: HTTP in, SMTP out to smtp-sink"
    reason = wrk_missing_reason() or (
        "" if find_tool("smtp-sink") else "smtp-sink is not installed"
    )
    if reason:
        return [not_available(title, TARGET, reason)]

    split_title = f"{title}, API and worker in two processes"
    measured = Series("Sendarix", "messages/s", _measure_sendarix(options))
    split = Series("Sendarix", "messages/s", _measure_sendarix(options, split=True))
    reason = postfix_missing_reason()
    if reason:
        options.progress(f"end to end: Postfix reference skipped: {reason}")
        return [
            Row(title, measured, target=TARGET, note=reason),
            Row(split_title, split, target=TARGET, note=reason),
        ]
    reference = Series("Postfix", "messages/s", _measure_postfix(options))
    load = (
        f"{options.e2e_seconds:.0f} s of HTTP load per run, "
        f"{options.http_connections} connections"
    )
    return [
        Row(
            benchmark=title,
            measured=measured,
            reference=reference,
            target=TARGET,
            met=measured.median >= 2 * reference.median,
            note=f"one sendarix serve process; {load}",
        ),
        Row(
            benchmark=split_title,
            measured=split,
            reference=reference,
            target=TARGET,
            met=split.median >= 2 * reference.median,
            note="sendarix serve with SENDARIX_SERVE_WORKERS=false and one "
            f"sendarix worker; {load}",
        ),
    ]


def _measure_sendarix(options: Options, *, split: bool = False) -> tuple[float, ...]:
    """Measure one serve process, or with ``split`` a serve that only
    accepts beside a worker process that delivers."""
    workdir = options.workdir / ("e2e-sendarix-split" if split else "e2e-sendarix")
    workdir.mkdir()
    database_url = f"sqlite:///{workdir / 'sendarix.db'}"
    body = write_body(workdir / "request.json")
    rates = []
    with SmtpSink(workdir) as sink:
        settings = {
            "SENDARIX_DATABASE_URL": database_url,
            "SENDARIX_DELIVERY_MODE": "smarthost",
            "SENDARIX_SMARTHOST": f"smtp://{LOOPBACK}:{sink.port}",
            "SENDARIX_HELO_NAME": "bench.localhost",
            **options.worker_settings(),
        }
        worker = None
        if split:
            settings["SENDARIX_SERVE_WORKERS"] = "false"
            # The worker learns of new messages only by polling.
            settings["SENDARIX_POLL_INTERVAL"] = "0.05"
            worker = SendarixProcess(
                workdir, settings, command="worker", name="sendarix-worker"
            )
        server = SendarixProcess(workdir, settings)
        key = server.create_key()
        with server, worker or contextlib.nullcontext():
            for _ in range(options.runs):
                stored_before = count_messages(database_url)
                started = time.perf_counter()
                run_wrk(
                    f"{server.url}/v1/messages",
                    seconds=options.e2e_seconds,
                    connections=options.http_connections,
                    body_file=body,
                    api_key=key,
                )
                _wait_until_delivered(worker or server, database_url)
                elapsed = time.perf_counter() - started
                stored = count_messages(database_url) - stored_before
                rates.append(stored / elapsed)
                label = "two processes" if split else "one process"
                options.progress(
                    f"end to end Sendarix, {label}: {stored:,} messages "
                    f"in {elapsed:.1f} s"
                )
        if sink.received() < count_messages(database_url):
            raise RuntimeError("smtp-sink received fewer messages than were stored")
    return tuple(rates)


def _wait_until_delivered(server: SendarixProcess, database_url: str) -> None:
    started = time.perf_counter()
    while count_messages(database_url, unfinished=True) > 0:
        server.check_running()
        check_deadline(started, "Sendarix to deliver the accepted messages")
        time.sleep(POLL_SECONDS)


def _measure_postfix(options: Options) -> tuple[float, ...]:
    workdir = options.workdir / "e2e-postfix"
    workdir.mkdir()
    rates = []
    with (
        SmtpSink(workdir) as sink,
        PostfixInstance(sink.port) as postfix,
    ):
        for _ in range(options.runs):
            received_before = sink.received()
            started = time.perf_counter()
            _smtp_source(postfix.port, options, workdir)
            target = received_before + options.postfix_count
            while sink.received() < target:
                sink.check_running()
                check_deadline(started, "Postfix to relay every message")
                time.sleep(POLL_SECONDS)
            elapsed = time.perf_counter() - started
            rates.append(options.postfix_count / elapsed)
            options.progress(
                f"end to end Postfix: {options.postfix_count:,} messages "
                f"in {elapsed:.1f} s"
            )
    return tuple(rates)


def _smtp_source(port: int, options: Options, workdir: Path) -> None:
    """Send the messages with smtp-source, reusing each session (``-d``)."""
    binary = find_tool("smtp-source")
    if binary is None:
        raise RuntimeError(postfix_missing_reason())
    command = [
        binary,
        "-d",
        "-s",
        str(options.http_connections),
        "-m",
        str(options.postfix_count),
        "-l",
        str(_message_size()),
        "-f",
        "no-reply@acme.example",
        "-t",
        "ada@example.com",
        f"{LOOPBACK}:{port}",
    ]
    with (workdir / "smtp-source.log").open("ab") as log:
        subprocess.run(command, stdout=log, stderr=log, check=True, timeout=600)


def _message_size() -> int:
    """Return the size of the message Sendarix builds for the HTTP request."""
    now = datetime.now(UTC)
    request = validate_send_request(SEND_REQUEST, now=now)
    transition = new_message(
        request, message_id="msg_size", event_id="evt_size", now=now, api_key=None
    )
    return len(build_message_bytes(transition.after, date=now))
