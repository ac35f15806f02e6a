"""Fill a queue with many messages fast, for the benchmarks that need one.

One real message is stored through ``SqlStore.create_messages``; SQL then
copies its row and its ``message.queued`` event ``count`` times inside the
database, with new ids and recipients (``user<i>@example.com``) and due
times in submission order. The template is deleted afterwards, so exactly
``count`` messages are queued. Copying every column of the template keeps the
rows in the shape of the database's current schema.
"""

from __future__ import annotations

from datetime import UTC, datetime

import anyio
import sqlalchemy as sa

from benchmarks.queue_throughput import build_submissions
from sendarix_backends.sql import SqlStore
from sendarix_backends.sql.schema import events, messages


def fill_queue(database_url: str, count: int) -> None:
    """Create the schema if needed and queue ``count`` messages."""
    template_id = anyio.run(_store_template, database_url)
    engine = sa.create_engine(_driver_url(database_url))
    try:
        with engine.begin() as connection:
            _copy(connection, template_id, count)
            connection.execute(
                sa.delete(events).where(events.c.message_id == template_id)
            )
            connection.execute(sa.delete(messages).where(messages.c.id == template_id))
    finally:
        engine.dispose()


def count_messages(database_url: str, *, unfinished: bool = False) -> int:
    """Return how many messages are stored, or with ``unfinished`` how many
    are not in a final state yet (their ``due_at`` is set)."""
    engine = sa.create_engine(_driver_url(database_url), poolclass=sa.pool.NullPool)
    query = sa.select(sa.func.count()).select_from(messages)
    if unfinished:
        query = query.where(messages.c.due_at.is_not(None))
    try:
        with engine.connect() as connection:
            return int(connection.execute(query).scalar_one())
    finally:
        engine.dispose()


async def _store_template(database_url: str) -> str:
    (submission,) = build_submissions(1, datetime.now(UTC))
    async with SqlStore(database_url, pool_size=2) as store:
        await store.create_messages([submission], datetime.now(UTC))
    return submission.transition.after.id


def _copy(connection: sa.Connection, template_id: str, count: int) -> None:
    postgresql = connection.dialect.name == "postgresql"
    suffix = "lpad(n.i::text, 26, '0')" if postgresql else "printf('%026d', n.i)"
    local_part = "'user' || n.i"
    new_id = f"'msg_' || {suffix}"
    replaced = {
        "id": new_id,
        "recipient_local_part": local_part,
        "recipient": f"{local_part} || '@' || t.recipient_domain",
        "message_id_header": f"'<' || {new_id} || '@' || t.sender_domain || '>'",
        "due_at": "t.due_at - (:count - n.i)",
    }
    message_columns = _columns(connection, "messages")
    message_values = [replaced.get(name, f"t.{name}") for name in message_columns]
    event_replaced = {
        "event_id": f"'evt_' || {suffix}",
        "message_id": new_id,
        "recipient": f"{local_part} || '@example.com'",
    }
    event_columns = [c for c in _columns(connection, "events") if c != "sequence"]
    event_values = [event_replaced.get(name, f"e.{name}") for name in event_columns]
    numbers = "generate_series(1, :count) AS n(i)" if postgresql else "n"
    prefix = (
        ""
        if postgresql
        else "WITH RECURSIVE n(i) AS "
        "(SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :count) "
    )

    connection.execute(
        sa.text(
            f"{prefix}INSERT INTO messages ({', '.join(message_columns)}) "
            f"SELECT {', '.join(message_values)} FROM {numbers}, messages t "
            "WHERE t.id = :template"
        ),
        {"count": count, "template": template_id},
    )
    connection.execute(
        sa.text(
            f"{prefix}INSERT INTO events ({', '.join(event_columns)}) "
            f"SELECT {', '.join(event_values)} FROM {numbers}, events e "
            "WHERE e.message_id = :template"
        ),
        {"count": count, "template": template_id},
    )


def _columns(connection: sa.Connection, table: str) -> list[str]:
    """Return the columns the database has, which a migration may have changed."""
    return [column["name"] for column in sa.inspect(connection).get_columns(table)]


def _driver_url(database_url: str) -> str:
    for scheme in ("postgresql://", "postgres://"):
        if database_url.startswith(scheme):
            return "postgresql+psycopg://" + database_url.removeprefix(scheme)
    return database_url
