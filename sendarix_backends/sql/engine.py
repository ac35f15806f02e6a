"""Engines for ``sqlite:///path`` and ``postgresql://`` URLs.

SQLite runs in WAL mode with ``synchronous=FULL``. WAL with ``NORMAL``
commits without syncing the log, so a power loss can drop transactions that
were already reported committed, and a ``202`` must mean the message survives
that. With ``FULL`` every commit syncs the WAL (see "PRAGMA synchronous" in
https://www.sqlite.org/pragma.html). Write transactions start with
``BEGIN IMMEDIATE``, which takes the write lock up front. Two writers
therefore never both read and then fail with SQLITE_BUSY when they try to
upgrade. Before that, ``SqlStore`` queues its writers on a lock file shared
with other Sendarix processes (``writer_lock``); other programs wait up to
``busy_timeout`` for the lock.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine

from sendarix_core.errors import ConfigurationError

__all__ = [
    "BEGIN_OPTION",
    "describe_error",
    "dialect_insert",
    "display_url",
    "make_engine",
    "normalize_url",
]

BUSY_TIMEOUT_MS = 30_000
_LOCK_NOT_AVAILABLE = "55P03"

# Execution option: true makes a SQLite transaction start with BEGIN IMMEDIATE.
BEGIN_OPTION = "sendarix_begin_immediate"


def normalize_url(database_url: str) -> URL:
    """Return the URL with the driver Sendarix uses for its database."""
    try:
        url = sa.make_url(database_url)
    except sa.exc.ArgumentError as exc:
        # Not parsed, so the password can't be masked: the URL is not shown.
        raise ConfigurationError(
            "the database URL can't be parsed; expected sqlite:///path or "
            "postgresql://user:password@host/name"
        ) from exc

    backend = url.get_backend_name()
    if backend == "sqlite":
        if url.database in {None, "", ":memory:"}:
            raise ConfigurationError(
                "an in-memory SQLite database cannot be shared between threads; "
                "use a file path such as sqlite:///sendarix.db"
            )
        return url.set(drivername="sqlite+pysqlite")
    if backend in {"postgresql", "postgres"}:
        return url.set(drivername="postgresql+psycopg")
    raise ConfigurationError(
        f"unsupported database {backend!r} in "
        f"{url.render_as_string(hide_password=True)}; "
        "expected sqlite:///path or postgresql://user@host/name"
    )


def make_engine(database_url: str, *, pool_size: int = 10) -> Engine:
    """Create an engine; ``pool_size`` connections are kept open."""
    url = normalize_url(database_url)
    options: dict[str, Any] = {
        "pool_size": pool_size,
        "max_overflow": 0,
        # A file needs no liveness check; a server connection may have dropped.
        "pool_pre_ping": url.get_backend_name() != "sqlite",
        "hide_parameters": True,
        "json_serializer": _dump_json,
        "json_deserializer": orjson.loads,
    }
    if url.get_backend_name() == "sqlite":
        options["connect_args"] = {"check_same_thread": False}
        _check_sqlite_directory(url.database)
    try:
        engine = sa.create_engine(url, **options)
    except ModuleNotFoundError as exc:
        raise ConfigurationError(
            f"the {url.get_backend_name()} driver is not installed ({exc.name}); "
            "install Sendarix with the extra: pip install 'sendarix[postgresql]'"
        ) from exc
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    else:
        _configure_postgresql(engine)
    return engine


def _check_sqlite_directory(database: str | None) -> None:
    # sqlite3 reports a missing directory only as "unable to open database
    # file", at the first query and deep inside a traceback.
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    directory = Path(database).absolute().parent
    if not directory.is_dir():
        raise ConfigurationError(
            f"the directory {str(directory)!r} of the SQLite database does not "
            "exist; create it, or point SENDARIX_DATABASE_URL elsewhere"
        )


def _dump_json(value: Any) -> str:
    return orjson.dumps(value).decode()


def _configure_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def set_lock_timeout(dbapi_connection: Any, _record: Any) -> None:
        # PostgreSQL waits for a lock as long as SQLite does, then fails the
        # statement with SQLSTATE 55P03. A timeout set anywhere else, in the
        # URL's options, PGOPTIONS or ALTER ROLE, is kept.
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SHOW lock_timeout")
            if cursor.fetchone()[0] == "0":
                cursor.execute(f"SET lock_timeout = {BUSY_TIMEOUT_MS}")
        # Committed, or the pool's rollback on return would undo the SET.
        dbapi_connection.commit()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def set_pragmas(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the sqlite3 module, which would
        # otherwise issue a deferred BEGIN of its own before each write.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def begin(connection: Connection) -> None:
        immediate = connection.get_execution_options().get(BEGIN_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    @event.listens_for(engine, "handle_error")
    def drop_read_only(context: sa.engine.ExceptionContext) -> None:
        # SQLite opens a file it may not write read-only, and the connection
        # stays so after the permissions are fixed. Counted as a lost
        # connection, it is replaced, and writes work again once they can.
        error = context.original_exception
        code = getattr(error, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF == sqlite3.SQLITE_READONLY:
            context.is_disconnect = True


def dialect_insert(
    connection: Connection, table: sa.Table
) -> postgresql.Insert | sqlite.Insert:
    """Return an INSERT that supports ``ON CONFLICT`` on this connection's database."""
    if connection.dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def describe_error(operation: str, engine: Engine, exc: sa.exc.SQLAlchemyError) -> str:
    """Return a one-line message for a failed operation, without row values.

    Only the first line of the driver's message is kept: later lines of a
    PostgreSQL error can quote row values, such as a key hash.
    """
    cause: BaseException = getattr(exc, "orig", None) or exc
    lines = str(cause).strip().splitlines()
    reason = lines[0] if lines else "no message"
    where = display_url(engine.url)
    advice = (
        "check that the database is reachable and its schema is current "
        "(sendarix migrate)"
    )
    if getattr(cause, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
        advice = (
            "another session held a lock for longer than lock_timeout; find "
            "it in pg_locks, such as a long migration or LOCK TABLE"
        )
    return f"{operation} failed on {where}: {type(cause).__name__}: {reason}; {advice}"


def masked_url(database_url: str) -> str:
    """Return ``database_url`` with its password replaced, for messages."""
    try:
        return display_url(sa.make_url(database_url))
    except sa.exc.ArgumentError:
        return "(a URL that can't be parsed)"


def display_url(url: URL) -> str:
    """Return ``url`` with its password masked, in the user part and in a
    ``password`` query parameter, which libpq also reads.

    The driver Sendarix added is left out, so the URL reads as the user
    wrote it: ``sqlite:///…``, not ``sqlite+pysqlite:///…``.
    """
    url = url.set(drivername=url.get_backend_name())
    if "password" in url.query:
        url = url.update_query_dict({"password": "hidden"})
    return url.render_as_string(hide_password=True)
