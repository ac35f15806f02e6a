"""Measure queue throughput of the SQL store: enqueue, then claim and complete.

Each run starts from an empty database: a temporary SQLite file, or a
temporary schema on the PostgreSQL server given by ``--database-url``.
Messages are enqueued with ``create_messages`` in batches, then workers
claim batches with ``claim_and_decide``, which saves an ``accepted``
transition for each in the claim's transaction, and then save a
``delivered`` transition for each. ``--separate-accept`` claims with
``claim_due`` and saves the accepted transitions on their own instead.
A fixed 250 reply replaces SMTP, as a no-op transport would. Only store
calls and the lifecycle functions are timed; building the submissions is
not.

    python benchmarks/queue_throughput.py --count 100000 --batch 500
    python benchmarks/queue_throughput.py \\
        --database-url postgresql://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import secrets
import sqlite3
import statistics
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from importlib import metadata
from pathlib import Path

import anyio
import psycopg

from sendarix_backends.randomness import random_bytes
from sendarix_backends.sql import SqlStore
from sendarix_core.ids import MonotonicIds
from sendarix_core.lifecycle import Transition, create, decide_claimed, deliver
from sendarix_core.model import Address, Message, MessageContent, SmtpReply
from sendarix_core.ports import Submission
from sendarix_core.states import MessageStatus, Priority
from sendarix_core.suppression import Suppression

# The engine generates ids the same way, random part included. Ids of one
# process then sort in creation order, so new rows and index entries go to
# the end of each index.
MONOTONIC_IDS = MonotonicIds()
REPLY = SmtpReply(code=250, enhanced_code="2.0.0", text="OK", mx_host="sink.invalid")
LEASE = timedelta(minutes=5)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="messages per run")
    parser.add_argument("--batch", type=int, default=500, help="messages per call")
    parser.add_argument("--runs", type=int, default=3, help="runs; the median counts")
    parser.add_argument(
        "--workers", type=int, default=1, help="concurrent claim loops (default 1)"
    )
    parser.add_argument(
        "--separate-accept",
        action="store_true",
        help="save the accepted transitions in a transaction of their own after "
        "claim_due, instead of in the claim's (claim_and_decide)",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="postgresql://… server to use (a temporary schema per run); "
        "default: a temporary SQLite file",
    )
    return parser.parse_args()


def new_event_id(now: datetime) -> str:
    return MONOTONIC_IDS.new_id("evt", now, random_bytes(10))


def build_submissions(count: int, now: datetime) -> list[Submission]:
    sender = Address("no-reply", "acme.example", "Acme")
    submissions = []
    for number in range(count):
        message = Message(
            id=MONOTONIC_IDS.new_id("msg", now, random_bytes(10)),
            status=MessageStatus.QUEUED,
            priority=Priority.NORMAL,
            sender=sender,
            recipient=Address(f"user{number}", "example.com"),
            content=MessageContent(
                subject="Your sign-in code",
                text=f"Your code is {number:06d}.",
                html=f"<p>Your code is <b>{number:06d}</b>.</p>",
            ),
            created_at=now,
            updated_at=now,
            metadata={"user_id": str(number)},
            tags=("otp",),
        )
        transition = create(message, event_id=new_event_id(now))
        submissions.append(Submission(transition=transition))
    return submissions


async def enqueue(store: SqlStore, submissions: list[Submission], batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(submissions), batch):
        await store.create_messages(submissions[start : start + batch], now())
    return time.perf_counter() - started


def decide(
    claimed: Sequence[Message], suppressions: Mapping[str, Suppression]
) -> list[Transition]:
    """Accept each claimed message, as a delivery worker does without routing."""
    moment = now()
    decided = []
    for message in claimed:
        transition = decide_claimed(
            message,
            suppressions.get(message.id),
            now=moment,
            event_id=new_event_id(moment),
        )
        if transition is not None:
            decided.append(transition)
    return decided


async def work(store: SqlStore, worker_id: str, batch: int, separate: bool) -> int:
    """Claim, accept and deliver until the queue is empty; return the count.

    With ``separate``, the accepted transitions get a commit of their own
    after ``claim_due``, instead of sharing the claim's.
    """
    done = 0
    while True:
        if separate:
            claimed = await store.claim_due(worker_id, now(), batch, LEASE)
            if not claimed:
                return done
            accepted = decide(claimed, {})
            stale = set(await store.save_transitions(accepted))
        else:
            result = await store.claim_and_decide(
                worker_id, now(), batch, LEASE, decide
            )
            if not result.messages:
                return done
            accepted, stale = result.transitions, set(result.stale)

        moment = now()
        delivered = [
            deliver(t.after, REPLY, now=moment, event_id=new_event_id(moment))
            for t in accepted
            if t.after.id not in stale
        ]
        await store.save_transitions(delivered)
        done += len(delivered)


async def process(
    store: SqlStore, batch: int, workers: int, separate: bool
) -> tuple[float, int]:
    counts: list[int] = []

    async def run_worker(worker_id: str) -> None:
        counts.append(await work(store, worker_id, batch, separate))

    started = time.perf_counter()
    async with anyio.create_task_group() as group:
        for index in range(workers):
            group.start_soon(run_worker, f"bench-{index}")
    return time.perf_counter() - started, sum(counts)


def now() -> datetime:
    return datetime.now(UTC)


@contextmanager
def temporary_database(server_url: str | None) -> Iterator[str]:
    if server_url is None:
        with tempfile.TemporaryDirectory() as directory:
            yield f"sqlite:///{Path(directory) / 'bench.db'}"
        return

    schema = f"sx_bench_{secrets.token_hex(4)}"
    conninfo = server_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(f"CREATE SCHEMA {schema}")
        try:
            separator = "&" if "?" in server_url else "?"
            yield f"{server_url}{separator}options=-csearch_path%3D{schema}"
        finally:
            admin.execute(f"DROP SCHEMA {schema} CASCADE")


async def run_once(args: argparse.Namespace) -> tuple[float, float, float]:
    submissions = build_submissions(args.count, now())
    # The prepared submissions live through the run; keeping them out of the
    # cyclic garbage collector's scans leaves only the store's work timed.
    gc.collect()
    gc.freeze()
    with temporary_database(args.database_url) as url:
        async with SqlStore(url, pool_size=max(2, args.workers + 1)) as store:
            enqueue_seconds = await enqueue(store, submissions, args.batch)
            process_seconds, processed = await process(
                store, args.batch, args.workers, args.separate_accept
            )
    if processed != args.count:
        raise SystemExit(f"processed {processed} of {args.count} messages")
    total = enqueue_seconds + process_seconds
    return (
        args.count / enqueue_seconds,
        args.count / process_seconds,
        args.count / total,
    )


def describe_machine(database_url: str | None) -> str:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = ", ".join(
        f"{name} {metadata.version(name)}" for name in ("SQLAlchemy", "psycopg")
    )
    database = f"SQLite {sqlite3.sqlite_version} (temporary file)"
    if database_url is not None:
        conninfo = database_url.replace("postgresql+psycopg://", "postgresql://")
        with psycopg.connect(conninfo) as connection:
            version = connection.execute("SHOW server_version").fetchone()
        database = f"PostgreSQL {version[0] if version else '?'}"
    return (
        f"machine: {cpu}, {os.cpu_count()} cores, {platform.system()} "
        f"{platform.release()}\n"
        f"python {platform.python_version()}, {versions}\n"
        f"database: {database}"
    )


def summarize(label: str, values: list[float]) -> str:
    return (
        f"{label:<16} {statistics.median(values):>9,.0f} messages/s "
        f"(min {min(values):,.0f}, max {max(values):,.0f})"
    )


def main() -> None:
    args = parse_args()
    print(describe_machine(args.database_url))
    print(
        f"{args.count:,} messages, batches of {args.batch}, "
        f"{args.workers} worker(s), {args.runs} run(s)"
    )
    results = []
    for run in range(1, args.runs + 1):
        result = anyio.run(run_once, args)
        results.append(result)
        enqueue_rate, process_rate, overall_rate = result
        print(
            f"run {run}: enqueue {enqueue_rate:,.0f}/s, "
            f"claim→complete {process_rate:,.0f}/s, overall {overall_rate:,.0f}/s"
        )
    print(summarize("enqueue", [r[0] for r in results]))
    print(summarize("claim→complete", [r[1] for r in results]))
    print(summarize("overall", [r[2] for r in results]))


if __name__ == "__main__":
    main()
