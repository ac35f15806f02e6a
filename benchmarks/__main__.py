"""Run the benchmarks and print a table of medians beside reference runs.

    benchmarks/run                      # everything, about 15 minutes on 2 cores
    benchmarks/run --only http --runs 5
    benchmarks/run --smoke              # tiny counts: proves the scripts work

Every server is started here on 127.0.0.1 and stopped at the end. Progress
goes to standard error; the table and the machine description go to
standard output, and to ``--output`` as Markdown when given.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path

import attrs
import psycopg

from benchmarks.machine import describe_machine, load_average
from benchmarks.options import Options
from benchmarks.report import Row, format_table, not_available

DEFAULT_POSTGRESQL = "postgresql://postgres@127.0.0.1:5432/test"

# Name → module; each module has run(options) -> list[Row].
BENCHMARKS = {
    "queue": "benchmarks.bench_queue",
    "http": "benchmarks.bench_http",
    "delivery": "benchmarks.bench_delivery",
    "e2e": "benchmarks.bench_e2e",
    "relay": "benchmarks.bench_relay",
    "growth": "benchmarks.bench_growth",
    "memory": "benchmarks.bench_memory",
}

# Full and smoke values of each count option.
COUNTS: dict[str, tuple[type, object, object, str]] = {
    "queue_count": (int, 100_000, 500, "messages per Sendarix queue run"),
    "procrastinate_count": (int, 5_000, 100, "jobs per procrastinate run"),
    "http_seconds": (float, 10.0, 1.0, "seconds of load per HTTP run"),
    "http_connections": (int, 64, 8, "concurrent HTTP connections"),
    "delivery_count": (int, 50_000, 300, "messages per unsigned delivery run"),
    "dkim_count": (int, 10_000, 100, "messages per DKIM-signed delivery run"),
    "smtp_connections": (int, 10, 4, "SMTP connections of the raw client"),
    "e2e_seconds": (float, 10.0, 1.0, "seconds of HTTP load per end-to-end run"),
    "postfix_count": (int, 10_000, 200, "messages per Postfix run"),
    "relay_sessions": (int, 64, 8, "parallel SMTP sessions on the relay"),
    "relay_messages": (int, 5_000, 200, "messages per relay run"),
    "memory_count": (int, 1_000_000, 5_000, "messages queued for the memory run"),
    "memory_seconds": (float, 20.0, 2.0, "seconds the memory run delivers"),
    "growth_claims": (int, 30, 5, "timed claims per queue size"),
}


def main() -> int:
    arguments = _parse_arguments()
    names = arguments.only or list(BENCHMARKS)
    with tempfile.TemporaryDirectory(prefix="sendarix-bench-") as directory:
        options = _options(arguments, Path(directory))
        header = describe_machine()
        header.append(f"command: benchmarks/run {' '.join(sys.argv[1:])}".rstrip())
        print("\n".join(header), flush=True)

        rows: list[Row] = []
        failed = []
        for name in names:
            options.progress(f"{name}: starting")
            try:
                rows.extend(_load(name)(options))
            except Exception as exc:
                # One broken benchmark must not throw away the others' figures.
                traceback.print_exc()
                failed.append(name)
                rows.append(not_available(name, "—", f"failed: {exc!r}"[:300]))
        if options.smoke:
            # Smoke counts are far too small to judge a target.
            rows = [attrs.evolve(row, met=None) for row in rows]
        table = format_table(rows)

    footer = f"load average at end (1, 5, 15 min): {load_average()}"
    if options.loads:
        low, high = min(options.loads), max(options.loads)
        footer += f"\n1-minute load average during the run: {low:.2f} to {high:.2f}"
    print(f"{footer}\n\n{table}")
    if arguments.output:
        text = "\n".join(["```", *header, footer, "```", "", table, ""])
        Path(arguments.output).write_text(text)
    if failed:
        print(f"benchmarks that failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


def _parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run",
        description="Run Sendarix benchmarks beside reference runs on loopback.",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=list(BENCHMARKS),
        metavar="NAME",
        help=f"run only this benchmark; repeatable ({', '.join(BENCHMARKS)})",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="one run of each with tiny counts, to check that the scripts work",
    )
    parser.add_argument(
        "--runs", type=int, help="runs per measurement (default 3, smoke 1)"
    )
    parser.add_argument(
        "--postgresql-url",
        default=DEFAULT_POSTGRESQL,
        help=f"PostgreSQL server for the queue runs (default {DEFAULT_POSTGRESQL})",
    )
    parser.add_argument(
        "--growth-counts",
        help="small,large queue sizes for the growth run "
        "(default 10000,1000000; smoke 1000,5000)",
    )
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        help="SENDARIX_WORKER_CONCURRENCY of the delivery and end-to-end "
        "runs (default: the setting's default)",
    )
    parser.add_argument(
        "--growth-postgresql",
        action="store_true",
        help="also measure claim latency growth on PostgreSQL",
    )
    parser.add_argument("--output", help="also write the results here as Markdown")
    for name, (kind, full, smoke, help_text) in COUNTS.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(
            flag, type=kind, help=f"{help_text} (default {full}, smoke {smoke})"
        )
    return parser.parse_args()


def _options(arguments: argparse.Namespace, workdir: Path) -> Options:
    smoke = arguments.smoke
    counts = {}
    for name, (_, full, smoke_value, _) in COUNTS.items():
        value = getattr(arguments, name)
        if value is None:
            value = smoke_value if smoke else full
        counts[name] = value
    growth = arguments.growth_counts or ("1000,5000" if smoke else "10000,1000000")
    small, large = (int(part) for part in growth.split(","))
    postgresql_url, postgresql_reason = _check_postgresql(arguments.postgresql_url)
    return Options(
        workdir=workdir,
        runs=arguments.runs or (1 if smoke else 3),
        smoke=smoke,
        postgresql_url=postgresql_url,
        postgresql_missing_reason=postgresql_reason,
        procrastinate_missing_reason=_check_procrastinate(),
        growth_counts=(small, large),
        growth_postgresql=arguments.growth_postgresql,
        worker_concurrency=arguments.worker_concurrency,
        **counts,
    )


def _check_postgresql(url: str) -> tuple[str | None, str]:
    try:
        with psycopg.connect(url, connect_timeout=3):
            pass
    except psycopg.Error as exc:
        reason = f"no PostgreSQL answered at {url}: {str(exc).strip()}"
        print(f"skipping PostgreSQL runs: {reason}", file=sys.stderr)
        return None, reason
    return url, ""


def _check_procrastinate() -> str:
    if importlib.util.find_spec("procrastinate") is None:
        reason = "procrastinate is not installed (pip install -e '.[bench]')"
        print(f"skipping the procrastinate reference: {reason}", file=sys.stderr)
        return reason
    return ""


def _load(name: str) -> Callable[[Options], list[Row]]:
    module = importlib.import_module(BENCHMARKS[name])
    run: Callable[[Options], list[Row]] = module.run
    return run


if __name__ == "__main__":
    sys.exit(main())
