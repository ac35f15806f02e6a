"""SQLite settings and several processes writing one database file."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sendarix_backends.sql import SqlStore
from sendarix_backends.sql.engine import make_engine
from sendarix_core.errors import ConfigurationError
from sendarix_core.ports import MessageQuery

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


def test_missing_directory_named(tmp_path: Path) -> None:
    missing = tmp_path / "absent" / "sendarix.db"

    with pytest.raises(ConfigurationError) as raised:
        make_engine(f"sqlite:///{missing}")

    assert repr(str(missing.parent)) in str(raised.value)
    assert "does not exist" in str(raised.value)
