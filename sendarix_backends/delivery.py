"""Delivery workers: claim due messages, decide, deliver, record outcomes.

One ``DeliveryWorker`` runs per process. It claims messages in batches,
persists the pre-delivery decision (accepted, suppressed or expired) for the
whole batch in one commit, delivers up to ``worker_concurrency`` messages at
once, and records outcomes through a group commit. Leases of messages still
in flight are renewed, so a slow destination does not hand a message to a
second worker; a worker that dies stops renewing, and its messages become
claimable again when the lease runs out.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Sequence
from datetime import timedelta

import anyio
import anyio.abc

from sendarix_backends.batching import GroupCommitter
from sendarix_backends.outbound import Outbound
from sendarix_backends.settings import Settings
from sendarix_core import lifecycle
from sendarix_core.clock import Clock
from sendarix_core.errors import (
    DeliveryError,
    PermanentDeliveryError,
    StorageError,
    TemporaryDeliveryError,
)
from sendarix_core.lifecycle import Transition
from sendarix_core.model import Message, SmtpReply
from sendarix_core.ports import MessageQueue, MessageStore
from sendarix_core.states import MessageStatus
from sendarix_core.suppression import normalize_recipient

__all__ = ["DeliveryWorker"]

logger = logging.getLogger("sendarix.delivery")


class DeliveryWorker:
    def __init__(
        self,
        *,
        store: MessageStore,
        queue: MessageQueue,
        outbound: Outbound,
        clock: Clock,
        new_id: Callable[[str], str],
        settings: Settings,
    ) -> None:
        self._store = store
        self._queue = queue
        self._outbound = outbound
        self._clock = clock
        self._new_id = new_id
        self._concurrency = settings.worker_concurrency
        self._claim_batch = settings.claim_batch
        self._lease = timedelta(seconds=settings.lease_seconds)
        self._poll_interval = settings.poll_interval
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{new_id('wrk')[-6:]}"
        self._in_flight: dict[str, Message] = {}
        self._slot_freed = anyio.Event()
        self._wakeup = anyio.Event()
        self._outcomes: GroupCommitter[Transition, list[str]] = GroupCommitter(
            self._save_outcomes
        )

    def wake(self) -> None:
        """Tell the worker that a message was just queued in this process."""
        self._wakeup.set()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Deliver messages until cancelled."""
        logger.info(
            "worker started",
            extra={"action": "worker_started", "worker": self.worker_id},
        )
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(self._renew_leases)
            task_status.started()
            while True:
                free = self._concurrency - len(self._in_flight)
                if free <= 0:
                    await self._slot_freed.wait()
                    self._slot_freed = anyio.Event()
                    continue
                try:
                    started = await self._claim_and_start(
                        task_group, min(free, self._claim_batch)
                    )
                except StorageError:
                    logger.exception("claim failed", extra={"action": "claim_failed"})
                    started = 0
                    await anyio.sleep(self._poll_interval)
                if started == 0:
                    await self._wait_for_work()

    async def run_once(self) -> int:
        """Claim one batch and deliver it completely; return how many were claimed."""
        async with anyio.create_task_group() as task_group:
            claimed = await self._claim_and_start(task_group, self._claim_batch)
        return claimed

    async def aclose(self) -> None:
        await self._outbound.aclose()

    async def _claim_and_start(
        self, task_group: anyio.abc.TaskGroup, limit: int
    ) -> int:
        now = self._clock.now()
        claimed = await self._queue.claim_due(self.worker_id, now, limit, self._lease)
        if not claimed:
            return 0

        recipients = [
            normalize_recipient(message.recipient.email) for message in claimed
        ]
        suppressions = await self._store.get_suppressions(recipients)
        decisions: list[Transition] = []
        to_deliver: list[Message] = []
        for message, recipient in zip(claimed, recipients, strict=True):
            transition = lifecycle.decide_claimed(
                message,
                suppressions.get(recipient),
                now=now,
                event_id=self._new_id("evt"),
            )
            if transition is None:
                to_deliver.append(message)
            else:
                decisions.append(transition)

        stale = set(await self._store.save_transitions(decisions))
        for transition in decisions:
            message = transition.after
            if message.id in stale:
                continue
            if message.status == MessageStatus.ACCEPTED:
                to_deliver.append(message)
            else:
                _log_outcome(transition)

        for message in to_deliver:
            self._in_flight[message.id] = message
            task_group.start_soon(self._deliver, message)
        return len(claimed)

    async def _deliver(self, message: Message) -> None:
        try:
            transition = await self._attempt(message)
            stale = await self._outcomes.submit(transition)
            if message.id in stale:
                logger.warning(
                    "outcome discarded: another worker took the message over",
                    extra={"action": "outcome_stale", "message_id": message.id},
                )
            else:
                _log_outcome(transition)
        except StorageError:
            # The lease runs out and another attempt follows, so the message is
            # not lost; it may be delivered twice if the remote server accepted it.
            logger.exception(
                "outcome not saved",
                extra={"action": "outcome_failed", "message_id": message.id},
            )
        finally:
            self._in_flight.pop(message.id, None)
            self._slot_freed.set()

    async def _attempt(self, message: Message) -> Transition:
        now = self._clock.now
        try:
            envelope = await self._outbound.prepare(message)
            transport = self._outbound.transport_for(message)
            reply = await transport.deliver(envelope)
        except TemporaryDeliveryError as error:
            return lifecycle.defer_or_bounce(
                message, _reply_of(error), now=now(), event_id=self._new_id("evt")
            )
        except PermanentDeliveryError as error:
            return lifecycle.bounce(
                message, _reply_of(error), now=now(), event_id=self._new_id("evt")
            )
        except Exception as error:
            logger.exception(
                "delivery attempt failed unexpectedly",
                extra={"action": "attempt_crashed", "message_id": message.id},
            )
            reply = SmtpReply(
                code=None, enhanced_code="4.3.0", text=f"internal error: {error!r}"
            )
            return lifecycle.defer_or_bounce(
                message, reply, now=now(), event_id=self._new_id("evt")
            )
        return lifecycle.deliver(
            message, reply, now=now(), event_id=self._new_id("evt")
        )

    async def _save_outcomes(
        self, transitions: Sequence[Transition]
    ) -> list[list[str]]:
        stale = await self._store.save_transitions(transitions)
        return [stale] * len(transitions)

    async def _wait_for_work(self) -> None:
        timeout = self._poll_interval
        next_due = await self._queue.next_due_at()
        if next_due is not None:
            until_due = (next_due - self._clock.now()).total_seconds()
            # The floor keeps a due message that another worker holds locked
            # from turning this wait into a busy loop.
            timeout = max(0.05, min(timeout, until_due))
        with anyio.move_on_after(timeout):
            await self._wakeup.wait()
        self._wakeup = anyio.Event()

    async def _renew_leases(self) -> None:
        interval = self._lease.total_seconds() / 3
        while True:
            await anyio.sleep(interval)
            if not self._in_flight:
                continue
            try:
                await self._queue.renew_leases(
                    list(self._in_flight.values()), self._clock.now(), self._lease
                )
            except StorageError:
                logger.exception(
                    "lease renewal failed", extra={"action": "renew_failed"}
                )


def _reply_of(error: DeliveryError) -> SmtpReply:
    return SmtpReply(
        code=error.reply_code,
        enhanced_code=error.enhanced_code,
        text=error.reply_text,
        mx_host=error.mx_host,
    )


def _log_outcome(transition: Transition) -> None:
    message = transition.after
    reply = message.last_reply
    logger.info(
        "message %s",
        message.status,
        extra={
            "action": f"message_{message.status}",
            "message_id": message.id,
            "attempt": message.attempts,
            "smtp_code": reply.code if reply else None,
            "mx_host": reply.mx_host if reply else None,
        },
    )
