"""Background tasks over the event log: processing and retention.

``EventProcessor`` hands unprocessed events to webhook endpoints and the
analytics rollups, one batch per transaction. ``RetentionCleaner`` deletes
events, finished webhook deliveries and rollups past their retention, in
small batches, each its own short transaction, so the write lock it takes
on SQLite is never held long enough to stall delivery workers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

import anyio
import anyio.abc

from sendarix_backends.events.storage import SqlEventStorage
from sendarix_core.clock import Clock
from sendarix_core.errors import StorageError

__all__ = ["EventProcessor", "RetentionCleaner"]

logger = logging.getLogger("sendarix.events")

# Rollups are a few rows per hour and group, so they outlive events.
ROLLUP_RETENTION = timedelta(days=400)


class EventProcessor:
    def __init__(
        self,
        *,
        storage: SqlEventStorage,
        clock: Clock,
        retry_window: timedelta,
        poll_interval: float,
        on_deliveries: Callable[[], None],
        batch_size: int = 500,
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._retry_window = retry_window
        self._poll_interval = poll_interval
        self._on_deliveries = on_deliveries
        self._batch_size = batch_size

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Process events until cancelled."""
        task_status.started()
        while True:
            try:
                processed = await self.run_once()
            except StorageError:
                logger.exception(
                    "event processing failed", extra={"action": "events_failed"}
                )
                processed = 0
            if processed < self._batch_size:
                await anyio.sleep(self._poll_interval)

    async def run_once(self) -> int:
        """Process one batch; return how many events it held."""
        processed, deliveries = await self._storage.process_events(
            self._clock.now(), self._batch_size, self._retry_window
        )
        if deliveries:
            self._on_deliveries()
        if processed:
            logger.debug(
                "events processed",
                extra={
                    "action": "events_processed",
                    "events": processed,
                    "deliveries": deliveries,
                },
            )
        return processed

    async def drain(self) -> int:
        """Process batches until none is left; return the number of events."""
        total = 0
        while processed := await self.run_once():
            total += processed
        return total


class RetentionCleaner:
    def __init__(
        self,
        *,
        storage: SqlEventStorage,
        clock: Clock,
        retention: timedelta,
        interval: float = 3600.0,
        batch_size: int = 1000,
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._retention = retention
        self._interval = interval
        self._batch_size = batch_size

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Delete expired rows every ``interval`` seconds until cancelled."""
        task_status.started()
        while True:
            try:
                await self.run_once()
            except StorageError:
                logger.exception(
                    "event cleanup failed", extra={"action": "cleanup_failed"}
                )
            await anyio.sleep(self._interval)

    async def run_once(self) -> int:
        """Delete everything past retention, batch by batch; return the rows."""
        now = self._clock.now()
        cutoff = now - self._retention
        total = 0
        while True:
            deleted = await self._storage.delete_expired(cutoff, self._batch_size)
            total += deleted
            if deleted < self._batch_size:
                break
            # Let delivery workers take the write lock between batches.
            await anyio.sleep(0.01)
        total += await self._storage.delete_rollups_before(now - ROLLUP_RETENTION)
        if total:
            logger.info(
                "expired events deleted",
                extra={"action": "events_expired", "rows": total},
            )
        return total
