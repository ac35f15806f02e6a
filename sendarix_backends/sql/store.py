"""``SqlStore``: the built-in message store and queue on SQLite or PostgreSQL.

Every method runs one transaction in a worker thread, on a blocking
SQLAlchemy engine. Batching happens by passing many items to one call: the
HTTP layer hands concurrent submissions to ``create_messages`` together, and
workers claim and save in batches, so one commit covers many messages.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import anyio.to_thread
import sqlalchemy as sa

from sendarix_backends.batching import GroupCommitter
from sendarix_backends.readiness import WriteFailure
from sendarix_backends.sql import (
    api_keys,
    batches,
    claims,
    listings,
    submissions,
    suppressions,
    transitions,
)

# Registers the event, webhook and analytics tables on the shared metadata.
from sendarix_backends.sql import events as _events  # noqa: F401
from sendarix_backends.sql.engine import (
    BEGIN_OPTION,
    BUSY_TIMEOUT_MS,
    describe_error,
    display_url,
    make_engine,
)
from sendarix_backends.sql.migrate import (
    check_known_revision,
    engine_revision,
    head_revision,
    upgrade_engine,
)
from sendarix_backends.sql.writer_lock import WriterLock, lock_path
from sendarix_core import ratelimit
from sendarix_core.errors import StorageError
from sendarix_core.keys import ApiKey
from sendarix_core.lifecycle import Transition
from sendarix_core.model import Event, Message
from sendarix_core.ports import (
    BatchOutcome,
    BatchSubmission,
    MessageQuery,
    Page,
    Submission,
    SubmitOutcome,
    SuppressionQuery,
)
from sendarix_core.states import Priority
from sendarix_core.suppression import Suppression

__all__ = ["SqlStore"]

logger = logging.getLogger("sendarix.storage")

T = TypeVar("T")

# PostgreSQL SQLSTATEs after which the whole transaction can simply run again.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})  # serialization, deadlock
_ATTEMPTS = 3

# Errors caused by the rows a write carried, not by the database's state.
_DATA_ERRORS = (sa.exc.IntegrityError, sa.exc.DataError)


class SqlStore:
    """Messages, events, suppressions, API keys and the queue in one database.

    ``database_url`` is ``sqlite:///path`` or ``postgresql://…``; the pool
    keeps ``pool_size`` connections, and at most that many calls run at once.
    """

    def __init__(self, database_url: str, *, pool_size: int = 10) -> None:
        if pool_size < 1:
            raise ValueError(f"pool_size must be at least 1, not {pool_size}")
        self._engine = make_engine(database_url, pool_size=pool_size)
        self._limiter = anyio.CapacityLimiter(pool_size)
        self._is_sqlite = self._engine.dialect.name == "sqlite"
        # SQLite allows one writer. Queuing writers on a lock, of this process
        # and of others on the same file, is fairer and faster than letting
        # them poll busy_timeout.
        self._write_lock = WriterLock(
            lock_path(self._engine.url.database) if self._is_sqlite else None,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )
        self._pruned_window: int | None = None
        self._request_counts: GroupCommitter[tuple[str, int], int] = GroupCommitter(
            self._count_requests
        )
        self._key_lookups: GroupCommitter[str, ApiKey | None] = GroupCommitter(
            self._find_api_keys
        )
        self._counted_lookups: GroupCommitter[
            tuple[str, datetime], tuple[ApiKey | None, int]
        ] = GroupCommitter(self._find_and_count_requests)
        # Assigned by worker threads without a lock, once per write
        # transaction. The GIL makes each assignment atomic.
        self._write_failure: WriteFailure | None = None
        self._database_check_running = False

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return str(self._engine.dialect.name)

    async def open(self, *, create: bool = True) -> None:
        """Check the schema; with ``create``, build it in an empty database.

        Raises ``StorageError`` when the schema is missing and ``create`` is
        false, or when it is older than this version of Sendarix. Without
        ``create`` a missing SQLite file stays missing, because opening it
        would create an empty one.
        """
        if not create:
            self._check_sqlite_file()
        await anyio.to_thread.run_sync(self._open, create, limiter=self._limiter)

    def _check_sqlite_file(self) -> None:
        database = self._engine.url.database
        # In-memory databases and file: URIs have no plain path to look at.
        if not self._is_sqlite or database is None or lock_path(database) is None:
            return
        if not os.path.exists(database):
            raise StorageError(
                f"the SQLite database file {os.path.abspath(database)!r} does "
                "not exist; check the database URL and its folder, or run "
                "`sendarix migrate` to create the database there"
            )

    def _open(self, create: bool) -> None:
        head = head_revision()
        try:
            current = engine_revision(self._engine)
            if current is None and create:
                upgrade_engine(self._engine)
                current = engine_revision(self._engine)
        except sa.exc.SQLAlchemyError as exc:
            raise StorageError(describe_error("open", self._engine, exc)) from exc
        check_known_revision(self._engine, current)
        where = display_url(self._engine.url)
        if current is None:
            raise StorageError(
                f"database {where} has no Sendarix schema; check the database "
                "URL, or run `sendarix migrate` to create the schema there"
            )
        if current != head:
            raise StorageError(
                f"database {where} has schema revision {current}, expected "
                f"{head}; run `sendarix migrate` to bring it up to date"
            )

    @property
    def last_write_failure(self) -> WriteFailure | None:
        """The failure of the last write transaction; None once one succeeds."""
        return self._write_failure

    async def check_database(self) -> None:
        """Read the schema version on a pooled connection.

        Raises ``StorageError`` when the read fails, and ``TimeoutError``
        while an earlier check has not finished. Cancelling the call, as a
        timeout does, leaves its thread to run on until the database responds
        or the connection fails. No other check starts meanwhile, so a hung
        database does not use up the pool.
        """
        if self._database_check_running:
            raise TimeoutError("an earlier check has not finished")
        # Set here on the event loop, so that checks arriving together don't
        # all pass the test above; the thread clears it when the read ends.
        self._database_check_running = True
        started = False

        def check() -> None:
            nonlocal started
            started = True
            try:
                self._transaction("check_database", False, _read_schema_version)
            finally:
                self._database_check_running = False

        try:
            await anyio.to_thread.run_sync(
                check, limiter=self._limiter, abandon_on_cancel=True
            )
        except BaseException:
            if not started:
                # Cancelled before a thread took the read: none will clear it.
                self._database_check_running = False
            raise

    async def aclose(self) -> None:
        await anyio.to_thread.run_sync(self._engine.dispose)
        self._write_lock.close()

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # MessageStore

    async def create_messages(
        self, submissions_: Sequence[Submission], now: datetime
    ) -> list[SubmitOutcome]:
        if not submissions_:
            return []

        def run() -> list[SubmitOutcome]:
            encoded = submissions.encode_submissions(self._engine.dialect, submissions_)
            return self._transaction(
                "create_messages",
                True,
                submissions.create_messages,
                submissions_,
                encoded,
                now,
            )

        return await self._in_thread(run)

    async def create_batch(self, batch: BatchSubmission, now: datetime) -> BatchOutcome:
        def run() -> BatchOutcome:
            encoded = submissions.encode_submissions(
                self._engine.dialect, batch.submissions
            )
            return self._transaction(
                "create_batch", True, batches.create_batch, batch, encoded, now
            )

        try:
            return await self._in_thread(run)
        except batches.BatchRolledBackError as rolled_back:
            return rolled_back.outcome

    async def get_message(self, message_id: str) -> Message | None:
        return await self._read("get_message", listings.get_message, message_id)

    async def list_messages(self, query: MessageQuery) -> Page[Message]:
        return await self._read("list_messages", listings.list_messages, query)

    async def list_message_events(self, message_id: str) -> list[Event]:
        return await self._read(
            "list_message_events", listings.list_message_events, message_id
        )

    async def save_transitions(self, transitions_: Sequence[Transition]) -> list[str]:
        if not transitions_:
            return []

        def run() -> list[str]:
            encoded = transitions.encode_transitions(self._engine.dialect, transitions_)
            return self._transaction(
                "save_transitions",
                True,
                transitions.save_transitions,
                transitions_,
                encoded,
            )

        return await self._in_thread(run)

    async def get_suppressions(
        self, recipients: Sequence[str]
    ) -> Mapping[str, Suppression]:
        if not recipients:
            return {}
        return await self._read(
            "get_suppressions", suppressions.get_suppressions, recipients
        )

    async def add_suppression(self, suppression: Suppression) -> Suppression:
        return await self._write(
            "add_suppression", suppressions.add_suppression, suppression
        )

    async def list_suppressions(self, query: SuppressionQuery) -> Page[Suppression]:
        return await self._read(
            "list_suppressions", suppressions.list_suppressions, query
        )

    async def remove_suppression(self, recipient: str) -> bool:
        return await self._write(
            "remove_suppression", suppressions.remove_suppression, recipient
        )

    async def create_api_key(self, key: ApiKey) -> None:
        await self._write("create_api_key", api_keys.create_api_key, key)

    async def find_api_key(self, key_hash: str) -> ApiKey | None:
        # Concurrent lookups share one read transaction, which starts after
        # each of them was requested, so a revocation is still seen at once.
        return await self._key_lookups.submit(key_hash)

    async def _find_api_keys(self, key_hashes: Sequence[str]) -> list[ApiKey | None]:
        found = await self._read(
            "find_api_key", api_keys.find_api_keys, sorted(set(key_hashes))
        )
        return [found.get(key_hash) for key_hash in key_hashes]

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        return await self._read("get_api_key", api_keys.get_api_key, key_id)

    async def list_api_keys(self) -> list[ApiKey]:
        """Return every key, revoked ones included, oldest first."""
        return await self._read("list_api_keys", api_keys.list_api_keys)

    async def revoke_api_key(self, key_id: str, now: datetime) -> ApiKey | None:
        """Revoke a key from ``now`` on; return it, or None if it is unknown."""
        return await self._write("revoke_api_key", api_keys.revoke_api_key, key_id, now)

    async def touch_api_key(self, key_id: str, now: datetime) -> None:
        """Record the key's last use (at most one write per key a minute)."""
        await self._write("touch_api_key", api_keys.touch_api_key, key_id, now)

    async def count_request(self, api_key_id: str, window_start: int) -> int:
        # Concurrent requests share one write transaction, so a busy key costs
        # one commit per batch rather than one per request.
        return await self._request_counts.submit((api_key_id, window_start))

    async def _count_requests(self, requests: Sequence[tuple[str, int]]) -> list[int]:
        latest = max(window_start for _, window_start in requests)
        return await self._write_counts(
            "count_request", api_keys.count_requests, requests, latest
        )

    async def find_and_count_request(
        self, key_hash: str, now: datetime
    ) -> tuple[ApiKey | None, int]:
        """Find the key for ``key_hash`` and count one request of it at ``now``.

        Does what ``find_api_key``, ``count_request`` and, on the first
        request of a window, ``touch_api_key`` do, in one transaction that
        concurrent calls share. Returns the key, or None when it is unknown,
        and the request's count in its window. A key that is revoked or
        expired at ``now`` is returned but its request is not counted, and
        the count is 0.
        """
        return await self._counted_lookups.submit((key_hash, now))

    async def _find_and_count_requests(
        self, requests: Sequence[tuple[str, datetime]]
    ) -> list[tuple[ApiKey | None, int]]:
        latest = max(ratelimit.window_start(now) for _, now in requests)
        return await self._write_counts(
            "find_and_count_request", api_keys.find_and_count_requests, requests, latest
        )

    async def _write_counts(
        self,
        operation: str,
        count: Callable[..., list[T]],
        requests: Sequence[Any],
        latest_window: int,
    ) -> list[T]:
        """Run ``count(connection, requests, prune=…)`` in a write transaction.

        Old windows are deleted by the first batch this process counts in
        each new window.
        """
        prune = self._pruned_window is None or latest_window > self._pruned_window
        results = await self._write(
            operation, functools.partial(count, prune=prune), requests
        )
        if prune:
            self._pruned_window = max(latest_window, self._pruned_window or 0)
        return results

    # MessageQueue

    async def claim_due(
        self,
        worker_id: str,
        now: datetime,
        limit: int,
        lease: timedelta,
        *,
        priorities: Sequence[Priority] | None = None,
    ) -> list[Message]:
        ranks = None if priorities is None else [p.rank for p in priorities]

        def run() -> list[Message]:
            rows = self._transaction(
                "claim_due",
                True,
                functools.partial(claims.claim_due, ranks=ranks),
                worker_id,
                now,
                limit,
                lease,
            )
            return claims.decode_claimed(rows)

        return await self._in_thread(run)

    async def claim_and_decide(
        self,
        worker_id: str,
        now: datetime,
        limit: int,
        lease: timedelta,
        decide: claims.ClaimDecider,
        *,
        priorities: Sequence[Priority] | None = None,
    ) -> claims.DecidedClaim:
        """Claim like ``claim_due`` and save ``decide``'s transitions in one commit.

        ``decide`` runs in a worker thread while the transaction is open, so
        it must not block or touch the event loop. It may run again, on a new
        claim, when PostgreSQL retries the transaction after a deadlock.
        """
        ranks = None if priorities is None else [p.rank for p in priorities]
        return await self._write(
            "claim_and_decide",
            functools.partial(claims.claim_and_decide, decide=decide, ranks=ranks),
            worker_id,
            now,
            limit,
            lease,
        )

    async def renew_leases(
        self, messages: Sequence[Message], now: datetime, lease: timedelta
    ) -> None:
        if messages:
            await self._write("renew_leases", claims.renew_leases, messages, now, lease)

    async def next_due_at(self) -> datetime | None:
        return await self._read("next_due_at", claims.next_due_at)

    # Transactions
    #
    # Rows are encoded before and decoded after ``_transaction``, in the same
    # worker thread, so SQLite's write lock is held only for database work.

    async def _in_thread(self, function: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(function, limiter=self._limiter)

    async def _write(self, operation: str, function: Callable[..., T], *args: Any) -> T:
        run = functools.partial(self._transaction, operation, True, function, *args)
        return await anyio.to_thread.run_sync(run, limiter=self._limiter)

    async def _read(self, operation: str, function: Callable[..., T], *args: Any) -> T:
        run = functools.partial(self._transaction, operation, False, function, *args)
        return await anyio.to_thread.run_sync(run, limiter=self._limiter)

    async def run_transaction(
        self, operation: str, function: Callable[..., T], *args: Any, write: bool
    ) -> T:
        """Run ``function(connection, *args)`` in one transaction and commit.

        For feature modules that keep their own tables, such as templates and
        sending domains: they share this store's pool, write lock and retries.
        """
        if write:
            return await self._write(operation, function, *args)
        return await self._read(operation, function, *args)

    def _transaction(
        self,
        operation: str,
        write: bool,
        function: Callable[..., T],
        *args: Any,
    ) -> T:
        """Run ``function(connection, *args)`` in one transaction and commit.

        The outcome of a write transaction is kept for ``last_write_failure``.
        """
        if not write:
            return self._run_attempts(operation, False, function, *args)

        try:
            result = self._run_attempts(operation, True, function, *args)
        except StorageError as exc:
            if not isinstance(exc.__cause__, _DATA_ERRORS):
                self._write_failure = WriteFailure(
                    operation=operation, failed_at=time.monotonic(), cause=str(exc)
                )
            raise
        self._write_failure = None
        return result

    def _run_attempts(
        self,
        operation: str,
        write: bool,
        function: Callable[..., T],
        *args: Any,
    ) -> T:
        for attempt in range(1, _ATTEMPTS + 1):
            try:
                with self._writer(write), self._engine.connect() as connection:
                    connection.execution_options(**{BEGIN_OPTION: write})
                    with connection.begin():
                        return function(connection, *args)
            except sa.exc.DBAPIError as exc:
                if attempt < _ATTEMPTS and _is_retryable(exc):
                    logger.warning(
                        "transaction retried",
                        extra={"action": "retry", "operation": operation},
                    )
                    continue
                raise StorageError(
                    describe_error(operation, self._engine, exc)
                ) from exc
            except sa.exc.StatementError as exc:
                # A value the column type rejected, such as a naive datetime,
                # is the caller's error, as it is on the bulk paths.
                if isinstance(exc.orig, ValueError):
                    raise exc.orig from None
                raise StorageError(
                    describe_error(operation, self._engine, exc)
                ) from exc
            except sa.exc.SQLAlchemyError as exc:
                raise StorageError(
                    describe_error(operation, self._engine, exc)
                ) from exc
        raise AssertionError("unreachable: the last attempt returns or raises")

    def _writer(self, write: bool) -> AbstractContextManager[Any]:
        if write and self._is_sqlite:
            return self._write_lock
        return nullcontext()


def _read_schema_version(connection: sa.Connection) -> None:
    # Unlike SELECT 1, this reads the SQLite file, and it fails when the
    # schema is missing from PostgreSQL's search path.
    connection.exec_driver_sql("SELECT version_num FROM alembic_version").all()


def _is_retryable(exc: sa.exc.DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) in _RETRYABLE_SQLSTATES
