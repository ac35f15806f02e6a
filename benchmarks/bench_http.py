"""HTTP accept: ``POST /v1/messages`` beside a bare Starlette app.

``sendarix serve`` runs on a fresh SQLite database in sink delivery mode:
its workers run and mark each message delivered without opening a
connection, so the measured rate includes the workers' share of the CPU.
A second pair of rows runs it with ``SENDARIX_SERVE_WORKERS=false``, so the
process only accepts and the messages stay queued. Every ``202`` follows
the commit of its message. The bare app returns
``202`` after reading the body. Both are served by uvicorn with the same
options, and ``wrk`` (a separate process) loads them with the same request.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.options import Options
from benchmarks.payload import write_body
from benchmarks.processes import (
    REPOSITORY,
    SendarixProcess,
    Service,
    free_port,
    python_environment,
)
from benchmarks.report import Row, Series, not_available
from benchmarks.wrk import WrkResult, run_wrk, wrk_missing_reason

RATE_TARGET = "≥ 1/3 of the bare app's rate"
LATENCY_TARGET = "p99 ≤ 25 ms"
WARM_UP_SECONDS = 2.0


def run(options: Options) -> list[Row]:
    title = f"HTTP accept, {options.http_connections} connections"
    reason = wrk_missing_reason()
    if reason:
        return [
            not_available(title, RATE_TARGET, reason),
            not_available(f"{title}: latency", LATENCY_TARGET, reason),
        ]

    body = write_body(options.workdir / "request.json")
    sendarix = _measure_sendarix(options, body)
    api_only = _measure_sendarix(options, body, api_only=True)
    bare = _measure_bare(options, body)
    return [
        *rows_for(title, sendarix, bare, options, "sink delivery mode"),
        *rows_for(
            f"{title}, API only",
            api_only,
            bare,
            options,
            "SENDARIX_SERVE_WORKERS=false, no delivery",
        ),
    ]


def rows_for(
    title: str,
    sendarix: Sequence[WrkResult],
    bare: Sequence[WrkResult],
    options: Options,
    mode: str,
) -> list[Row]:
    rate = Series("Sendarix", "requests/s", tuple(r.rate for r in sendarix))
    bare_rate = Series("bare Starlette", "requests/s", tuple(r.rate for r in bare))
    p99 = Series("Sendarix p99", "ms", tuple(r.p99_ms for r in sendarix))
    bare_p99 = Series("bare Starlette p99", "ms", tuple(r.p99_ms for r in bare))
    p50 = Series("p50", "ms", tuple(r.p50_ms for r in sendarix))
    errors = sum(r.status_errors + r.socket_errors for r in sendarix)
    note = f"{options.http_seconds:.0f} s per run, {mode}"
    if errors:
        note += f"; {errors} requests failed"
    return [
        Row(
            benchmark=title,
            measured=rate,
            reference=bare_rate,
            target=RATE_TARGET,
            met=rate.median >= bare_rate.median / 3,
            note=note,
        ),
        Row(
            benchmark=f"{title}: p99 latency",
            measured=p99,
            reference=bare_p99,
            target=LATENCY_TARGET,
            met=p99.median <= 25,
            note=f"Sendarix p50 {p50.describe()}",
        ),
    ]


def _measure_sendarix(
    options: Options, body: Path, *, api_only: bool = False
) -> list[WrkResult]:
    workdir = options.workdir / ("http-sendarix-api" if api_only else "http-sendarix")
    workdir.mkdir()
    settings = {
        "SENDARIX_DATABASE_URL": f"sqlite:///{workdir / 'sendarix.db'}",
        "SENDARIX_DELIVERY_MODE": "sink",
    }
    if api_only:
        settings["SENDARIX_SERVE_WORKERS"] = "false"
    server = SendarixProcess(workdir, settings)
    key = server.create_key()
    label = "Sendarix, API only" if api_only else "Sendarix"
    with server:
        return _load(f"{server.url}/v1/messages", key, body, options, label)


def _measure_bare(options: Options, body: Path) -> list[WrkResult]:
    port = free_port()
    command = [sys.executable, "-m", "benchmarks.bare_app", "--port", str(port)]
    log = options.workdir / "bare-app.log"
    environment = python_environment()
    with Service(command, log_path=log, env=environment, cwd=REPOSITORY) as server:
        server.wait_for_port(port)
        url = f"http://127.0.0.1:{port}/v1/messages"
        return _load(url, "", body, options, "bare Starlette")


def _load(
    url: str, key: str, body: Path, options: Options, label: str
) -> list[WrkResult]:
    run_wrk(
        url,
        seconds=WARM_UP_SECONDS,
        connections=options.http_connections,
        body_file=body,
        api_key=key,
    )
    results = []
    for _ in range(options.runs):
        result = run_wrk(
            url,
            seconds=options.http_seconds,
            connections=options.http_connections,
            body_file=body,
            api_key=key,
        )
        options.progress(
            f"HTTP {label}: {result.rate:,.0f} requests/s, "
            f"p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms"
        )
        results.append(result)
    return results
