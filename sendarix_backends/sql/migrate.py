"""Schema migrations, run with alembic from the scripts packaged here."""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

from sendarix_backends.sql.engine import BEGIN_OPTION, describe_error, make_engine
from sendarix_core.errors import StorageError

__all__ = [
    "check_known_revision",
    "current_revision",
    "head_revision",
    "upgrade",
    "upgrade_engine",
]

logger = logging.getLogger("sendarix.storage")

# First key of the PostgreSQL advisory lock that serializes concurrent
# migrations. The second key is the schema's hash, so that migrations of
# other schemas in the same database go on.
_MIGRATION_LOCK = 0x53454E44


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema of ``database_url`` up to ``revision``."""
    engine = make_engine(database_url, pool_size=1)
    try:
        upgrade_engine(engine, revision)
    except sa.exc.SQLAlchemyError as exc:
        raise StorageError(describe_error("migrate", engine, exc)) from exc
    finally:
        engine.dispose()


def upgrade_engine(engine: Engine, revision: str = "head") -> None:
    """Run the migrations in one transaction on a connection of ``engine``.

    On PostgreSQL an advisory lock makes a second process that migrates at the
    same time wait and then find the schema current. On SQLite the write lock
    taken by ``BEGIN IMMEDIATE`` does the same.
    """
    with _alembic_config() as config, engine.connect() as connection:
        connection.execution_options(**{BEGIN_OPTION: True})
        with connection.begin():
            if connection.dialect.name == "postgresql":
                _wait_for_other_migrations(connection)
            before = MigrationContext.configure(connection).get_current_revision()
            check_known_revision(engine, before)
            config.attributes["connection"] = connection
            command.upgrade(config, revision)
            after = MigrationContext.configure(connection).get_current_revision()
    if before != after:
        logger.info(
            "schema migrated",
            extra={"action": "schema_migrated", "from": before, "to": after},
        )


def _wait_for_other_migrations(connection: Connection) -> None:
    """Take the migration lock, however long another migration holds it.

    The lock_timeout is lifted for this wait only: the migration's own
    statements keep it, so one stuck behind a busy table fails instead of
    making the application's queries queue behind it.
    """
    timeout = connection.exec_driver_sql("SHOW lock_timeout").scalar_one()
    connection.exec_driver_sql("SET LOCAL lock_timeout = 0")
    connection.execute(
        sa.text("SELECT pg_advisory_xact_lock(:key, hashtext(current_schema()))"),
        {"key": _MIGRATION_LOCK},
    )
    connection.execute(
        sa.text("SELECT set_config('lock_timeout', :timeout, true)"),
        {"timeout": timeout},
    )


def current_revision(database_url: str) -> str | None:
    """Return the schema revision of ``database_url``; None before the first."""
    engine = make_engine(database_url, pool_size=1)
    try:
        return engine_revision(engine)
    finally:
        engine.dispose()


def engine_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def check_known_revision(engine: Engine, revision: str | None) -> None:
    """Raise ``StorageError`` if a newer release migrated the database.

    Its revision is then missing from the packaged migrations, and neither
    ``migrate`` nor this release can use the schema.
    """
    if revision is None or revision in _known_revisions():
        return
    where = engine.url.render_as_string(hide_password=True)
    raise StorageError(
        f"database {where} has schema revision {revision}, which this version "
        "of Sendarix does not know: a newer release migrated it. Run that "
        "release, or restore a backup taken before the upgrade"
    )


@functools.cache
def _known_revisions() -> frozenset[str]:
    with _alembic_config() as config:
        scripts = ScriptDirectory.from_config(config)
        return frozenset(script.revision for script in scripts.walk_revisions())


def head_revision() -> str:
    """Return the newest revision the packaged migrations define."""
    with _alembic_config() as config:
        head = ScriptDirectory.from_config(config).get_current_head()
    if head is None:
        raise RuntimeError("the packaged migrations define no revision")
    return head


@contextmanager
def _alembic_config() -> Iterator[Config]:
    package = resources.files("sendarix_backends.sql")
    with resources.as_file(package) as directory:
        path = Path(directory)
        config = Config(str(path / "alembic.ini"))
        config.set_main_option("script_location", str(path / "migrations"))
        yield config
