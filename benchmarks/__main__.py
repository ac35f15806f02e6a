"""Run the benchmarks and print a table of medians beside reference runs.

    benchmarks/run                      # everything, about 14 minutes on 2 cores
    benchmarks/run --only http --runs 5
    benchmarks/run --smoke              # tiny counts: proves the scripts work

Every server is started here on 127.0.0.1 and stopped at the end, also when
the run is interrupted with SIGINT or SIGTERM. Progress goes to standard
error; the table and the machine description go to standard output, and to
``--output`` as Markdown when given.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import signal
import sys
import tempfile
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import attrs
import psycopg

from benchmarks import bench_growth
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
    "http_seconds": (int, 10, 1, "whole seconds of load per HTTP run"),
    "http_connections": (int, 64, 8, "concurrent HTTP connections"),
    "delivery_count": (int, 50_000, 300, "messages per unsigned delivery run"),
    "dkim_count": (int, 10_000, 100, "messages per DKIM-signed delivery run"),
    "smtp_connections": (int, 10, 4, "SMTP connections of the raw client"),
    "e2e_seconds": (int, 10, 1, "whole seconds of HTTP load per end-to-end run"),
    "postfix_count": (int, 10_000, 200, "messages per Postfix run"),
    "relay_sessions": (int, 64, 8, "parallel SMTP sessions on the relay"),
    "relay_messages": (int, 5_000, 200, "messages per relay run"),
    "memory_count": (int, 1_000_000, 5_000, "messages queued for the memory run"),
    "memory_seconds": (float, 20.0, 2.0, "seconds the memory run delivers"),
    "growth_claims": (int, 30, 5, "timed claims per queue size"),
}


def main() -> int:
    arguments = _parse_arguments()
    # SIGTERM unwinds like Ctrl-C, so every server started so far is stopped
    # and the temporary folders are removed.
    signal.signal(signal.SIGTERM, _exit_on_signal)
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
        reduced = _reduced_counts(arguments)
        if options.smoke or reduced:
            # The targets are set for the full counts. In smaller runs,
            # start-up weighs too much to judge them.
            rows = [attrs.evolve(row, met=None) for row in rows]
        if reduced and not options.smoke:
            print(
                f"no verdicts: {', '.join(reduced)} below the full counts "
                "that the targets are set for",
                file=sys.stderr,
            )
        table = format_table(rows)

    footer = f"load average at end (1, 5, 15 min): {load_average()}"
    if options.loads:
        low, high = min(options.loads), max(options.loads)
        footer += f"\n1-minute load average during the run: {low:.2f} to {high:.2f}"
    print(f"{footer}\n\n{table}")
    if arguments.output:
        text = "\n".join(["```", *header, footer, "```", "", table, ""])
        arguments.output.write_text(text)
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
        "--runs",
        type=_positive(int),
        help="runs per measurement (default 3, smoke 1)",
    )
    parser.add_argument(
        "--postgresql-url",
        default=DEFAULT_POSTGRESQL,
        help=f"PostgreSQL server for the queue runs (default {DEFAULT_POSTGRESQL})",
    )
    parser.add_argument(
        "--growth-counts",
        type=_growth_counts,
        help="small,large queue sizes for the growth run "
        "(default 10000,1000000; smoke 1000,5000)",
    )
    parser.add_argument(
        "--worker-concurrency",
        type=_positive(int),
        help="SENDARIX_WORKER_CONCURRENCY of the delivery and end-to-end "
        "runs (default: the setting's default)",
    )
    parser.add_argument(
        "--growth-postgresql",
        action="store_true",
        help="also measure claim latency growth on PostgreSQL",
    )
    parser.add_argument(
        "--output",
        type=_output_path,
        help="also write the results here as Markdown",
    )
    for name, (kind, full, smoke, help_text) in COUNTS.items():
        flag = "--" + name.replace("_", "-")
        parser.add_argument(
            flag,
            type=_positive(kind),
            help=f"{help_text} (default {full}, smoke {smoke})",
        )
    arguments = parser.parse_args()
    growth = arguments.only is None or "growth" in arguments.only
    if growth and (error := _growth_error(arguments)):
        parser.error(f"argument --growth-counts: {error}")
    return arguments


def _growth_error(arguments: argparse.Namespace) -> str:
    """Return why the growth run's small queue is too small, or ''."""
    small = (arguments.growth_counts or _default_growth(arguments.smoke))[0]
    claims = int(_count(arguments, "growth_claims"))
    needed = (bench_growth.WARM_UP_CLAIMS + claims) * bench_growth.BATCH
    if small >= needed:
        return ""
    return (
        f"the small queue must hold at least {needed:,} messages for "
        f"{bench_growth.WARM_UP_CLAIMS} warm-up and {claims} timed claims of "
        f"{bench_growth.BATCH}, not {small:,}"
    )


def _positive(kind: type[int] | type[float]) -> Callable[[str], int | float]:
    """Return an argparse type that accepts only numbers above zero."""

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            expected = "a whole number" if kind is int else "a number"
            raise argparse.ArgumentTypeError(
                f"expected {expected} above 0, got {text!r}"
            ) from None
        if not value > 0:
            raise argparse.ArgumentTypeError(f"must be above 0, not {text}")
        return value

    return parse


def _growth_counts(text: str) -> tuple[int, int]:
    parts = text.split(",")
    try:
        small, large = (int(part) for part in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected SMALL,LARGE as two whole numbers, such as 10000,1000000, "
            f"got {text!r}"
        ) from None
    if not 0 < small < large:
        raise argparse.ArgumentTypeError(
            f"the small size must be above 0 and below the large one, got {text!r}"
        )
    return small, large


def _default_growth(smoke: bool) -> tuple[int, int]:
    return (1_000, 5_000) if smoke else (10_000, 1_000_000)


def _output_path(text: str) -> Path:
    """Check at the start that the results file can be written at the end.

    The path is taken from the folder ``benchmarks/run`` was started in.
    """
    path = Path(os.environ.get("BENCHMARKS_CALLER_DIR", ".")) / text
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; name a file")
    folder = path.parent
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(
            f"the folder of {text} does not exist; create it first"
        )
    if not os.access(folder, os.W_OK) or (
        path.exists() and not os.access(path, os.W_OK)
    ):
        raise argparse.ArgumentTypeError(f"{text} is not writable")
    return path


def _exit_on_signal(number: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + number)


def _options(arguments: argparse.Namespace, workdir: Path) -> Options:
    smoke = arguments.smoke
    counts: dict[str, Any] = {name: _count(arguments, name) for name in COUNTS}
    small, large = arguments.growth_counts or _default_growth(smoke)
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


def _reduced_counts(arguments: argparse.Namespace) -> list[str]:
    """Return the count options given below their full defaults, as flags."""
    reduced = []
    for name, (_, full, _, _) in COUNTS.items():
        value = getattr(arguments, name)
        if value is not None and value < full:
            reduced.append(f"--{name.replace('_', '-')} {value}")
    growth = arguments.growth_counts
    full_small, full_large = _default_growth(smoke=False)
    if growth is not None and (growth[0] < full_small or growth[1] < full_large):
        reduced.append(f"--growth-counts {growth[0]},{growth[1]}")
    return reduced


def _count(arguments: argparse.Namespace, name: str) -> int | float:
    """Return a count option as given, or its full or smoke default."""
    value = getattr(arguments, name)
    if value is None:
        _, full, smoke_value, _ = COUNTS[name]
        value = smoke_value if arguments.smoke else full
    assert isinstance(value, int | float)
    return value


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
