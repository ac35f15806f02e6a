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

A blocking ``flock`` has no time limit, so a contended lock is waited for in
a helper thread, and the writer gives up after ``timeout`` seconds with
``StorageError``, as SQLite does after ``busy_timeout``. A process that is
stopped while it holds the lock (``SIGSTOP``, a debugger) then makes the
others fail after that time instead of hanging.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from types import TracebackType

from sendarix_core.errors import StorageError

try:
    import fcntl
except ImportError:  # Windows has no flock; the thread lock still applies.
    fcntl = None  # type: ignore[assignment]

__all__ = ["WriterLock", "lock_path"]

logger = logging.getLogger("sendarix.storage")


def lock_path(database: str | None) -> str | None:
    """Return the lock file path of a SQLite database path, or None.

    Symbolic links are resolved, as SQLite resolves them to place its
    ``-wal`` file, so every path to one database gives one lock file. A
    ``file:`` URI may name its file through options that this module does
    not parse, so such a database gets no lock file.
    """
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return f"{os.path.realpath(database)}-lock"


class _Wait:
    """One blocking ``flock`` in a helper thread, which its writer may abandon.

    The wait has an open file description of its own. A wait abandoned at
    the deadline that gets the lock later then unlocks only its own
    description, never the lock of a writer that came after it.
    """

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
        self.acquired = threading.Event()
        self.error: OSError | None = None
        self._decided = threading.Lock()
        self._abandoned = False

    def run(self) -> None:
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        except OSError as exc:
            self.error = exc
        with self._decided:
            # Set on an error too, to wake the writer, which then raises it.
            if not self._abandoned:
                self.acquired.set()
            if not self._abandoned and self.error is None:
                return
        os.close(self.fd)

    def abandon(self) -> bool:
        """Give up the wait; return False if the lock came first and is held."""
        with self._decided:
            if self.acquired.is_set():
                return False
            self._abandoned = True
            return True


class _Waiters:
    """Up to ``size`` threads that run blocking waits, started on demand.

    They are daemon threads, so that a wait for a stopped holder does not
    keep the process from exiting. Further waits queue for a free thread.
    """

    def __init__(self, size: int) -> None:
        self._size = size
        self._started = 0
        self._jobs: queue.SimpleQueue[_Wait | None] = queue.SimpleQueue()

    def submit(self, wait: _Wait) -> None:
        if self._started < self._size:
            threading.Thread(
                target=self._serve, name="sendarix-writer-lock", daemon=True
            ).start()
            self._started += 1
        self._jobs.put(wait)

    def stop(self) -> None:
        """End each thread once it is idle."""
        for _ in range(self._started):
            self._jobs.put(None)
        self._started = 0

    def _serve(self) -> None:
        while (wait := self._jobs.get()) is not None:
            wait.run()


class WriterLock:
    """A lock held around each write transaction of one ``SqlStore``.

    ``timeout`` is how many seconds a writer waits for another process's
    writer before it raises ``StorageError``.
    """

    def __init__(self, path: str | None, *, timeout: float) -> None:
        self._thread_lock = threading.Lock()
        self._path = path if fcntl is not None else None
        self._timeout = timeout
        self._fd: int | None = None
        self._waiters = _Waiters(size=4)

    def __enter__(self) -> None:
        # One deadline for both locks, so a writer waits ``timeout`` in all.
        deadline = time.monotonic() + self._timeout
        if not self._thread_lock.acquire(timeout=self._timeout):
            raise StorageError(self._timed_out())
        try:
            self._lock_file(deadline)
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
            # A thread still in an abandoned wait ends once the holder
            # unlocks.
            self._waiters.stop()

    def _lock_file(self, deadline: float) -> None:
        """Lock the file at the path, reopened if replaced; needs the thread lock."""
        while self._path is not None:
            try:
                self._lock_once(self._path, deadline)
                if self._is_current(self._path):
                    return
                # The file was deleted or replaced while this process had it
                # open. Other processes lock the file now at the path.
                self._close_fd()
            except OSError as exc:
                self._give_up(exc)

    def _lock_once(self, path: str, deadline: float) -> None:
        if self._fd is None:
            self._fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._wait_for_lock(path, deadline)

    def _wait_for_lock(self, path: str, deadline: float) -> None:
        """Wait in a helper thread for another process to unlock, up to the timeout."""
        wait = _Wait(path)
        self._waiters.submit(wait)
        remaining = max(0.0, deadline - time.monotonic())
        if not wait.acquired.wait(remaining) and wait.abandon():
            raise StorageError(self._timed_out())
        if wait.error is not None:
            raise wait.error
        # The lock is held through the wait's file description from now on.
        self._close_fd()
        self._fd = wait.fd

    def _is_current(self, path: str) -> bool:
        if self._fd is None:
            return False
        opened = os.fstat(self._fd)
        try:
            current = os.stat(path)
        except FileNotFoundError:
            return False
        return (opened.st_dev, opened.st_ino) == (current.st_dev, current.st_ino)

    def _close_fd(self) -> None:
        """Close the lock file, which also unlocks it."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _timed_out(self) -> str:
        return (
            f"database is locked: waited {self._timeout:g} s for "
            f"{self._path or 'the write lock'}; check for a stopped or hanging "
            "process writing the same database"
        )

    def _give_up(self, exc: OSError) -> None:
        # SQLite's own locking still keeps writes apart, so only the wait
        # between processes gets slower.
        logger.warning(
            "locking the SQLite lock file %s failed (%s): writers in other "
            "processes are kept apart by busy_timeout alone; check the file's "
            "permissions and that the file system supports flock",
            self._path,
            exc.strerror,
            extra={"action": "lock_file_unavailable"},
        )
        self._close_fd()
        self._path = None
