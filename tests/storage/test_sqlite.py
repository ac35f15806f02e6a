"""SQLite settings and several processes writing one database file."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import anyio
import pytest
from sqlalchemy import event

from sendarix_backends.sql import SqlStore
from sendarix_backends.sql.engine import make_engine
from sendarix_backends.sql.writer_lock import WriterLock, lock_path
from sendarix_core.errors import ConfigurationError, StorageError
from sendarix_core.ports import MessageQuery
from tests.storage.conftest import T0, Factory
from tests.support.lock_holder import hold_lock

pytestmark = pytest.mark.anyio

# Each process stores 20 batches of 10 messages through its own store.
WRITER = textwrap.dedent(
    """
    import sys
    import anyio
    from sendarix_backends.sql import SqlStore
    from tests.storage.conftest import T0, Factory

    async def main(url: str) -> None:
        factory = Factory()
        async with SqlStore(url, pool_size=2) as store:
            for _ in range(20):
                await store.create_messages(factory.batch(10), T0)

    anyio.run(main, sys.argv[1])
    """
)


def test_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'pragmas.db'}", pool_size=1)
    try:
        with engine.connect() as connection:
            settings = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "foreign_keys")
            }
            busy_timeout = connection.exec_driver_sql("PRAGMA busy_timeout").scalar()
    finally:
        engine.dispose()

    assert settings == {"journal_mode": "wal", "synchronous": 2, "foreign_keys": 1}
    assert busy_timeout is not None
    assert busy_timeout >= 1000


async def test_processes_share_file(tmp_path: Path) -> None:
    # The writers start on a missing file, so they also race to create it.
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    root = Path(__file__).parents[2]
    writers = [
        subprocess.Popen([sys.executable, "-c", WRITER, url], cwd=root)
        for _ in range(3)
    ]
    codes = [writer.wait(timeout=120) for writer in writers]

    stored = 0
    async with SqlStore(url) as store:
        page = await store.list_messages(MessageQuery(limit=100))
        stored += len(page.items)
        while page.next_cursor is not None:
            query = MessageQuery(limit=100, cursor=page.next_cursor)
            page = await store.list_messages(query)
            stored += len(page.items)

    assert codes == [0, 0, 0]
    assert stored == 600


async def write_while_held(
    store: SqlStore, holder: subprocess.Popen[str], release: str
) -> int:
    """Start a write, check that it waits, release the lock, return the count stored.

    ``release`` is ``unlock``, ending the transaction, or ``kill``.
    """
    stored: list[int] = []

    async def write() -> None:
        ids = await store.create_messages(Factory().batch(3), T0)
        stored.append(len(ids))

    async with anyio.create_task_group() as group:
        group.start_soon(write)
        await anyio.sleep(0.3)
        assert stored == [], "the write did not wait for the other process"
        if release == "kill":
            holder.kill()
        else:
            assert holder.stdin is not None
            holder.stdin.write("done\n")
            holder.stdin.flush()
        with anyio.fail_after(30):
            while not stored:
                await anyio.sleep(0.01)
    holder.wait(timeout=30)
    return stored[0]


@pytest.mark.parametrize("release", ["unlock", "kill"])
async def test_write_waits_for_other_process(tmp_path: Path, release: str) -> None:
    database = tmp_path / "locked.db"
    async with SqlStore(f"sqlite:///{database}") as store:
        holder = hold_lock(f"{database}-lock")
        try:
            stored = await write_while_held(store, holder, release)
        finally:
            holder.kill()
            holder.wait(timeout=30)

    assert stored == 3


def reject_flock(fd: int, operation: int) -> None:
    raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))


@pytest.mark.parametrize(
    ("failure", "reason"),
    [("directory", "Is a directory"), ("flock", "No locks available")],
)
async def test_unusable_lock_file_logged(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    failure: str,
    reason: str,
) -> None:
    database = tmp_path / "unlockable.db"
    if failure == "directory":
        # A directory in the lock file's place cannot be opened as the file.
        Path(f"{database}-lock").mkdir()
    else:
        # Some network file systems reject flock with ENOLCK. A local one
        # cannot be made to, so the call is replaced.
        monkeypatch.setattr("fcntl.flock", reject_flock)
    async with SqlStore(f"sqlite:///{database}") as store:
        first = await store.create_messages(Factory().batch(2), T0)
        second = await store.create_messages(Factory().batch(2), T0)

    warnings = [
        r
        for r in caplog.records
        if getattr(r, "action", None) == "lock_file_unavailable"
    ]
    assert len(first) == 2
    assert len(second) == 2
    assert len(warnings) == 1
    assert warnings[0].name.startswith("sendarix.")
    assert "unlockable.db-lock" in warnings[0].getMessage()
    assert reason in warnings[0].getMessage()


def test_lock_file_named_after_database(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = tmp_path / "data" / "sendarix.db"
    real.parent.mkdir()
    link = tmp_path / "current.db"
    link.symlink_to(real)
    monkeypatch.chdir(tmp_path)

    assert lock_path(str(real)) == f"{real}-lock"
    assert lock_path(str(link)) == f"{real}-lock"
    assert lock_path("data/sendarix.db") == f"{real}-lock"
    assert lock_path("file:sendarix.db?mode=ro") is None
    assert lock_path(":memory:") is None
    assert lock_path(None) is None


def expect_timeout(lock: WriterLock, path: str) -> None:
    """Hold ``path`` in another process and check that ``lock`` gives up."""
    holder = hold_lock(path)
    try:
        with pytest.raises(StorageError, match="database is locked"), lock:
            pass
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_held_lock_times_out(tmp_path: Path) -> None:
    path = str(tmp_path / "stopped.db-lock")
    lock = WriterLock(path, timeout=0.5)
    expect_timeout(lock, path)

    # The wait given up at the deadline must not keep the lock once it gets
    # it: another process can take it after this one.
    with lock:
        pass
    second = hold_lock(path)
    second.kill()
    second.wait(timeout=30)
    lock.close()


def test_replaced_lock_file_followed(tmp_path: Path) -> None:
    path = str(tmp_path / "replaced.db-lock")
    lock = WriterLock(path, timeout=0.5)
    with lock:
        pass
    # Deleted while this process keeps it open, then created anew by another
    # process, which locks the new file.
    os.unlink(path)
    try:
        expect_timeout(lock, path)
    finally:
        lock.close()


def test_missing_directory_named(tmp_path: Path) -> None:
    missing = tmp_path / "absent" / "sendarix.db"

    with pytest.raises(ConfigurationError) as raised:
        make_engine(f"sqlite:///{missing}")

    assert repr(str(missing.parent)) in str(raised.value)
    assert "does not exist" in str(raised.value)


async def test_read_only_connections_replaced(tmp_path: Path) -> None:
    # SQLite opens a file it may not write read-only; query_only gives a
    # connection the same refusal (SQLITE_READONLY) without changing modes,
    # which root ignores.
    async with SqlStore(f"sqlite:///{tmp_path / 'sendarix.db'}") as store:
        engine = store._engine

        def read_only(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA query_only=ON")

        event.listen(engine, "connect", read_only)
        engine.dispose()
        with pytest.raises(StorageError, match="readonly"):
            await store.create_messages(Factory().batch(1), T0)

        # The permissions are back: new connections may write again.
        event.remove(engine, "connect", read_only)
        stored = await store.create_messages(Factory().batch(1), T0)

    assert len(stored) == 1
