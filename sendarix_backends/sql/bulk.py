"""Batch writes that cost one statement per batch, not one per row.

The queue writes thousands of rows a second, and SQLAlchemy's per-row
parameter processing would take much of that time. On SQLite a batch is a
few multi-row statements (``run_in_chunks``) with positional parameters:
the sqlite3 module looks up each named parameter in its row by a new
string object, which cost a 30-column row about 8 µs against 4 µs for a
tuple taken with ``operator.itemgetter``. On PostgreSQL a batch is one
statement with one parameter: the rows as a JSON array, encoded by orjson
and expanded on the server by ``json_to_recordset``.

The SQL text is built only from the table definitions in ``schema``; every
value travels as a bound parameter.
"""

from __future__ import annotations

import functools
import itertools
import operator
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendarix_backends.sql.schema import UtcTimestamp, to_micros

__all__ = [
    "array_parameter",
    "dump_rows",
    "encode_rows",
    "in_array",
    "insert_encoded",
    "insert_rows",
    "placeholder",
    "positional",
    "recordset",
    "run_in_chunks",
    "sqlite_rows",
]

Row = Mapping[str, Any]
_UNSET = object()
Converter = Callable[[Any], Any]
# Rows of one multi-row statement at most, which keeps each statement text
# and the cache of them small.
_MAX_CHUNK_ROWS = 1024


def insert_rows(connection: Connection, table: sa.Table, rows: Sequence[Row]) -> None:
    """Insert ``rows``, which all have the same keys, in one statement."""
    insert_encoded(connection, table, encode_rows(connection.dialect, table, rows))


def encode_rows(dialect: sa.Dialect, table: sa.Table, rows: Sequence[Row]) -> list[Row]:
    """Return ``rows`` ready for ``insert_encoded`` on ``dialect``.

    Encoding needs no connection, so callers can do it before they take
    SQLite's write lock.
    """
    if dialect.name == "sqlite":
        return sqlite_rows(table, rows)
    return list(rows)


def insert_encoded(
    connection: Connection, table: sa.Table, rows: Sequence[Row]
) -> None:
    """Insert rows returned by ``encode_rows``, in one statement."""
    if not rows:
        return
    names = tuple(rows[0])
    dialect = connection.dialect
    quote = dialect.identifier_preparer.quote
    columns = ", ".join(quote(name) for name in names)
    if dialect.name == "postgresql":
        source = recordset(dialect, table, names, ordinality=True)
        sql = (
            f"INSERT INTO {quote(table.name)} ({columns}) "  # noqa: S608
            f"SELECT {columns} FROM {source} ORDER BY position"
        )
        connection.exec_driver_sql(sql, (dump_rows(rows),))
        return

    head = f"INSERT INTO {quote(table.name)} ({columns}) VALUES "  # noqa: S608
    run_in_chunks(connection, head, "", positional(rows, names))


def run_in_chunks(
    connection: Connection, head: str, tail: str, values: Sequence[tuple[Any, ...]]
) -> None:
    """Run ``head (?, …), (?, …) tail`` over ``values`` in a few statements.

    Each statement runs as one step of the sqlite3 module, which gives up
    the GIL around every step. ``executemany`` steps once per row, and with
    the event loop's thread busy beside it, taking the GIL back made a
    200-row transaction take 7.7 to 8.4 ms against 3.1 ms. The rows go in
    chunks of a power of two, so a table needs few statement texts, and
    each chunk stays within SQLite's limit on parameters.
    """
    if not values:
        return
    width = len(values[0])
    # At least one row, so a row wider than the limit gets SQLite's error.
    limit = max(1, min(_max_variables(connection) // width, _MAX_CHUNK_ROWS))
    largest = 1 << (limit.bit_length() - 1)
    start = 0
    while start < len(values):
        size = min(largest, 1 << ((len(values) - start).bit_length() - 1))
        chunk = values[start : start + size]
        sql = _chunk_sql(head, tail, width, size)
        connection.exec_driver_sql(sql, tuple(itertools.chain.from_iterable(chunk)))
        start += size


def _max_variables(connection: Connection) -> int:
    """Return how many parameters one statement may have on this SQLite."""
    driver = connection.connection.driver_connection
    limit: int = driver.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)  # type: ignore[union-attr]
    return limit


@functools.lru_cache(maxsize=256)
def _chunk_sql(head: str, tail: str, width: int, size: int) -> str:
    row = "(" + ", ".join("?" * width) + ")"
    return head + ", ".join([row] * size) + tail


def positional(rows: Iterable[Row], names: Sequence[str]) -> list[tuple[Any, ...]]:
    """Return the values of ``names`` in each row, in order, for ``?`` parameters."""
    if len(names) == 1:
        # itemgetter of one key returns the value itself, not a tuple.
        (name,) = names
        return [(row[name],) for row in rows]
    return list(map(operator.itemgetter(*names), rows))


def array_parameter(dialect: sa.Dialect, values: Sequence[Any]) -> list[Any] | str:
    """Return ``values`` as the one parameter that ``in_array`` expands.

    A statement then has one parameter however many values it matches,
    where an ``IN`` list of a few hundred bound values cost SQLAlchemy and
    psycopg more to render and convert than the lookup itself.
    """
    if dialect.name == "sqlite":
        return orjson.dumps(list(values)).decode()
    return list(values)


def in_array(dialect: sa.Dialect, column: str) -> str:
    """Return a condition that ``column`` is one of an ``array_parameter``."""
    if dialect.name == "postgresql":
        return f"{column} = ANY(%s)"
    # json_each expands one JSON array parameter, so any number of values fits.
    return f"{column} IN (SELECT value FROM json_each(?))"  # noqa: S608


def placeholder(dialect: sa.Dialect) -> str:
    """Return the driver's positional parameter marker."""
    return "%s" if dialect.name == "postgresql" else "?"


def dump_rows(rows: Iterable[Row]) -> str:
    """Return ``rows`` as one JSON array, with times as epoch microseconds."""
    try:
        document = orjson.dumps(
            list(rows), default=_json_default, option=orjson.OPT_PASSTHROUGH_DATETIME
        )
    except TypeError as exc:
        # orjson wraps what the default function raised, such as the
        # ValueError for a naive datetime.
        if isinstance(exc.__cause__, ValueError):
            raise exc.__cause__ from None
        raise
    return document.decode()


def recordset(
    dialect: sa.Dialect,
    table: sa.Table,
    names: Sequence[str],
    *,
    extra: Mapping[str, str] | None = None,
    ordinality: bool = False,
) -> str:
    """Return a PostgreSQL ``FROM`` item ``v`` over the JSON rows parameter.

    ``names`` are columns of ``table``, typed as the table types them;
    ``extra`` maps further names to SQL types. With ``ordinality``, the
    item also has ``position``, the row's place in the array.
    """
    return _recordset(
        dialect, table, tuple(names), tuple((extra or {}).items()), ordinality
    )


def sqlite_rows(table: sa.Table, rows: Sequence[Row]) -> list[Row]:
    """Return ``rows`` with values as SQLite stores them in ``table``."""
    if not rows:
        return []
    conversions = _sqlite_conversions(table, tuple(rows[0]))
    encoded: list[dict[str, Any]] = [dict(row) for row in rows]
    for name, convert in conversions:
        # The rows of one batch often share a value object, such as the
        # moment of a batch of transitions, so each run of one object is
        # converted once.
        last: Any = _UNSET
        converted: Any = None
        for values in encoded:
            value = values[name]
            if value is not last:
                last, converted = value, convert(value)
            values[name] = converted
    return list(encoded)


@functools.cache
def _recordset(
    dialect: sa.Dialect,
    table: sa.Table,
    names: tuple[str, ...],
    extra: tuple[tuple[str, str], ...],
    ordinality: bool,
) -> str:
    quote = dialect.identifier_preparer.quote
    definitions = [
        f"{quote(name)} {table.c[name].type.compile(dialect=dialect)}" for name in names
    ]
    definitions += [f"{quote(name)} {sql_type}" for name, sql_type in extra]
    columns = ", ".join(definitions)
    if not ordinality:
        return f"json_to_recordset(%s::json) AS v({columns})"

    aliases = ", ".join(quote(name) for name in (*names, *(n for n, _ in extra)))
    return (
        f"ROWS FROM (json_to_recordset(%s::json) AS ({columns})) "
        f"WITH ORDINALITY AS v({aliases}, position)"
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return to_micros(value)
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


@functools.cache
def _sqlite_conversions(
    table: sa.Table, names: tuple[str, ...]
) -> tuple[tuple[str, Converter], ...]:
    conversions: list[tuple[str, Converter]] = []
    for name in names:
        column_type = table.c[name].type if name in table.c else None
        if isinstance(column_type, UtcTimestamp):
            conversions.append((name, _encode_time))
        elif isinstance(column_type, sa.JSON):
            conversions.append((name, _encode_json))
    return tuple(conversions)


def _encode_time(value: datetime | None) -> int | None:
    return None if value is None else to_micros(value)


def _encode_json(value: Any) -> str:
    return orjson.dumps(value).decode()
