"""One SQLite writer at a time, across the threads and processes of a host.

SQLite lets one connection write at a time. A connection that finds the
database locked sleeps and tries again until ``busy_timeout`` runs out.
SQLite's default busy handler (``sqliteDefaultBusyCallback`` in its
``main.c``) sleeps 1, 2, 5 and up to 100 ms between tries. A writer in one
process therefore often sleeps on after a writer in another process has
committed. With ``sendarix serve`` and ``sendarix worker`` on one file, the
API process spent about half its time in those sleeps.

Writers therefore queue twice before ``BEGIN IMMEDIATE``: on a thread lock
within the process, then on an exclusive ``flock`` of a file beside the
database, named like SQLite's own ``-wal`` file: ``sendarix.db-lock``. The
kernel wakes a waiting process as soon as the holder unlocks, and drops the
lock of a process that exits, however it ends.

A writer waits for the file lock as long as another Sendarix process holds
it, which is for one transaction at a time. ``busy_timeout`` still bounds
the wait for programs that write the database without taking the lock,
such as the ``sqlite3`` shell.
"""

from __future__ import annotations

import logging
import os
import threading
from types import TracebackType

try:
    import fcntl
except ImportError:  # Windows has no flock; the thread lock still applies.
    fcntl = None  # type: ignore[assignment]

__all__ = ["WriterLock", "lock_path"]

logger = logging.getLogger(__name__)


def lock_path(database: str | None) -> str | None:
    """Return the lock file path of a SQLite database path, or None.

    A ``file:`` URI may name its file through options that this module does
    not parse, so such a database gets no lock file.
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return f"{database}-lock"


class WriterLock:
    """A lock held around each write transaction of one ``SqlStore``."""

    def __init__(self, path: str | None) -> None:
        self._thread_lock = threading.Lock()
        self._path = path if fcntl is not None else None
        self._fd: int | None = None

    def __enter__(self) -> None:
        self._thread_lock.acquire()
        try:
            self._lock_file()
        except BaseException:
            self._thread_lock.release()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self._fd is not None:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            self._thread_lock.release()

    def close(self) -> None:
        """Close the lock file; the next write opens it again."""
        with self._thread_lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _lock_file(self) -> None:
        """Open the lock file on first use and lock it; needs the thread lock."""
        if self._path is None:
            return
        try:
            if self._fd is None:
                self._fd = os.open(self._path, os.O_RDONLY | os.O_CREAT, 0o644)
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        except OSError as exc:
            # SQLite's own locking still keeps writes apart, so only the
            # wait between processes gets slower.
            logger.warning(
                "locking the SQLite lock file %s failed (%s): writers in other "
                "processes are kept apart by busy_timeout alone; keep the "
                "database on a local file system, in a writable directory",
                self._path,
                exc.strerror,
                extra={"action": "lock_file_unavailable"},
            )
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            self._path = None
