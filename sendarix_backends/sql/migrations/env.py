"""Alembic environment for the built-in SQL backend.

``sendarix_backends.sql.migrate`` passes an open connection, already inside a
transaction, in ``config.attributes["connection"]``. Run from the alembic
command line instead, the URL comes from ``sqlalchemy.url``.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from sendarix_backends.sql.engine import make_engine
from sendarix_backends.sql.schema import metadata


def run_offline() -> None:
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    if context.is_offline_mode():
        run_offline()
        return
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run_online(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set sqlalchemy.url to the database to migrate")
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as new_connection:
            run_online(new_connection)
    finally:
        engine.dispose()


main()
