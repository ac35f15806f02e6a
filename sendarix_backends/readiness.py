"""Readiness of the engine's database, as ``GET /readyz`` reports it.

Two checks run: a read from the database that must finish within a
timeout, and the outcome of the store's last write transaction, which the
store records as it goes. A store without these methods, such as the
in-memory one, has no database and is always ready.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import anyio
import attrs

from sendarix_core.errors import StorageError

__all__ = [
    "READ_TIMEOUT_SECONDS",
    "WRITE_FAILURE_MAX_AGE_SECONDS",
    "DatabaseProblem",
    "WriteFailure",
    "check_database",
]

# Shorter than the probe's own timeout, which the deployment docs set to 3 s.
READ_TIMEOUT_SECONDS = 2.0

# A failed write counts for this long unless a later one succeeds. The
# limit keeps a process that receives no requests while it is not ready,
# and so makes no writes, from staying not ready after the database
# recovers.
WRITE_FAILURE_MAX_AGE_SECONDS = 60.0


@attrs.frozen(kw_only=True)
class WriteFailure:
    """A write transaction that ended in ``StorageError``."""

    operation: str
    failed_at: float  # time.monotonic(), in seconds
    cause: str  # the error's message, which can name the database host


@attrs.frozen(kw_only=True)
class DatabaseProblem:
    """The reason the database is not ready."""

    summary: str  # what failed and what to do, without the database URL
    cause: StorageError  # for the log, since its message can name the host


async def check_database(
    store: object, *, max_failure_age: float = WRITE_FAILURE_MAX_AGE_SECONDS
) -> DatabaseProblem | None:
    """Read from ``store``'s database and look at its last write.

    Returns None when the read succeeded within ``READ_TIMEOUT_SECONDS`` and
    no write failed in the last ``max_failure_age`` seconds without a later
    one succeeding.
    """
    read: Callable[[], Awaitable[None]] | None = getattr(store, "check_database", None)
    if read is None:
        return None

    timeout = READ_TIMEOUT_SECONDS
    try:
        with anyio.fail_after(timeout):
            await read()
    except TimeoutError as exc:
        reason = str(exc) or f"no answer within {timeout:g} s"
        return DatabaseProblem(
            summary=f"the database did not answer a read within {timeout:g} s; "
            "check that it is running, reachable and not overloaded",
            cause=StorageError(f"check_database timed out: {reason}"),
        )
    except StorageError as exc:
        return DatabaseProblem(
            summary="a read from the database failed; check that it is running "
            "and reachable and that its schema is current (sendarix migrate)",
            cause=exc,
        )

    failure: WriteFailure | None = getattr(store, "last_write_failure", None)
    if failure is None:
        return None
    age = time.monotonic() - failure.failed_at
    if age > max_failure_age:
        return None
    return DatabaseProblem(
        summary=f"the last write to the database ({failure.operation}, {age:.0f} s "
        "ago) failed; check that the database accepts writes: free disk space, "
        "a writable SQLite file and directory, a PostgreSQL primary that is "
        "not in read-only mode",
        cause=StorageError(failure.cause),
    )
