"""Accepted messages per second: ``POST /v1/messages`` against the batch endpoint.

Starts ``sendarix serve`` (SQLite, sink delivery mode) on loopback and loads
it with wrk in a separate process: first single-message requests over 64
connections, then ``POST /v1/messages/batch`` with ``--batch-size`` messages
per request over 8 connections. Each run prints messages/s and the p50 and
p99 latency of one request; the table shows the median of ``--runs`` runs
with the spread. No assertion: this only measures.

    .venv/bin/python -m benchmarks.batch_send --runs 3 --seconds 10
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import orjson

from benchmarks.machine import describe_machine
from benchmarks.processes import SendarixProcess
from benchmarks.wrk import WrkResult, run_wrk, wrk_missing_reason

SINGLE_CONNECTIONS = 64
BATCH_CONNECTIONS = 8


def message(number: int) -> dict[str, object]:
    return {
        "recipient": f"user{number}@example.test",
        "from": "Acme <no-reply@acme.example>",
        "subject": "Your verification code",
        "text": f"Your code is {number:06d}. It expires in 5 minutes.",
        "tags": ["otp"],
    }


def load(url: str, key: str, body: Path, connections: int, seconds: float) -> WrkResult:
    return run_wrk(
        url, seconds=seconds, connections=connections, body_file=body, api_key=key
    )


def summarize(label: str, results: list[WrkResult], per_request: int) -> str:
    rates = [result.rate * per_request for result in results]
    p50 = statistics.median(result.p50_ms for result in results)
    p99 = statistics.median(result.p99_ms for result in results)
    return (
        f"| {label} | {statistics.median(rates):,.0f} ({min(rates):,.0f} to "
        f"{max(rates):,.0f}) | {p50:.1f} ms | {p99:.1f} ms |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per endpoint")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds per run")
    parser.add_argument(
        "--batch-size", type=int, default=100, help="messages per batch"
    )
    args = parser.parse_args()
    reason = wrk_missing_reason()
    if reason:
        raise SystemExit(reason)

    with tempfile.TemporaryDirectory(prefix="sendarix-batch-") as folder:
        workdir = Path(folder)
        single = workdir / "single.json"
        single.write_bytes(orjson.dumps(message(1)))
        batch = workdir / "batch.json"
        messages = [message(number) for number in range(args.batch_size)]
        batch.write_bytes(orjson.dumps({"messages": messages, "mode": "strict"}))
        settings = {
            "SENDARIX_DATABASE_URL": f"sqlite:///{workdir / 'sendarix.db'}",
            "SENDARIX_DELIVERY_MODE": "sink",
        }
        server = SendarixProcess(workdir, settings)
        key = server.create_key()
        with server:
            single_url = f"{server.url}/v1/messages"
            batch_url = f"{server.url}/v1/messages/batch"
            load(single_url, key, single, SINGLE_CONNECTIONS, 2.0)
            singles = [
                load(single_url, key, single, SINGLE_CONNECTIONS, args.seconds)
                for _ in range(args.runs)
            ]
            batches = [
                load(batch_url, key, batch, BATCH_CONNECTIONS, args.seconds)
                for _ in range(args.runs)
            ]

    print("\n".join(describe_machine()))
    print()
    print("| endpoint | messages/s, median (min to max) | p50 | p99 |")
    print("|---|---|---|---|")
    single_label = f"POST /v1/messages, {SINGLE_CONNECTIONS} connections"
    print(summarize(single_label, singles, 1))
    batch_label = (
        f"POST /v1/messages/batch, {args.batch_size} per request, "
        f"{BATCH_CONNECTIONS} connections"
    )
    print(summarize(batch_label, batches, args.batch_size))


if __name__ == "__main__":
    main()
