"""SMTP relay ingress: durable ``250`` replies beside a bare aiosmtpd server.

Sendarix side: ``sendarix serve`` on a fresh SQLite database with its relay
on a loopback port (AUTH without TLS allowed from loopback) and delivery in
sink mode. A second row runs it with ``SENDARIX_SERVE_WORKERS=false``, so
the process only accepts. Each ``250`` after DATA follows the commit of the
message.
Reference: aiosmtpd with a handler that accepts and drops every message.
Both are loaded by ``smtp_load`` in its own process, with the same sessions
and message. It logs in with the API key only on the relay.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import orjson

from benchmarks.options import Options
from benchmarks.processes import (
    REPOSITORY,
    SendarixProcess,
    Service,
    free_port,
    python_environment,
    wait_for_port,
)
from benchmarks.report import Row, Series, counted, not_available

TARGET = "≥ 50% of the bare server's rate"


def run(options: Options) -> list[Row]:
    title = (
        f"SMTP relay ingress, durable 250, {counted(options.relay_sessions, 'session')}"
    )
    if importlib.util.find_spec("sendarix_http.relay") is None:
        reason = "the SMTP relay listener is not part of this version"
        return [not_available(title, TARGET, reason)]

    relay = _measure_relay(options)
    api_only = _measure_relay(options, api_only=True)
    bare = _measure_bare(options)
    reference = Series("bare aiosmtpd", "messages/s", tuple(r["rate"] for r in bare))
    return [
        _row(title, relay, reference, options, "sink delivery mode"),
        _row(
            f"{title}, API only",
            api_only,
            reference,
            options,
            "SENDARIX_SERVE_WORKERS=false, no delivery",
        ),
    ]


def _row(
    title: str,
    relay: list[dict[str, float]],
    reference: Series,
    options: Options,
    mode: str,
) -> Row:
    measured = Series("Sendarix relay", "messages/s", tuple(r["rate"] for r in relay))
    p99 = Series("p99", "ms", tuple(r["p99_ms"] for r in relay))
    return Row(
        benchmark=title,
        measured=measured,
        reference=reference,
        target=TARGET,
        met=measured.median >= 0.5 * reference.median,
        note=f"{options.relay_messages:,} messages per run, {mode}, "
        f"p99 {p99.describe()}",
    )


def _measure_relay(
    options: Options, *, api_only: bool = False
) -> list[dict[str, float]]:
    workdir = options.workdir / ("relay-sendarix-api" if api_only else "relay-sendarix")
    workdir.mkdir()
    port = free_port()
    settings = {
        "SENDARIX_DATABASE_URL": f"sqlite:///{workdir / 'sendarix.db'}",
        "SENDARIX_DELIVERY_MODE": "sink",
        "SENDARIX_RELAY_PORT": str(port),
        "SENDARIX_RELAY_ALLOW_PLAINTEXT_LOOPBACK": "true",
        "SENDARIX_HELO_NAME": "bench.localhost",
    }
    if api_only:
        settings["SENDARIX_SERVE_WORKERS"] = "false"
    server = SendarixProcess(workdir, settings)
    key = server.create_key()
    with server:
        if not wait_for_port(port, check=server.check_running):
            raise RuntimeError(f"the relay did not listen on port {port}")
        return _load(port, key, options, "relay, API only" if api_only else "relay")


def _measure_bare(options: Options) -> list[dict[str, float]]:
    port = free_port()
    command = [sys.executable, "-m", "benchmarks.bare_smtp", "--port", str(port)]
    log = options.workdir / "bare-smtp.log"
    environment = python_environment()
    with Service(command, log_path=log, env=environment, cwd=REPOSITORY) as server:
        server.wait_for_port(port)
        return _load(port, "", options, "bare aiosmtpd")


def _load(
    port: int, password: str, options: Options, label: str
) -> list[dict[str, float]]:
    results = []
    for _ in range(options.runs):
        command = [
            sys.executable,
            "-m",
            "benchmarks.smtp_load",
            "--port",
            str(port),
            "--sessions",
            str(options.relay_sessions),
            "--messages",
            str(options.relay_messages),
        ]
        completed = subprocess.run(
            command,
            env=python_environment({"BENCH_SMTP_PASSWORD": password}),
            cwd=REPOSITORY,
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if completed.returncode != 0:
            raise RuntimeError(f"smtp_load failed:\n{completed.stderr[-3000:]}")
        result = orjson.loads(completed.stdout.strip().splitlines()[-1])
        result["rate"] = result["messages"] / result["seconds"]
        options.progress(
            f"relay {label}: {result['rate']:,.0f} messages/s, "
            f"p99 {result['p99_ms']:.1f} ms"
        )
        results.append(result)
    return results
