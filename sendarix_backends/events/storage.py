"""``SqlEventStorage``: the event log, webhooks and rollups on a ``SqlStore``.

Each method runs one transaction of the functions in
``sendarix_backends.sql.events``, ``.webhooks`` and ``.analytics`` through the
store's connection pool, so they share its write lock and retries.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy.engine import Connection

from sendarix_backends.events.analytics import (
    AnalyticsQuery,
    LatencySample,
    OutcomeCount,
)
from sendarix_backends.events.query import EventQuery
from sendarix_backends.sql import SqlStore, analytics, events, webhooks
from sendarix_backends.webhooks.model import (
    AttemptRecord,
    ClaimedDelivery,
    DeliveryStatus,
    EndpointChanges,
    EndpointShare,
    SavedAttempts,
    WebhookAttempt,
    WebhookEndpoint,
)
from sendarix_core.model import Event, Message
from sendarix_core.ports import Page
from sendarix_core.suppression import Suppression

__all__ = ["SqlEventStorage"]

# How many times a batch is read before the processor waits for its next
# poll, when other processors keep taking events of the batch first.
_PREPARE_ATTEMPTS = 3


class SqlEventStorage:
    def __init__(self, store: SqlStore) -> None:
        self._store = store

    # Event log

    async def search_events(self, query: EventQuery) -> Page[Event]:
        return await self._store.run_transaction(
            "search_events", events.search_events, query, write=False
        )

    async def get_message(self, message_id: str) -> Message | None:
        return await self._store.get_message(message_id)

    async def record_events(
        self, new_events: Sequence[Event], new_suppressions: Sequence[Suppression]
    ) -> None:
        await self._store.run_transaction(
            "record_events",
            events.record_events,
            new_events,
            new_suppressions,
            write=True,
        )

    async def record_report(
        self, event: Event, new_suppressions: Sequence[Suppression]
    ) -> bool:
        return await self._store.run_transaction(
            "record_report",
            events.record_report,
            event,
            new_suppressions,
            write=True,
        )

    async def record_unsubscribe(
        self, suppression: Suppression, event: Event
    ) -> tuple[Suppression, bool]:
        return await self._store.run_transaction(
            "record_unsubscribe",
            events.record_unsubscribe,
            suppression,
            event,
            write=True,
        )

    async def process_events(
        self, now: datetime, limit: int, retry_window: timedelta
    ) -> tuple[int, int]:
        if self._store.dialect != "sqlite":

            def run(connection: Connection) -> tuple[int, int]:
                return events.process_events(
                    connection, now=now, limit=limit, retry_window=retry_window
                )

            return await self._store.run_transaction("process_events", run, write=True)

        # On SQLite the batch is read and its rollups and webhook deliveries
        # built outside the write lock, which the delivery workers of every
        # process need for their claims and outcomes. A batch that changed
        # in between is read again.
        for _ in range(_PREPARE_ATTEMPTS):
            prepared = await self._store.run_transaction(
                "read_events",
                functools.partial(
                    events.prepare_events,
                    now=now,
                    limit=limit,
                    retry_window=retry_window,
                ),
                write=False,
            )
            if prepared is None:
                return 0, 0
            try:
                return await self._store.run_transaction(
                    "process_events",
                    functools.partial(events.apply_events, now=now),
                    prepared,
                    write=True,
                )
            except events.BatchChanged:
                continue
        return 0, 0

    async def delete_expired(self, cutoff: datetime, limit: int) -> int:
        """Delete one batch of old events, finished deliveries and rollups."""

        def run(connection: Connection) -> int:
            deleted = events.delete_expired(connection, cutoff, limit)
            return deleted + webhooks.delete_finished_deliveries(
                connection, cutoff, limit
            )

        return await self._store.run_transaction("delete_expired", run, write=True)

    async def delete_rollups_before(self, cutoff: datetime) -> int:
        return await self._store.run_transaction(
            "delete_rollups", analytics.delete_rollups_before, cutoff, write=True
        )

    async def read_rollups(
        self, query: AnalyticsQuery
    ) -> tuple[list[OutcomeCount], list[LatencySample]]:
        return await self._store.run_transaction(
            "read_rollups", analytics.read_rollups, query, write=False
        )

    # Webhook endpoints

    async def create_endpoint(self, endpoint: WebhookEndpoint) -> None:
        await self._store.run_transaction(
            "create_webhook", webhooks.create_endpoint, endpoint, write=True
        )

    async def get_endpoint(self, endpoint_id: str) -> WebhookEndpoint | None:
        return await self._store.run_transaction(
            "get_webhook", webhooks.get_endpoint, endpoint_id, write=False
        )

    async def list_endpoints(self) -> list[WebhookEndpoint]:
        return await self._store.run_transaction(
            "list_webhooks", webhooks.list_endpoints, write=False
        )

    async def update_endpoint(
        self, endpoint_id: str, changes: EndpointChanges, now: datetime
    ) -> WebhookEndpoint | None:
        return await self._store.run_transaction(
            "update_webhook",
            webhooks.update_endpoint,
            endpoint_id,
            changes,
            now,
            write=True,
        )

    async def delete_endpoint(self, endpoint_id: str) -> bool:
        return await self._store.run_transaction(
            "delete_webhook", webhooks.delete_endpoint, endpoint_id, write=True
        )

    async def rotate_secret(
        self, endpoint_id: str, secret: str, now: datetime, grace: timedelta
    ) -> WebhookEndpoint | None:
        def run(connection: Connection) -> WebhookEndpoint | None:
            return webhooks.rotate_secret(
                connection, endpoint_id, secret, now=now, grace=grace
            )

        return await self._store.run_transaction(
            "rotate_webhook_secret", run, write=True
        )

    # Webhook deliveries

    async def claim_deliveries(
        self,
        worker_id: str,
        now: datetime,
        limit: int,
        lease: timedelta,
        share: EndpointShare | None = None,
    ) -> list[ClaimedDelivery]:
        # The dispatcher polls whether or not anything is due. A read finds
        # that out without the write lock, which on SQLite would make the
        # delivery workers wait on every poll.
        due = await self._store.run_transaction(
            "webhook_deliveries_due", webhooks.any_due, now, write=False
        )
        if not due:
            return []

        def claim(connection: Connection) -> list[ClaimedDelivery]:
            return webhooks.claim_deliveries(
                connection, worker_id, now, limit, lease, share=share
            )

        return await self._store.run_transaction(
            "claim_webhook_deliveries", claim, write=True
        )

    async def release_deliveries(
        self, delivery_ids: Sequence[str], worker_id: str, now: datetime
    ) -> int:
        """Make due now the deliveries ``worker_id`` still leases; return how many."""
        if not delivery_ids:
            return 0

        def run(connection: Connection) -> int:
            return webhooks.release_deliveries(connection, delivery_ids, worker_id, now)

        return await self._store.run_transaction(
            "release_webhook_deliveries", run, write=True
        )

    async def record_attempts(
        self,
        records: Sequence[AttemptRecord],
        worker_id: str,
        now: datetime,
        disable_after: timedelta,
    ) -> SavedAttempts:
        def run(connection: Connection) -> SavedAttempts:
            return webhooks.record_attempts(
                connection, records, worker_id, now=now, disable_after=disable_after
            )

        return await self._store.run_transaction(
            "record_webhook_attempts", run, write=True
        )

    async def list_attempts(
        self, endpoint_id: str, limit: int, cursor: str | None
    ) -> Page[WebhookAttempt]:
        return await self._store.run_transaction(
            "list_webhook_attempts",
            webhooks.list_attempts,
            endpoint_id,
            limit,
            cursor,
            write=False,
        )

    async def replay_delivery(
        self, endpoint_id: str, delivery_id: str, now: datetime, retry_window: timedelta
    ) -> bool | None:
        def run(connection: Connection) -> bool | None:
            return webhooks.replay_delivery(
                connection, endpoint_id, delivery_id, now=now, retry_window=retry_window
            )

        return await self._store.run_transaction(
            "replay_webhook_delivery", run, write=True
        )

    async def replay_range(
        self,
        endpoint_id: str,
        *,
        start: datetime,
        end: datetime,
        statuses: Sequence[DeliveryStatus],
        now: datetime,
        retry_window: timedelta,
    ) -> int:
        def run(connection: Connection) -> int:
            return webhooks.replay_range(
                connection,
                endpoint_id,
                start=start,
                end=end,
                statuses=statuses,
                now=now,
                retry_window=retry_window,
            )

        return await self._store.run_transaction(
            "replay_webhook_range", run, write=True
        )
