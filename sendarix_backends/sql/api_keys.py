"""API keys and their rate-limit counters."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendarix_backends.sql import bulk, codec
from sendarix_backends.sql.schema import api_keys, rate_limit_counters
from sendarix_core import ratelimit
from sendarix_core.errors import AuthenticationError
from sendarix_core.keys import ApiKey, check_key
from sendarix_core.ratelimit import WINDOW_SECONDS

__all__ = [
    "count_request",
    "count_requests",
    "create_api_key",
    "find_and_count_requests",
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


# Built once, because every batch of authenticated requests runs it.
_BY_HASHES = sa.select(api_keys).where(
    api_keys.c.key_hash.in_(sa.bindparam("hashes", expanding=True))
)


def find_api_keys(
    connection: Connection, key_hashes: Sequence[str]
) -> dict[str, ApiKey]:
    """Return the keys whose hash is in ``key_hashes``, by hash."""
    rows = connection.execute(_BY_HASHES, {"hashes": key_hashes}).mappings()
    keys = (codec.api_key_from_row(row) for row in rows)
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
    result = connection.exec_driver_sql(
        _count_sql(connection.dialect), (api_key_id, window_start, amount)
    )
    count: int = result.scalar_one()

    if prune:
        _prune_counters(connection, window_start)
    return count


@functools.cache
def _count_sql(dialect: sa.Dialect) -> str:
    # Plain SQL: building the upsert with SQLAlchemy cost more than running it.
    mark = bulk.placeholder(dialect)
    return (
        "INSERT INTO rate_limit_counters (api_key_id, window_start, count) "  # noqa: S608
        f"VALUES ({mark}, {mark}, {mark}) "
        "ON CONFLICT (api_key_id, window_start) "
        "DO UPDATE SET count = rate_limit_counters.count + excluded.count "
        "RETURNING count"
    )


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
        _prune_counters(connection, max(window for _, window in requests))
    return counts


def find_and_count_requests(
    connection: Connection, requests: Sequence[tuple[str, datetime]], *, prune: bool
) -> list[tuple[ApiKey | None, int]]:
    """Find the key of each ``(key_hash, now)`` request and count the request.

    Returns each request's key (None when the hash is unknown) and its count
    in the window of ``now``, as ``count_requests`` returns it. A request
    whose key is unknown, revoked or expired at ``now`` is not counted and
    gets 0. A key's first count in a window also records its last use, as
    ``touch_api_key`` does.
    """
    found = find_api_keys(connection, sorted({key_hash for key_hash, _ in requests}))
    keys = [found.get(key_hash) for key_hash, _ in requests]
    usable = [
        (index, key, now)
        for index, (key, (_, now)) in enumerate(zip(keys, requests, strict=True))
        if key is not None and _is_usable(key, now)
    ]
    counts = [0] * len(requests)
    if usable:
        windows = [(key.id, ratelimit.window_start(now)) for _, key, now in usable]
        new_counts = count_requests(connection, windows, prune=False)
        for (index, _, _), count in zip(usable, new_counts, strict=True):
            counts[index] = count
    # Sorted by key id, as the counter rows were locked, so concurrent
    # batches lock the key rows in the same order too.
    first_uses = sorted(
        (key.id, now) for index, key, now in usable if counts[index] == 1
    )
    for key_id, now in first_uses:
        touch_api_key(connection, key_id, now)
    if prune:
        latest = max(ratelimit.window_start(now) for _, now in requests)
        _prune_counters(connection, latest)
    return list(zip(keys, counts, strict=True))


def _is_usable(key: ApiKey, now: datetime) -> bool:
    try:
        check_key(key, key.key_hash, now)
    except AuthenticationError:
        return False
    return True


def _prune_counters(connection: Connection, latest_window: int) -> None:
    """Delete the counters of windows older than the one before ``latest_window``."""
    oldest_kept = latest_window - WINDOW_SECONDS
    table = rate_limit_counters
    connection.execute(sa.delete(table).where(table.c.window_start < oldest_kept))


def _one(connection: Connection, condition: sa.ColumnElement[bool]) -> ApiKey | None:
    row = connection.execute(sa.select(api_keys).where(condition)).mappings().first()
    return None if row is None else codec.api_key_from_row(row)
