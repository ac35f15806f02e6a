"""Webhook endpoints, deliveries and attempts on SQLite and PostgreSQL.

A delivery is one event for one endpoint. The event processor writes
deliveries (``delivery_rows``) in the transaction that marks the events
processed, so an event is handed to every subscribed endpoint exactly once;
a unique key on (endpoint, event) backs this up. Dispatchers
lease due deliveries the way workers lease messages: ``due_at`` is the next
attempt while waiting and the lease expiry while an attempt runs, and a
delivery whose dispatcher died becomes due again when its lease runs out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from sendarix_backends.randomness import random_bytes
from sendarix_backends.sql.codec import event_row
from sendarix_backends.sql.listings import cursor_number, decode_cursor, encode_cursor
from sendarix_backends.sql.schema import (
    JSON_DOCUMENT,
    SEQUENCE,
    UtcTimestamp,
    events,
    from_micros,
    metadata,
    to_micros,
)
from sendarix_backends.webhooks.model import (
    AttemptOutcome,
    AttemptRecord,
    ClaimedDelivery,
    DeliveryStatus,
    EndpointChanges,
    EndpointShare,
    PreviousSecret,
    SavedAttempts,
    SubscriptionPeriod,
    WebhookAttempt,
    WebhookEndpoint,
    still_signing,
)
from sendarix_core.ids import new_id
from sendarix_core.model import Event
from sendarix_core.ports import Page
from sendarix_core.states import EventType

__all__ = [
    "any_due",
    "claim_deliveries",
    "create_endpoint",
    "delete_endpoint",
    "delete_finished_deliveries",
    "delivery_rows",
    "fanout_endpoints",
    "get_endpoint",
    "list_attempts",
    "list_endpoints",
    "record_attempts",
    "release_deliveries",
    "replay_delivery",
    "replay_range",
    "rotate_secret",
    "update_endpoint",
    "webhook_attempts",
    "webhook_deliveries",
    "webhook_endpoints",
]

logger = logging.getLogger("sendarix.webhooks")

# Rotations within the grace period keep this many replaced secrets signing;
# a further rotation drops the oldest at once.
MAX_PREVIOUS_SECRETS = 5

# Due deliveries read per post claimed when shares apply, so that other
# endpoints' deliveries are found behind one endpoint's backlog.
_CANDIDATES_PER_POST = 4

webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("url", sa.Text, nullable=False),
    sa.Column("description", sa.Text, nullable=False),
    sa.Column("event_types", JSON_DOCUMENT, nullable=True),
    sa.Column("enabled", sa.Boolean, nullable=False),
    sa.Column("secret", sa.Text, nullable=False),
    # Secrets replaced by rotations, newest first (see _previous_secrets).
    sa.Column(
        "previous_secrets",
        JSON_DOCUMENT,
        nullable=False,
        server_default=sa.text("'[]'"),
    ),
    sa.Column("created_at", UtcTimestamp, nullable=False),
    sa.Column("updated_at", UtcTimestamp, nullable=False),
    # Event types and enabled before each change (see _earlier_subscriptions).
    sa.Column(
        "earlier_subscriptions",
        JSON_DOCUMENT,
        nullable=False,
        server_default=sa.text("'[]'"),
    ),
    sa.Column("failing_since", UtcTimestamp, nullable=True),
    sa.Column("disabled_at", UtcTimestamp, nullable=True),
    sa.Column("disabled_reason", sa.Text, nullable=True),
)

webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column(
        "endpoint_id",
        sa.Text,
        sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("event_sequence", sa.BigInteger, nullable=False),
    sa.Column("event_id", sa.Text, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("message_id", sa.Text, nullable=True),
    sa.Column("event_created_at", UtcTimestamp, nullable=False),
    sa.Column("payload", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False),
    # The attempts made before the last replay. The retry schedule counts
    # only the attempts after it, so a replay restarts it at 10 s.
    sa.Column(
        "attempts_before_replay",
        sa.Integer,
        nullable=False,
        server_default=sa.text("0"),
    ),
    sa.Column("created_at", UtcTimestamp, nullable=False),
    sa.Column("retry_until", UtcTimestamp, nullable=False),
    sa.Column("due_at", UtcTimestamp, nullable=True),
    sa.Column("lease_owner", sa.Text, nullable=True),
    sa.Column("finished_at", UtcTimestamp, nullable=True),
    sa.UniqueConstraint("endpoint_id", "event_sequence"),
    sa.Index(
        "ix_webhook_deliveries_due",
        "due_at",
        postgresql_where=sa.text("due_at IS NOT NULL"),
        sqlite_where=sa.text("due_at IS NOT NULL"),
    ),
    sa.Index(
        "ix_webhook_deliveries_pending",
        "endpoint_id",
        "message_id",
        "event_sequence",
        postgresql_where=sa.text("status = 'pending'"),
        sqlite_where=sa.text("status = 'pending'"),
    ),
    sa.Index("ix_webhook_deliveries_event_time", "endpoint_id", "event_created_at"),
    sa.Index("ix_webhook_deliveries_created", "created_at"),
)

webhook_attempts = sa.Table(
    "webhook_attempts",
    metadata,
    sa.Column("sequence", SEQUENCE, primary_key=True, autoincrement=True),
    sa.Column(
        "delivery_id",
        sa.Text,
        sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("endpoint_id", sa.Text, nullable=False),
    sa.Column("attempt", sa.Integer, nullable=False),
    sa.Column("attempted_at", UtcTimestamp, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=True),
    sa.Column("latency_ms", sa.Integer, nullable=False),
    sa.Column("response", sa.Text, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Index("ix_webhook_attempts_endpoint", "endpoint_id", "sequence"),
    sa.Index("ix_webhook_attempts_delivery", "delivery_id"),
    sqlite_autoincrement=True,
)

_PENDING = DeliveryStatus.PENDING.value

# How long before the oldest unprocessed event a subscription change is
# still kept. Events are created with their time a little before they are
# committed, so one with a later sequence may have a slightly earlier time.
_SUBSCRIPTION_MARGIN = timedelta(hours=1)


# Endpoints


def create_endpoint(connection: Connection, endpoint: WebhookEndpoint) -> None:
    connection.execute(sa.insert(webhook_endpoints).values(_endpoint_row(endpoint)))


def get_endpoint(
    connection: Connection, endpoint_id: str, *, for_update: bool = False
) -> WebhookEndpoint | None:
    """Return the endpoint, locked until the transaction ends with
    ``for_update``, or None when there is none."""
    statement = sa.select(webhook_endpoints).where(
        webhook_endpoints.c.id == endpoint_id
    )
    if for_update:
        statement = statement.with_for_update()
    row = connection.execute(statement).mappings().one_or_none()
    return None if row is None else _endpoint_from_row(row)


def list_endpoints(connection: Connection) -> list[WebhookEndpoint]:
    statement = sa.select(webhook_endpoints).order_by(webhook_endpoints.c.id)
    return [_endpoint_from_row(row) for row in connection.execute(statement).mappings()]


def update_endpoint(
    connection: Connection, endpoint_id: str, changes: EndpointChanges, now: datetime
) -> WebhookEndpoint | None:
    current = get_endpoint(connection, endpoint_id, for_update=True)
    if current is None:
        return None
    values: dict[str, Any] = {"updated_at": now}
    new_types = current.event_types
    if changes.all_event_types:
        new_types = None
    elif changes.event_types is not None:
        new_types = changes.event_types
    new_enabled = current.enabled if changes.enabled is None else changes.enabled
    if new_types != current.event_types or new_enabled != current.enabled:
        values["earlier_subscriptions"] = _subscriptions_before(
            connection, current, now
        )
    if changes.url is not None:
        values["url"] = changes.url
    if changes.description is not None:
        values["description"] = changes.description
    if changes.all_event_types:
        values["event_types"] = sa.null()
    elif changes.event_types is not None:
        values["event_types"] = list(changes.event_types)
    if changes.enabled is not None:
        values["enabled"] = changes.enabled
        if changes.enabled:
            # Enabling starts a new failure window and clears the reason.
            values.update(failing_since=None, disabled_at=None, disabled_reason=None)
    connection.execute(
        sa.update(webhook_endpoints)
        .where(webhook_endpoints.c.id == endpoint_id)
        .values(values)
    )
    return get_endpoint(connection, endpoint_id)


def delete_endpoint(connection: Connection, endpoint_id: str) -> bool:
    # Attempts go with their deliveries, deliveries with the endpoint; the
    # explicit deletes make this independent of foreign key enforcement.
    delivery_ids = sa.select(webhook_deliveries.c.id).where(
        webhook_deliveries.c.endpoint_id == endpoint_id
    )
    connection.execute(
        sa.delete(webhook_attempts).where(
            webhook_attempts.c.delivery_id.in_(delivery_ids)
        )
    )
    connection.execute(
        sa.delete(webhook_deliveries).where(
            webhook_deliveries.c.endpoint_id == endpoint_id
        )
    )
    result = connection.execute(
        sa.delete(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
    )
    return result.rowcount > 0


def rotate_secret(
    connection: Connection,
    endpoint_id: str,
    new_secret: str,
    *,
    now: datetime,
    grace: timedelta,
) -> WebhookEndpoint | None:
    """Make ``new_secret`` current; the old one keeps signing for ``grace``.

    Earlier secrets keep their own expiry, up to ``MAX_PREVIOUS_SECRETS``
    of them, and expired ones are dropped.
    """
    table = webhook_endpoints
    current = get_endpoint(connection, endpoint_id, for_update=True)
    if current is None:
        return None
    replaced = PreviousSecret(current.secret, now + grace)
    kept = [p for p in current.previous_secrets if now < p.expires_at]
    previous = [replaced, *kept][:MAX_PREVIOUS_SECRETS]
    connection.execute(
        sa.update(table)
        .where(table.c.id == endpoint_id)
        .values(
            previous_secrets=_stored_secrets(previous),
            secret=new_secret,
            updated_at=now,
        )
    )
    return get_endpoint(connection, endpoint_id)


def _endpoint_row(endpoint: WebhookEndpoint) -> dict[str, Any]:
    event_types = None if endpoint.event_types is None else list(endpoint.event_types)
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": sa.null() if event_types is None else event_types,
        "enabled": endpoint.enabled,
        "secret": endpoint.secret,
        "previous_secrets": _stored_secrets(endpoint.previous_secrets),
        "earlier_subscriptions": _stored_subscriptions(endpoint.earlier_subscriptions),
        "created_at": endpoint.created_at,
        "updated_at": endpoint.updated_at,
        "failing_since": endpoint.failing_since,
        "disabled_at": endpoint.disabled_at,
        "disabled_reason": endpoint.disabled_reason,
    }


def _endpoint_from_row(row: Mapping[Any, Any]) -> WebhookEndpoint:
    event_types = row["event_types"]
    return WebhookEndpoint(
        id=row["id"],
        url=row["url"],
        description=row["description"],
        event_types=None if event_types is None else tuple(event_types),
        enabled=bool(row["enabled"]),
        secret=row["secret"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        previous_secrets=_previous_secrets(row["previous_secrets"]),
        earlier_subscriptions=_earlier_subscriptions(row["earlier_subscriptions"]),
        failing_since=row["failing_since"],
        disabled_at=row["disabled_at"],
        disabled_reason=row["disabled_reason"],
    )


def _stored_secrets(previous: Sequence[PreviousSecret]) -> list[dict[str, Any]]:
    return [
        {"secret": p.secret, "expires_at": to_micros(p.expires_at)} for p in previous
    ]


def _previous_secrets(
    stored: Sequence[Mapping[str, Any]],
) -> tuple[PreviousSecret, ...]:
    """Return the ``previous_secrets`` column's list: ``{"secret",
    "expires_at"}`` objects, newest first, with microseconds since the epoch."""
    return tuple(
        PreviousSecret(item["secret"], from_micros(item["expires_at"]))
        for item in stored
    )


def _stored_subscriptions(
    periods: Sequence[SubscriptionPeriod],
) -> list[dict[str, Any]]:
    return [
        {
            "until": to_micros(period.until),
            "events": None if period.event_types is None else list(period.event_types),
            "enabled": period.enabled,
        }
        for period in periods
    ]


def _earlier_subscriptions(
    stored: Sequence[Mapping[str, Any]],
) -> tuple[SubscriptionPeriod, ...]:
    """Return the ``earlier_subscriptions`` column's list: ``{"until",
    "events", "enabled"}`` objects, oldest first, with ``until`` in
    microseconds since the epoch."""
    return tuple(
        SubscriptionPeriod(
            from_micros(item["until"]),
            None if item["events"] is None else tuple(item["events"]),
            bool(item["enabled"]),
        )
        for item in stored
    )


def _subscriptions_before(
    connection: Connection, endpoint: WebhookEndpoint, now: datetime
) -> list[dict[str, Any]]:
    """Return the stored ``earlier_subscriptions`` with the endpoint's
    current event types and ``enabled`` ending at ``now``.

    Periods that ended before any unprocessed event was created decide no
    delivery any more and are dropped.
    """
    oldest_unprocessed = connection.execute(
        sa.select(events.c.created_at)
        .where(events.c.processed_at.is_(None))
        .order_by(events.c.sequence)
        .limit(1)
    ).scalar_one_or_none()
    horizon = min(oldest_unprocessed or now, now) - _SUBSCRIPTION_MARGIN
    current = SubscriptionPeriod(now, endpoint.event_types, endpoint.enabled)
    kept = [
        period
        for period in (*endpoint.earlier_subscriptions, current)
        if period.until > horizon
    ]
    return _stored_subscriptions(kept)


# Fan-out


def fanout_endpoints(connection: Connection) -> list[WebhookEndpoint]:
    """Return the endpoints that events may be handed to.

    A disabled endpoint is among them while it has an enabled earlier
    subscription, which events created before it was disabled get.
    """
    return [
        endpoint for endpoint in list_endpoints(connection) if endpoint.receives_any()
    ]


def delivery_rows(
    endpoints: Sequence[WebhookEndpoint],
    event_rows: Sequence[Mapping[Any, Any]],
    payload_of: Callable[[Mapping[Any, Any]], bytes],
    *,
    now: datetime,
    retry_window: timedelta,
) -> list[dict[str, Any]]:
    """Return one pending delivery row per event and subscribed endpoint.

    ``endpoints`` are those ``fanout_endpoints`` returned. An endpoint
    receives the events created from its own creation on, while it was
    enabled and subscribed to their type.
    ``payload_of`` builds the body of an event's deliveries, only for events
    that have any.
    """
    # NOTE: endpoints have no environment, so each receives the events of
    # test messages as well as live ones, marked by the payload's test_mode.
    if not endpoints or not event_rows:
        return []
    rows = []
    for event in event_rows:
        subscribed = [
            endpoint
            for endpoint in endpoints
            if endpoint.receives(event["type"], event["created_at"])
        ]
        if not subscribed:
            continue
        payload = payload_of(event)
        for endpoint in subscribed:
            rows.append(_delivery_row(endpoint.id, event, payload, now, retry_window))
    return rows


def _delivery_row(
    endpoint_id: str,
    event: Mapping[Any, Any],
    payload: bytes,
    now: datetime,
    retry_window: timedelta,
) -> dict[str, Any]:
    return {
        "id": new_id("whd", now, random_bytes(10)),
        "endpoint_id": endpoint_id,
        "event_sequence": event["sequence"],
        "event_id": event["event_id"],
        "event_type": event["type"],
        "message_id": event["message_id"],
        "event_created_at": event["created_at"],
        "payload": payload.decode(),
        "status": _PENDING,
        "attempts": 0,
        "attempts_before_replay": 0,
        "created_at": now,
        "retry_until": now + retry_window,
        "due_at": now,
        "lease_owner": None,
        "finished_at": None,
    }


# Dispatch


def any_due(connection: Connection, now: datetime) -> bool:
    """Return whether a delivery is due at ``now``, whatever its endpoint."""
    statement = (
        sa.select(webhook_deliveries.c.id)
        .where(
            webhook_deliveries.c.due_at.is_not(None),
            webhook_deliveries.c.due_at <= now,
        )
        .limit(1)
    )
    return connection.execute(statement).first() is not None


def claim_deliveries(
    connection: Connection,
    worker_id: str,
    now: datetime,
    limit: int,
    lease: timedelta,
    *,
    share: EndpointShare | None = None,
) -> list[ClaimedDelivery]:
    """Lease up to ``limit`` due deliveries of enabled endpoints, oldest due first.

    A delivery waits while an earlier event of the same message is still
    pending for that endpoint, or not yet processed (and so may still get a
    delivery), which keeps each message's events in order per endpoint.
    With ``share``, no endpoint gets more than its share of the caller's
    posts, counting those it has in flight.
    """
    deliveries = webhook_deliveries
    earlier = deliveries.alias("earlier")
    unprocessed = events.alias("unprocessed")
    earlier_pending = sa.exists().where(
        earlier.c.endpoint_id == deliveries.c.endpoint_id,
        earlier.c.message_id == deliveries.c.message_id,
        earlier.c.event_sequence < deliveries.c.event_sequence,
        earlier.c.status == _PENDING,
    )
    earlier_unprocessed = sa.exists().where(
        unprocessed.c.message_id == deliveries.c.message_id,
        unprocessed.c.sequence < deliveries.c.event_sequence,
        unprocessed.c.processed_at.is_(None),
    )
    statement = (
        sa.select(deliveries.c.id, deliveries.c.endpoint_id)
        .join(webhook_endpoints, webhook_endpoints.c.id == deliveries.c.endpoint_id)
        .where(
            deliveries.c.due_at.is_not(None),
            deliveries.c.due_at <= now,
            webhook_endpoints.c.enabled.is_(True),
            ~earlier_pending,
            ~earlier_unprocessed,
        )
        .order_by(deliveries.c.due_at)
        .limit(limit if share is None else limit * _CANDIDATES_PER_POST)
        .with_for_update(of=deliveries, skip_locked=True)
    )
    if share is not None and share.full:
        statement = statement.where(deliveries.c.endpoint_id.not_in(share.full))
    candidates = connection.execute(statement).all()
    ids = _within_share(candidates, limit, share)
    if not ids:
        return []

    connection.execute(
        sa.update(deliveries)
        .where(deliveries.c.id.in_(ids))
        .values(due_at=now + lease, lease_owner=worker_id)
    )
    rows = connection.execute(
        sa.select(
            deliveries,
            webhook_endpoints.c.url,
            webhook_endpoints.c.secret,
            webhook_endpoints.c.previous_secrets,
        )
        .join(webhook_endpoints, webhook_endpoints.c.id == deliveries.c.endpoint_id)
        .where(deliveries.c.id.in_(ids))
        .order_by(deliveries.c.event_sequence)
    ).mappings()
    return [_claimed_from_row(row, now) for row in rows]


def release_deliveries(
    connection: Connection, delivery_ids: Sequence[str], worker_id: str, now: datetime
) -> int:
    """Make due now the deliveries of ``delivery_ids`` that ``worker_id`` leases.

    A delivery whose attempt was recorded has no lease and keeps its due
    time. Returns how many were released.
    """
    table = webhook_deliveries
    result = connection.execute(
        sa.update(table)
        .where(
            table.c.id.in_(delivery_ids),
            table.c.lease_owner == worker_id,
            table.c.status == _PENDING,
        )
        .values(due_at=now, lease_owner=None)
    )
    return int(result.rowcount)


def _within_share(
    candidates: Sequence[Any], limit: int, share: EndpointShare | None
) -> list[str]:
    """Return the ids of up to ``limit`` candidates, oldest first, taking
    no more of an endpoint's than its share leaves room for."""
    if share is None:
        return [row.id for row in candidates[:limit]]
    room: dict[str, int] = {}
    ids = []
    for row in candidates:
        endpoint = row.endpoint_id
        left = room.setdefault(
            endpoint, share.limit_of(endpoint) - share.in_flight.get(endpoint, 0)
        )
        if left <= 0:
            continue
        room[endpoint] = left - 1
        ids.append(row.id)
        if len(ids) == limit:
            break
    return ids


def _claimed_from_row(row: Mapping[Any, Any], now: datetime) -> ClaimedDelivery:
    previous = _previous_secrets(row["previous_secrets"])
    signing = [row["secret"], *still_signing(previous, now)]
    return ClaimedDelivery(
        id=row["id"],
        endpoint_id=row["endpoint_id"],
        url=row["url"],
        secrets=tuple(signing),
        event_id=row["event_id"],
        event_type=row["event_type"],
        message_id=row["message_id"],
        payload=row["payload"].encode(),
        attempts=row["attempts"],
        attempts_before_replay=row["attempts_before_replay"],
        retry_until=row["retry_until"],
    )


def record_attempts(
    connection: Connection,
    records: Sequence[AttemptRecord],
    worker_id: str,
    *,
    now: datetime,
    disable_after: timedelta,
) -> SavedAttempts:
    """Store attempts, update their deliveries and endpoints.

    An endpoint whose attempts all failed for ``disable_after`` is disabled.
    The attempts of a delivery deleted with its endpoint while it was posted
    are dropped, so they don't fail the others saved in the same transaction.
    """
    kept = _of_existing_deliveries(connection, records)
    dropped = frozenset(r.delivery_id for r in records) - {r.delivery_id for r in kept}
    return SavedAttempts(
        disabled=_save_attempts(connection, kept, worker_id, now, disable_after),
        dropped=dropped,
    )


def _save_attempts(
    connection: Connection,
    records: Sequence[AttemptRecord],
    worker_id: str,
    now: datetime,
    disable_after: timedelta,
) -> list[str]:
    """Store attempts of existing deliveries; return the endpoints disabled."""
    if not records:
        return []
    connection.execute(
        sa.insert(webhook_attempts), [_attempt_row(record) for record in records]
    )
    for record in records:
        _finish_attempt(connection, record, worker_id)

    succeeded = sorted({r.endpoint_id for r in records if _is_success(r)})
    failed = sorted(
        {r.endpoint_id for r in records if not _is_success(r)} - set(succeeded)
    )
    table = webhook_endpoints
    if succeeded:
        connection.execute(
            sa.update(table).where(table.c.id.in_(succeeded)).values(failing_since=None)
        )
    if not failed:
        return []
    connection.execute(
        sa.update(table)
        .where(table.c.id.in_(failed), table.c.failing_since.is_(None))
        .values(failing_since=min(r.attempted_at for r in records))
    )
    return _disable_failing(connection, failed, now, disable_after)


def _of_existing_deliveries(
    connection: Connection, records: Sequence[AttemptRecord]
) -> Sequence[AttemptRecord]:
    """Return the records whose delivery still exists, locked against deletion
    until the transaction ends."""
    if not records:
        return records
    ids = sorted({record.delivery_id for record in records})
    existing = set(
        connection.execute(
            sa.select(webhook_deliveries.c.id)
            .where(webhook_deliveries.c.id.in_(ids))
            .order_by(webhook_deliveries.c.id)
            .with_for_update(read=True, key_share=True)
        ).scalars()
    )
    if len(existing) == len(ids):
        return records
    return [record for record in records if record.delivery_id in existing]


def _is_success(record: AttemptRecord) -> bool:
    return record.outcome is AttemptOutcome.SUCCEEDED


def _attempt_row(record: AttemptRecord) -> dict[str, Any]:
    return {
        "delivery_id": record.delivery_id,
        "endpoint_id": record.endpoint_id,
        "attempt": record.attempt,
        "attempted_at": record.attempted_at,
        "status_code": record.status_code,
        "latency_ms": round(record.latency.total_seconds() * 1000),
        "response": record.response,
        "error": record.error,
        "outcome": record.outcome.value,
    }


def _finish_attempt(
    connection: Connection, record: AttemptRecord, worker_id: str
) -> None:
    values: dict[str, Any] = {"attempts": record.attempt, "lease_owner": None}
    if record.outcome is AttemptOutcome.RETRYING:
        values["due_at"] = record.next_attempt_at
    else:
        values.update(
            status=record.outcome.value,
            due_at=None,
            finished_at=record.attempted_at,
        )
    # A dispatcher whose lease ran out and was taken over keeps its attempt
    # in the history but no longer decides the delivery's state.
    connection.execute(
        sa.update(webhook_deliveries)
        .where(
            webhook_deliveries.c.id == record.delivery_id,
            webhook_deliveries.c.lease_owner == worker_id,
            webhook_deliveries.c.status == _PENDING,
        )
        .values(values)
    )


def _disable_failing(
    connection: Connection,
    endpoint_ids: list[str],
    now: datetime,
    disable_after: timedelta,
) -> list[str]:
    table = webhook_endpoints
    # The lock keeps a concurrent update_endpoint from committing between
    # this read and the update below, which would drop its subscription
    # change from earlier_subscriptions.
    rows = (
        connection.execute(
            sa.select(table)
            .where(
                table.c.id.in_(endpoint_ids),
                table.c.enabled.is_(True),
                table.c.failing_since <= now - disable_after,
            )
            .order_by(table.c.id)
            .with_for_update()
        )
        .mappings()
        .all()
    )
    disabled_ids = []
    for row in rows:
        endpoint = _endpoint_from_row(row)
        endpoint_id, failing_since = endpoint.id, row["failing_since"]
        disabled_ids.append(endpoint_id)
        reason = (
            f"every delivery attempt failed from {failing_since.isoformat()} "
            f"to {now.isoformat()}; fix the receiver, then enable the endpoint"
        )
        connection.execute(
            sa.update(table)
            .where(table.c.id == endpoint_id)
            .values(
                enabled=False,
                disabled_at=now,
                disabled_reason=reason,
                updated_at=now,
                earlier_subscriptions=_subscriptions_before(connection, endpoint, now),
            )
        )
        # The event reaches the event log and every other subscribed endpoint.
        disabled = Event(
            event_id=new_id("evt", now, random_bytes(10)),
            type=EventType.WEBHOOK_DISABLED,
            created_at=now,
            message_id=None,
            recipient="",
            data={"webhook_id": endpoint_id, "reason": reason},
        )
        connection.execute(sa.insert(events), [event_row(disabled)])
    return disabled_ids


# History and replay


def list_attempts(
    connection: Connection, endpoint_id: str, limit: int, cursor: str | None
) -> Page[WebhookAttempt]:
    """List an endpoint's attempts, newest first."""
    attempts, deliveries = webhook_attempts, webhook_deliveries
    statement = (
        sa.select(
            attempts,
            deliveries.c.event_id,
            deliveries.c.event_type,
            deliveries.c.message_id,
            deliveries.c.status.label("delivery_status"),
        )
        .join(deliveries, deliveries.c.id == attempts.c.delivery_id)
        .where(attempts.c.endpoint_id == endpoint_id)
        .order_by(attempts.c.sequence.desc())
        .limit(limit + 1)
    )
    if cursor is not None:
        statement = statement.where(attempts.c.sequence < _decode_sequence(cursor))
    rows = connection.execute(statement).mappings().all()
    items = [_attempt_from_row(row) for row in rows[:limit]]
    next_cursor = None
    if len(rows) > limit:
        next_cursor = encode_cursor(str(items[-1].sequence))
    return Page(items=items, next_cursor=next_cursor)


def _decode_sequence(cursor: str) -> int:
    return cursor_number(cursor, decode_cursor(cursor))


def _attempt_from_row(row: Mapping[Any, Any]) -> WebhookAttempt:
    return WebhookAttempt(
        sequence=row["sequence"],
        delivery_id=row["delivery_id"],
        event_id=row["event_id"],
        event_type=row["event_type"],
        message_id=row["message_id"],
        attempt=row["attempt"],
        attempted_at=row["attempted_at"],
        status_code=row["status_code"],
        latency_ms=row["latency_ms"],
        response=row["response"],
        error=row["error"],
        outcome=AttemptOutcome(row["outcome"]),
        delivery_status=DeliveryStatus(row["delivery_status"]),
    )


def replay_delivery(
    connection: Connection,
    endpoint_id: str,
    delivery_id: str,
    *,
    now: datetime,
    retry_window: timedelta,
) -> bool | None:
    """Queue a delivery to be posted now; return whether it was queued, or
    None if it does not exist.

    A finished delivery is queued again. A pending one waiting for its next
    retry becomes due now, and one being posted is left as it is.
    """
    table = webhook_deliveries
    found = connection.execute(
        sa.select(table.c.status).where(
            table.c.id == delivery_id, table.c.endpoint_id == endpoint_id
        )
    ).scalar_one_or_none()
    if found is None:
        return None
    waiting = sa.and_(table.c.status == _PENDING, table.c.lease_owner.is_(None))
    result = connection.execute(
        sa.update(table)
        .where(table.c.id == delivery_id, (table.c.status != _PENDING) | waiting)
        .values(_requeued(now, retry_window))
    )
    return result.rowcount > 0


def replay_range(
    connection: Connection,
    endpoint_id: str,
    *,
    start: datetime,
    end: datetime,
    statuses: Sequence[DeliveryStatus],
    now: datetime,
    retry_window: timedelta,
) -> int:
    """Queue again the finished deliveries of events created in [start, end)."""
    table = webhook_deliveries
    wanted = [status.value for status in statuses if status != DeliveryStatus.PENDING]
    result = connection.execute(
        sa.update(table)
        .where(
            table.c.endpoint_id == endpoint_id,
            table.c.event_created_at >= start,
            table.c.event_created_at < end,
            table.c.status.in_(wanted),
        )
        .values(_requeued(now, retry_window))
    )
    return int(result.rowcount)


def _requeued(now: datetime, retry_window: timedelta) -> dict[str, Any]:
    return {
        "attempts_before_replay": webhook_deliveries.c.attempts,
        "status": _PENDING,
        "due_at": now,
        "lease_owner": None,
        "finished_at": None,
        "retry_until": now + retry_window,
    }


def delete_finished_deliveries(
    connection: Connection, cutoff: datetime, limit: int
) -> int:
    """Delete up to ``limit`` finished deliveries created before ``cutoff``."""
    table = webhook_deliveries
    ids = list(
        connection.execute(
            sa.select(table.c.id)
            .where(table.c.created_at < cutoff, table.c.status != _PENDING)
            .order_by(table.c.created_at)
            .limit(limit)
        ).scalars()
    )
    if not ids:
        return 0
    connection.execute(
        sa.delete(webhook_attempts).where(webhook_attempts.c.delivery_id.in_(ids))
    )
    connection.execute(sa.delete(table).where(table.c.id.in_(ids)))
    return len(ids)
