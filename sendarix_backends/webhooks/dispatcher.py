"""The webhook dispatcher: lease due deliveries, post them, record attempts.

Posts run concurrently, up to ``concurrency`` at once per process, and
one endpoint gets at most half of them. An endpoint whose latest post in
this process got no answer (a timeout or a connection error), a 429 or a
5xx gets one post at a time until a post gets another response.
Endpoints that are down or hang then take one slot each once their posts
already in flight have ended, and the others keep the rest. Every
attempt is stored with its status code, latency, response excerpt and
error, and its outcome updates the delivery in the same commit, batched
with other attempts that finished at the same time.

A dispatcher that dies mid-post leaves the delivery leased. When the lease
runs out, another dispatcher posts it again under the same ``webhook-id``,
so a receiver gets every event at least once. A clean stop calls
``stop_claiming``, waits for the posts in flight with ``drain``, and after
cancelling the rest makes them due at once with ``release``.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta

import anyio
import anyio.abc

from sendarix_backends.batching import GroupCommitter
from sendarix_backends.events.storage import SqlEventStorage
from sendarix_backends.webhooks.model import (
    AttemptOutcome,
    AttemptRecord,
    ClaimedDelivery,
    EndpointShare,
)
from sendarix_backends.webhooks.schedule import WebhookPolicy
from sendarix_backends.webhooks.signing import delivery_headers
from sendarix_core.clock import Clock
from sendarix_core.errors import StorageError
from sendarix_core.ports import WebhookResponse, WebhookSender

__all__ = ["WebhookDispatcher"]

logger = logging.getLogger("sendarix.webhooks")


class WebhookDispatcher:
    def __init__(
        self,
        *,
        storage: SqlEventStorage,
        sender: WebhookSender,
        clock: Clock,
        policy: WebhookPolicy,
        lease: timedelta,
        poll_interval: float,
        concurrency: int = 20,
        random_fraction: Callable[[], float] = random.random,
    ) -> None:
        self._storage = storage
        self._sender = sender
        self._clock = clock
        self._policy = policy
        self._lease = lease
        self._poll_interval = poll_interval
        self._concurrency = concurrency
        self._random = random_fraction
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{os.urandom(3).hex()}"
        self._in_flight = 0
        self._in_flight_by_endpoint: Counter[str] = Counter()
        # The leased deliveries whose posts have not ended, by id.
        self._posting: dict[str, ClaimedDelivery] = {}
        self._claims_running = 0
        self._stopping = False
        self._post_ended = anyio.Event()
        # Endpoints whose latest post got no response, a 429 or a 5xx; each
        # gets one post at a time.
        self._struggling: set[str] = set()
        self._slot_freed = anyio.Event()
        self._wakeup = anyio.Event()
        self._attempts: GroupCommitter[AttemptRecord, tuple[list[str], bool]] = (
            GroupCommitter(self._save_attempts)
        )

    def wake(self) -> None:
        """Tell the dispatcher that new deliveries may be due."""
        self._wakeup.set()

    def stop_claiming(self) -> None:
        """Let the posts in flight finish but lease no more deliveries."""
        self._stopping = True
        self._wakeup.set()
        self._slot_freed.set()

    async def drain(self) -> None:
        """Return once no claim is running and no post is in flight."""
        while self._in_flight or self._claims_running:
            await self._post_ended.wait()
            self._post_ended = anyio.Event()

    def in_flight(self) -> list[str]:
        """Return the ids of the deliveries leased for posts that have not ended."""
        return list(self._posting)

    async def release(self, delivery_ids: Sequence[str]) -> int:
        """Make deliveries whose posts were cancelled due now; return how many.

        Another dispatcher then posts them at once instead of after the lease.
        """
        return await self._storage.release_deliveries(
            delivery_ids, self.worker_id, self._clock.now()
        )

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Dispatch deliveries until cancelled."""
        async with anyio.create_task_group() as task_group:
            task_status.started()
            while True:
                if self._stopping:
                    # The posts in the task group go on until cancelled.
                    await anyio.sleep_forever()
                free = self._concurrency - self._in_flight
                # Claiming for one free slot at a time would cost a write
                # transaction per post; wait until half the slots are free.
                if free < max(1, self._concurrency // 2):
                    await self._slot_freed.wait()
                    self._slot_freed = anyio.Event()
                    continue
                try:
                    started = await self._claim_and_start(task_group, free)
                except StorageError:
                    logger.exception(
                        "webhook claim failed", extra={"action": "webhook_claim_failed"}
                    )
                    started = 0
                if started == 0:
                    # A post that ends also wakes this wait: the claim may
                    # have found only endpoints that had their share.
                    with anyio.move_on_after(self._poll_interval):
                        await self._wakeup.wait()
                    self._wakeup = anyio.Event()

    async def run_once(self) -> int:
        """Claim one batch, post every delivery and record it; return the count."""
        async with anyio.create_task_group() as task_group:
            claimed = await self._claim_and_start(task_group, self._concurrency)
        return claimed

    async def _claim_and_start(
        self, task_group: anyio.abc.TaskGroup, limit: int
    ) -> int:
        share = EndpointShare(
            per_endpoint=max(1, self._concurrency // 2),
            in_flight=dict(self._in_flight_by_endpoint),
            limits=dict.fromkeys(self._struggling, 1),
        )
        now = self._clock.now()
        self._claims_running += 1
        try:
            claimed = await self._storage.claim_deliveries(
                self.worker_id, now, limit, self._lease, share
            )
        finally:
            self._claims_running -= 1
            self._post_ended.set()
        for delivery in claimed:
            self._posting[delivery.id] = delivery
            self._in_flight += 1
            self._in_flight_by_endpoint[delivery.endpoint_id] += 1
            task_group.start_soon(self._dispatch, delivery)
        return len(claimed)

    async def _dispatch(self, delivery: ClaimedDelivery) -> None:
        try:
            sent_at = self._clock.now()
            headers = delivery_headers(
                delivery.secrets, delivery.id, sent_at, delivery.payload
            )
            response = await self._post(delivery, headers)
            if _is_struggling(response):
                self._struggling.add(delivery.endpoint_id)
            else:
                self._struggling.discard(delivery.endpoint_id)
            record = self._record(delivery, sent_at, response)
            disabled, dropped = await self._attempts.submit(record)
            if dropped:
                logger.info(
                    "webhook endpoint deleted while its delivery was posted; "
                    "the attempt is not kept",
                    extra={
                        "action": "webhook_attempt_dropped",
                        "webhook_id": delivery.id,
                        "endpoint_id": delivery.endpoint_id,
                    },
                )
            else:
                _log_attempt(delivery, record)
            for endpoint_id in disabled:
                logger.warning(
                    "webhook endpoint disabled after failing continuously",
                    extra={"action": "webhook_disabled", "endpoint_id": endpoint_id},
                )
        except StorageError:
            # The lease runs out and the delivery is posted again later.
            logger.exception(
                "webhook attempt not saved",
                extra={"action": "webhook_attempt_failed", "webhook_id": delivery.id},
            )
        finally:
            del self._posting[delivery.id]
            self._in_flight -= 1
            self._post_ended.set()
            self._in_flight_by_endpoint[delivery.endpoint_id] -= 1
            if not self._in_flight_by_endpoint[delivery.endpoint_id]:
                del self._in_flight_by_endpoint[delivery.endpoint_id]
            self._slot_freed.set()
            self._wakeup.set()

    async def _post(
        self, delivery: ClaimedDelivery, headers: Mapping[str, str]
    ) -> WebhookResponse:
        """Post one delivery; a sender that fails unexpectedly fails the attempt.

        The built-in sender reports every failure in its response. A plugin's
        sender that raises, or returns something else, would otherwise end
        the dispatch of every endpoint.
        """
        started = time.monotonic()
        try:
            return _checked_response(
                await self._sender.post(delivery.url, headers, delivery.payload)
            )
        except Exception as error:
            logger.exception(
                "webhook sender failed unexpectedly",
                extra={"action": "webhook_sender_crashed", "webhook_id": delivery.id},
            )
            return WebhookResponse(
                status_code=None,
                body_excerpt="",
                elapsed=timedelta(seconds=time.monotonic() - started),
                error=f"internal error: {error!r}",
            )

    def _record(
        self, delivery: ClaimedDelivery, sent_at: datetime, response: WebhookResponse
    ) -> AttemptRecord:
        now = self._clock.now()
        attempt = delivery.attempts + 1
        succeeded = (
            response.status_code is not None and 200 <= response.status_code < 300
        )
        next_attempt_at = None
        outcome = AttemptOutcome.SUCCEEDED
        if not succeeded:
            # A replay restarts the schedule, while ``attempt`` keeps
            # numbering the delivery's attempts.
            next_attempt_at = self._policy.next_attempt_at(
                attempt - delivery.attempts_before_replay,
                now,
                delivery.retry_until,
                self._random(),
            )
            outcome = (
                AttemptOutcome.FAILED
                if next_attempt_at is None
                else AttemptOutcome.RETRYING
            )
        error = response.error
        if error is None and not succeeded:
            error = f"the endpoint answered HTTP {response.status_code}"
        return AttemptRecord(
            delivery_id=delivery.id,
            endpoint_id=delivery.endpoint_id,
            attempt=attempt,
            attempted_at=sent_at,
            status_code=response.status_code,
            latency=response.elapsed,
            response=response.body_excerpt,
            error=error,
            outcome=outcome,
            next_attempt_at=next_attempt_at,
        )

    async def _save_attempts(
        self, records: Sequence[AttemptRecord]
    ) -> list[tuple[list[str], bool]]:
        """Save a batch; return, per record, the endpoints disabled now and
        whether the record was dropped with its deleted endpoint."""
        saved = await self._storage.record_attempts(
            records,
            self.worker_id,
            self._clock.now(),
            self._policy.disable_after,
        )
        # Each disabled endpoint is reported once, by the first caller.
        return [
            (saved.disabled if index == 0 else [], record.delivery_id in saved.dropped)
            for index, record in enumerate(records)
        ]


def _is_struggling(response: WebhookResponse) -> bool:
    """Return whether the response shows the endpoint down or overloaded.

    A post rejected at once, such as with a 400, leaves the endpoint its share.
    """
    status = response.status_code
    return status is None or status == 429 or status >= 500


def _checked_response(response: object) -> WebhookResponse:
    if not isinstance(response, WebhookResponse):
        raise TypeError(
            f"WebhookSender.post returned {response!r}, not a WebhookResponse"
        )
    return response


def _log_attempt(delivery: ClaimedDelivery, record: AttemptRecord) -> None:
    level = (
        logging.INFO if record.outcome is AttemptOutcome.SUCCEEDED else logging.WARNING
    )
    logger.log(
        level,
        "webhook %s",
        record.outcome,
        extra={
            "action": f"webhook_{record.outcome}",
            "webhook_id": delivery.id,
            "endpoint_id": delivery.endpoint_id,
            "event_id": delivery.event_id,
            "event_type": delivery.event_type,
            "message_id": delivery.message_id,
            "attempt": record.attempt,
            "status_code": record.status_code,
            "latency_ms": round(record.latency.total_seconds() * 1000),
            "error": record.error,
        },
    )
