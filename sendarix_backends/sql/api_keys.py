"""API keys and their rate-limit counters."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendarix_backends.sql import codec
from sendarix_backends.sql.engine import dialect_insert
from sendarix_backends.sql.schema import api_keys, rate_limit_counters
from sendarix_core.keys import ApiKey
from sendarix_core.ratelimit import WINDOW_SECONDS

__all__ = [
    "count_request",
    "count_requests",
    "create_api_key",
    "find_api_key",
    "find_api_keys",
    "get_api_key",
    "list_api_keys",
    "revoke_api_key",
    "touch_api_key",
]

# ``last_used_at`` is only rewritten when it is older than this, so a busy
# key costs one write a minute rather than one per request.
TOUCH_INTERVAL = timedelta(minutes=1)


def create_api_key(connection: Connection, key: ApiKey) -> None:
    connection.execute(sa.insert(api_keys), codec.api_key_row(key))


def find_api_key(connection: Connection, key_hash: str) -> ApiKey | None:
    return _one(connection, api_keys.c.key_hash == key_hash)


def find_api_keys(
    connection: Connection, key_hashes: Sequence[str]
) -> dict[str, ApiKey]:
    """Return the keys whose hash is in ``key_hashes``, by hash."""
    query = sa.select(api_keys).where(api_keys.c.key_hash.in_(key_hashes))
    keys = (codec.api_key_from_row(row) for row in connection.execute(query).mappings())
    return {key.key_hash: key for key in keys}


def get_api_key(connection: Connection, key_id: str) -> ApiKey | None:
    return _one(connection, api_keys.c.id == key_id)


def list_api_keys(connection: Connection) -> list[ApiKey]:
    statement = sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
    return [
        codec.api_key_from_row(row) for row in connection.execute(statement).mappings()
    ]


def revoke_api_key(connection: Connection, key_id: str, now: datetime) -> ApiKey | None:
    """Set ``revoked_at`` unless already set; return the key, or None if unknown."""
    statement = (
        sa.update(api_keys)
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    connection.execute(statement)
    return get_api_key(connection, key_id)


def touch_api_key(connection: Connection, key_id: str, now: datetime) -> None:
    """Record that the key was used at ``now``, at most once per minute."""
    last_used = api_keys.c.last_used_at
    statement = (
        sa.update(api_keys)
        .where(
            api_keys.c.id == key_id,
            sa.or_(last_used.is_(None), last_used <= now - TOUCH_INTERVAL),
        )
        .values(last_used_at=now)
    )
    connection.execute(statement)


def count_request(
    connection: Connection,
    api_key_id: str,
    window_start: int,
    *,
    prune: bool,
    amount: int = 1,
) -> int:
    """Add ``amount`` to the key's counter for the window; return the new count.

    With ``prune``, counters of windows before the previous one are deleted.
    """
    table = rate_limit_counters
    insert = dialect_insert(connection, table).values(
        api_key_id=api_key_id, window_start=window_start, count=amount
    )
    statement = insert.on_conflict_do_update(
        index_elements=[table.c.api_key_id, table.c.window_start],
        set_={"count": table.c.count + amount},
    ).returning(table.c.count)
    count: int = connection.execute(statement).scalar_one()

    if prune:
        oldest_kept = window_start - WINDOW_SECONDS
        connection.execute(sa.delete(table).where(table.c.window_start < oldest_kept))
    return count


def count_requests(
    connection: Connection, requests: Sequence[tuple[str, int]], *, prune: bool
) -> list[int]:
    """Count each ``(api_key_id, window_start)`` request as ``count_request`` does.

    Returns each request's count as if the requests had been counted one by
    one in order, with one statement per key and window.
    """
    amounts = Counter(requests)
    # Sorted, so concurrent batches lock the counter rows in the same order.
    totals = {
        request: count_request(connection, *request, prune=False, amount=amount)
        for request, amount in sorted(amounts.items())
    }
    counts = []
    seen: Counter[tuple[str, int]] = Counter()
    for request in requests:
        seen[request] += 1
        counts.append(totals[request] - amounts[request] + seen[request])

    if prune:
        oldest_kept = max(window for _, window in requests) - WINDOW_SECONDS
        table = rate_limit_counters
        connection.execute(sa.delete(table).where(table.c.window_start < oldest_kept))
    return counts


def _one(connection: Connection, condition: sa.ColumnElement[bool]) -> ApiKey | None:
    row = connection.execute(sa.select(api_keys).where(condition)).mappings().first()
    return None if row is None else codec.api_key_from_row(row)
