"""Multi-row statements on SQLite: every row written once, in order."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import sqlalchemy as sa

from sendarix_backends.sql import bulk

metadata = sa.MetaData()
rows_table = sa.Table(
    "rows",
    metadata,
    sa.Column("position", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.Text),
    sa.Column("size", sa.Integer),
)


@pytest.fixture
def engine(tmp_path: Path) -> sa.Engine:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'bulk.db'}")
    metadata.create_all(engine)
    return engine


@pytest.mark.parametrize("count", [1, 2, 37, 64, 3000])
def test_insert_keeps_rows_and_order(engine: sa.Engine, count: int) -> None:
    rows = [{"name": f"row {number}", "size": number} for number in range(count)]

    with engine.begin() as connection:
        bulk.insert_rows(connection, rows_table, rows)
        stored = connection.execute(
            sa.select(rows_table.c.name, rows_table.c.size).order_by("position")
        ).all()

    assert [tuple(row) for row in stored] == [(r["name"], r["size"]) for r in rows]


def test_chunks_stay_under_parameter_limit(engine: sa.Engine) -> None:
    values = [(None, f"row {number}", number) for number in range(100)]
    head = 'INSERT INTO "rows" (position, name, size) VALUES '

    with engine.begin() as connection:
        driver = connection.connection.driver_connection
        assert isinstance(driver, sqlite3.Connection)
        # Three rows of three values would be one parameter too many.
        driver.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 8)
        bulk.run_in_chunks(connection, head, "", values)
        stored = connection.execute(
            sa.select(rows_table.c.size).order_by("position")
        ).scalars()

        assert list(stored) == list(range(100))


def test_no_rows_runs_nothing(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        bulk.run_in_chunks(connection, "not even SQL", "", [])
        count = connection.execute(sa.select(sa.func.count(rows_table.c.name))).one()

    assert count == (0,)
