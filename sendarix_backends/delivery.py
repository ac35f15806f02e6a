"""Delivery workers: claim due messages, decide, deliver, record outcomes.

One ``DeliveryWorker`` runs per process. It claims messages in batches,
routes and paces them and persists the pre-delivery decisions (accepted,
suppressed, expired) for the whole batch in one commit (see
``delivery_admission``). It delivers up to ``worker_concurrency`` messages
at once and records outcomes through a group commit. Leases of messages
still in flight are renewed, so a slow destination does not hand a message
to a second worker. A worker that dies stops renewing, and its messages
become claimable again when the lease runs out.

Priority: claims go tier by tier, high first. ``normal`` and ``low``
deliveries may fill all but a tenth of the concurrency (at least one slot),
so a worker busy with a backlog of lower tiers still has room for a
``high`` message in its next claim cycle.

Duplicates: with ``data_fence`` on, only one delivery per worker at a time
is between sending DATA and saving its outcome. A worker killed at any
moment has therefore sent at most one message that the destination may
have accepted but the database still shows as undelivered; that message
is sent again when its lease runs out.

A worker that was paused or stalled past its lease may find, when it goes
on, that another worker has taken its messages over. Each delivery records
until when its lease surely holds (``_InFlight.valid_until``, on the
clock that runs on while the process is stopped or the machine suspended).
It sends neither DATA nor the content once less than a tenth of the lease
is left. It then gives the message back without recording an attempt, and
the other worker's delivery, or the next claim, is the only one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import timedelta

import anyio
import anyio.abc
import attrs

from sendarix_backends.batching import GroupCommitter
from sendarix_backends.delivery_admission import (
    Admitter,
    Claim,
    Started,
    log_outcome,
)
from sendarix_backends.delivery_control import DeliveryControl
from sendarix_backends.outbound import Outbound
from sendarix_backends.pacing import Pacer
from sendarix_backends.queue_control import Pauses
from sendarix_backends.routing import Dispatch
from sendarix_backends.settings import Settings
from sendarix_backends.smtp.fence import CONTENT_CHECK, DATA_FENCE
from sendarix_backends.waiting import wait_in_line, wake_one
from sendarix_core import lifecycle
from sendarix_core.clock import Clock
from sendarix_core.errors import (
    DeliveryDeadlineError,
    DeliveryError,
    PermanentDeliveryError,
    StorageError,
    TemporaryDeliveryError,
)
from sendarix_core.lifecycle import Transition
from sendarix_core.model import Message, SmtpReply
from sendarix_core.pacing import is_throttling_reply
from sendarix_core.ports import Envelope, MessageQueue, MessageStore, Transport
from sendarix_core.routing import temporary_failure
from sendarix_core.states import Priority

__all__ = ["DeliveryWorker"]

logger = logging.getLogger("sendarix.delivery")

_LOWER_TIERS = (Priority.NORMAL, Priority.LOW)
# Seconds between checks for idle pacing slots to give back.
_PACING_INTERVAL = 0.5
# First wait after a claim found nothing although something was due.
_MIN_IDLE_WAIT = 0.05
# At most half the deliveries in flight may wait for a capped site's slot,
# so a site whose server slows down leaves the rest to other sites.
_WAITING_SHARE = 2
# Under load, slots free a few at a time as outcomes are saved, and each
# claim costs a transaction and a claim cycle besides the work per message.
# So while deliveries are in flight, a claim first waits up to this many
# seconds for a batch's worth of free slots.
_GATHER_SECONDS = 0.02
# Seconds between tries to save an outcome: the first wait and the longest.
_FIRST_OUTCOME_RETRY = 0.25
_MAX_OUTCOME_RETRY = 5.0


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
        control: DeliveryControl | None = None,
    ) -> None:
        self._store = store
        self._queue = queue
        self._outbound = outbound
        self._clock = clock
        self._new_id = new_id
        self._control = control

        self._concurrency = settings.worker_concurrency
        self._reserve = max(1, self._concurrency // 10) if self._concurrency > 1 else 0
        self._claim_batch = settings.claim_batch
        # Free slots that a claim waits for while deliveries are in flight.
        self._gather_slots = min(self._claim_batch, self._concurrency // 2)
        self.gather_seconds = _GATHER_SECONDS
        """How long a claim waits for ``_gather_slots`` free slots; tests set it."""
        self._lease = timedelta(seconds=settings.lease_seconds)
        self._lease_margin = settings.lease_seconds / 10
        self._poll_interval = settings.poll_interval

        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{new_id('wrk')[-6:]}"
        self._pacer = (
            control.pacer(
                self.worker_id,
                self._lease,
                max_waiting=max(1, self._concurrency // _WAITING_SHARE),
            )
            if control
            else None
        )
        self._admitter = Admitter(
            store=store,
            control=control,
            pacer=self._pacer,
            clock=clock,
            new_id=new_id,
        )

        self._in_flight: dict[str, _InFlight] = {}
        # Admitted deliveries that no task has started yet; they are in
        # _in_flight already.
        self._ready: deque[tuple[Started, _InFlight]] = deque()
        # Delivery tasks waiting for the next admitted message.
        self._idle_runners: deque[asyncio.Future[None]] = deque()
        self._stopping = False
        self._holding_content = False
        self._high_in_flight = 0
        # Claims between their start and the registration of their messages
        # in ``_in_flight``, which ``drain`` waits for too.
        self._claims_running = 0
        self._wakeup = anyio.Event()
        self._idle_wait = _MIN_IDLE_WAIT
        self._fence = anyio.Lock() if settings.data_fence else None
        self.claim_cycles = 0
        """Claim cycles run so far; tests count them to check priority."""
        self._outcomes: GroupCommitter[Transition, list[str]] = GroupCommitter(
            self._save_outcomes
        )

    def wake(self) -> None:
        """Tell the worker that a message was just queued in this process."""
        self._wakeup.set()

    def stop_claiming(self) -> None:
        """Let running deliveries finish but claim nothing more."""
        self._stopping = True
        self._wakeup.set()

    def stop_sending(self) -> None:
        """Stop sending message content.

        A delivery that reaches its content gives the message back unsent.
        One whose content went out goes on waiting for the reply.
        """
        self._stopping = True
        self._holding_content = True
        self._wakeup.set()

    async def drain(self) -> None:
        """Return once no claim is running and no delivery is in flight.

        A claim that is running when the worker stops has leased its
        messages, so they are delivered, or released with the others.
        """
        while self._in_flight or self._claims_running:
            await self._wait_for_event()

    async def drain_sent(self) -> None:
        """Return once no delivery whose content went out is in flight.

        The server may have taken such a message already, and cancelling
        its delivery would send it again.
        """
        while any(entry.content_sent for entry in self._in_flight.values()):
            await self._wait_for_event()

    def in_flight(self) -> list[Message]:
        return [entry.message for entry in self._in_flight.values()]

    async def release(self, abandoned: Sequence[Message]) -> None:
        """Make messages whose deliveries were cancelled claimable now.

        Another worker then resumes them at once instead of after the lease.
        """
        if abandoned:
            await self._queue.renew_leases(abandoned, self._clock.now(), timedelta(0))

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
            if self._pacer is not None:
                task_group.start_soon(self._maintain_pacing, self._pacer)
            task_status.started()
            while True:
                if self._stopping:
                    # Deliveries and lease renewals in the task group go on.
                    await anyio.sleep_forever()
                if len(self._in_flight) >= self._concurrency:
                    await self._wait_for_event()
                    continue
                await self._gather_free_slots()
                if self._stopping:
                    continue
                try:
                    started = await self._claim_and_start(
                        functools.partial(self._start_delivery, task_group)
                    )
                except StorageError:
                    logger.exception("claim failed", extra={"action": "claim_failed"})
                    started = 0
                    await anyio.sleep(self._poll_interval)
                if started == 0:
                    await self._wait_for_work()
                else:
                    self._idle_wait = _MIN_IDLE_WAIT

    async def run_once(self) -> int:
        """Claim one batch and deliver it completely; return how many were claimed.

        Pacing slots are given back at the end, without the linger.
        """
        async with anyio.create_task_group() as renewing:
            renewing.start_soon(self._renew_leases)
            async with anyio.create_task_group() as task_group:
                claimed = await self._claim_and_start(
                    lambda started, in_flight: task_group.start_soon(
                        self._deliver, started, in_flight
                    )
                )
            renewing.cancel_scope.cancel()
        if self._pacer is not None:
            await self._pacer.maintain(force=True)
        return claimed

    async def aclose(self) -> None:
        try:
            if self._pacer is not None:
                await self._pacer.aclose()
        except StorageError:
            logger.exception(
                "giving back pacing slots failed; they expire with their lease",
                extra={"action": "pacing_release_failed"},
            )
        finally:
            if self._control is not None:
                await self._control.aclose()
            await self._outbound.aclose()

    async def _claim_and_start(
        self, start: Callable[[Started, _InFlight], object]
    ) -> int:
        self._claims_running += 1
        try:
            pauses = await self._pauses()
            # Read before the claim, so the lease surely holds until then.
            valid_until = _lease_clock() + self._lease.total_seconds()
            claim = await self._claim(pauses)
            if not claim.messages:
                return 0
            for started in await self._admitter.admit(claim, pauses):
                in_flight = _InFlight(started.message, valid_until)
                self._in_flight[started.message.id] = in_flight
                if started.message.priority is Priority.HIGH:
                    self._high_in_flight += 1
                start(started, in_flight)
            return len(claim.messages)
        finally:
            self._claims_running -= 1
            if self._stopping:
                # ``drain`` may be waiting for this claim.
                self._wakeup.set()

    def _start_delivery(
        self, task_group: anyio.abc.TaskGroup, started: Started, in_flight: _InFlight
    ) -> None:
        self._ready.append((started, in_flight))
        if not wake_one(self._idle_runners):
            task_group.start_soon(self._run_deliveries, name="delivery")

    async def _run_deliveries(self) -> None:
        """Deliver admitted messages one after another, waiting for the next.

        Starting an anyio task for every message took about 5% of the
        worker's time in a py-spy profile of delivery to smtp-sink, so the
        tasks live on instead.
        """
        while True:
            if self._ready and not self._holding_content:
                await self._deliver(*self._ready.popleft())
            else:
                await wait_in_line(
                    self._idle_runners, lambda: wake_one(self._idle_runners)
                )

    async def _claim(self, pauses: Pauses) -> Claim:
        """Claim up to the free concurrency, keeping the reserve for ``high``."""
        self.claim_cycles += 1
        free = min(self._concurrency - len(self._in_flight), self._claim_batch)
        lower_in_flight = len(self._in_flight) - self._high_in_flight
        free_lower = self._concurrency - self._reserve - lower_in_flight
        high = [Priority.HIGH] if Priority.HIGH not in pauses.priorities else []
        lower = [tier for tier in _LOWER_TIERS if tier not in pauses.priorities]

        if free_lower <= 0 or not lower:
            return await self._claim_tiers(high, free)
        # One claim serves every tier, high first, up to what the lower
        # tiers may fill. Only when it returned nothing but ``high``
        # messages can more of them be due for the reserved slots.
        limit = min(free, free_lower)
        claim = await self._claim_tiers([*high, *lower], limit)
        room = free - len(claim.messages)
        if high and room > 0 and _all_high(claim.messages, limit):
            claim.extend(await self._claim_tiers(high, room))
        return claim

    async def _claim_tiers(self, tiers: Sequence[Priority], limit: int) -> Claim:
        if not tiers or limit <= 0:
            return Claim()
        priorities = None if len(tiers) == len(Priority) else tiers
        return await self._admitter.claim(
            self._queue, self.worker_id, limit, self._lease, priorities
        )

    async def _pauses(self) -> Pauses:
        if self._control is None or not self._control.has_queue_control:
            return Pauses()
        return await self._control.queue.current_pauses()

    async def _deliver(self, started: Started, in_flight: _InFlight) -> None:
        message, dispatch = started.message, started.dispatch
        fence_held = False

        def check_lease() -> None:
            if _lease_clock() >= in_flight.valid_until - self._lease_margin:
                raise _LeaseLostError(
                    "the worker's lease ran out before the message was sent, so "
                    "another worker may deliver it; it was not sent",
                    enhanced_code="4.3.0",
                    recipient=message.recipient.email,
                )

        def check_content() -> None:
            check_lease()
            if self._holding_content:
                raise _StoppedError(
                    "the worker is stopping, so the message was not sent; "
                    "another worker delivers it",
                    enhanced_code="4.3.0",
                    recipient=message.recipient.email,
                )
            # From here on the server may take the message at any moment.
            in_flight.content_sent = True

        async def enter_fence() -> None:
            nonlocal fence_held
            check_lease()
            # The last moment to keep an expired message from arriving late:
            # connecting and MAIL/RCPT may have taken the time that was left.
            if (
                message.expires_at is not None
                and self._clock.now() >= message.expires_at
            ):
                raise DeliveryDeadlineError(
                    "expires_at passed before DATA; the message was not sent",
                    enhanced_code="4.4.7",
                    recipient=message.recipient.email,
                )
            if self._fence is not None and not fence_held:
                await self._fence.acquire()
                fence_held = True

        DATA_FENCE.set(enter_fence)
        CONTENT_CHECK.set(check_content)
        try:
            try:
                transition = await self._attempt(message, dispatch)
            except _LeaseLostError as error:
                await self._give_back(message, stopped=isinstance(error, _StoppedError))
                return
            stale = await self._save_outcome(transition, in_flight)
            if message.id in stale:
                logger.warning(
                    "outcome discarded: another worker took the message over",
                    extra={"action": "outcome_stale", "message_id": message.id},
                )
            else:
                log_outcome(transition)
        except StorageError:
            # The lease runs out and another attempt follows, so the message is
            # not lost. It may be delivered twice if the remote server accepted it.
            logger.exception(
                "outcome not saved",
                extra={"action": "outcome_failed", "message_id": message.id},
            )
        finally:
            if fence_held and self._fence is not None:
                self._fence.release()
            # This worker may have claimed the message again after its lease
            # ran out; that delivery keeps its entry.
            if self._in_flight.get(message.id) is in_flight:
                del self._in_flight[message.id]
            if message.priority is Priority.HIGH:
                self._high_in_flight -= 1
            if self._pacer is not None and dispatch is not None:
                self._pacer.finished(dispatch.site)
            self._wakeup.set()

    async def _save_outcome(
        self, transition: Transition, in_flight: _InFlight
    ) -> list[str]:
        """Save a delivery's outcome; return the ids found taken over.

        An outcome left unsaved when the lease runs out leads to another
        attempt, which repeats a message the server accepted. So a failed
        save is tried again, after waits that double from 0.25 s up to 5 s,
        while the lease holds (renewals go on meanwhile) and for at most the
        lease's length.
        """
        give_up_at = _lease_clock() + self._lease.total_seconds()
        wait = _FIRST_OUTCOME_RETRY
        while True:
            try:
                return await self._outcomes.submit(transition)
            except StorageError as error:
                if _lease_clock() + wait >= min(in_flight.valid_until, give_up_at):
                    raise
                logger.warning(
                    "saving the outcome failed, trying again in %.2f s: %s",
                    wait,
                    error,
                    extra={
                        "action": "outcome_retry",
                        "message_id": transition.after.id,
                    },
                )
            await anyio.sleep(wait)
            wait = min(wait * 2, _MAX_OUTCOME_RETRY)

    async def _give_back(self, message: Message, *, stopped: bool = False) -> None:
        """Make a message due again that was not sent, because its lease ran
        out or, with ``stopped``, because the worker is stopping.

        Nothing was sent, so no attempt is recorded. When another worker has
        taken the message over, its version no longer matches and this
        changes nothing.
        """
        if stopped:
            logger.info(
                "worker stopping before the content was sent; giving it back",
                extra={"action": "delivery_given_back", "message_id": message.id},
            )
        else:
            logger.warning(
                "lease ran out before the message was sent; giving it back",
                extra={"action": "lease_lost", "message_id": message.id},
            )
        try:
            await self._queue.renew_leases([message], self._clock.now(), timedelta(0))
        except StorageError:
            logger.exception(
                "giving back the message failed; its lease runs out on its own",
                extra={"action": "release_failed", "message_id": message.id},
            )

    async def _attempt(self, message: Message, dispatch: Dispatch | None) -> Transition:
        now = self._clock.now
        retry = dispatch.rule.action.retry if dispatch is not None else None
        try:
            # TODO: build the MIME once a pooled session is free. Built here,
            # the bytes of every delivery waiting for a session stay in memory.
            envelope = await self._outbound.prepare(message)
            reply = _checked_reply(await self._send(message, dispatch, envelope))
        except _LeaseLostError:
            raise
        except TemporaryDeliveryError as error:
            if message.expires_at is not None and now() >= message.expires_at:
                return lifecycle.expire(
                    message, now=now(), event_id=self._new_id("evt")
                )
            reply = _reply_of(error)
            await self._check_throttling(dispatch, reply)
            return temporary_failure(
                message, reply, now=now(), event_id=self._new_id("evt"), retry=retry
            )
        except PermanentDeliveryError as error:
            return lifecycle.bounce(
                message,
                _reply_of(error),
                now=now(),
                event_id=self._new_id("evt"),
                to_mail=error.details.get("stage") == "MAIL",
            )
        except Exception as error:
            logger.exception(
                "delivery attempt failed unexpectedly",
                extra={"action": "attempt_crashed", "message_id": message.id},
            )
            reply = SmtpReply(
                code=None, enhanced_code="4.3.0", text=f"internal error: {error!r}"
            )
            return temporary_failure(
                message, reply, now=now(), event_id=self._new_id("evt"), retry=retry
            )
        return lifecycle.deliver(
            message, reply, now=now(), event_id=self._new_id("evt")
        )

    async def _send(
        self, message: Message, dispatch: Dispatch | None, envelope: Envelope
    ) -> SmtpReply:
        if dispatch is None or self._control is None:
            transport: Transport = self._outbound.transport_for(message)
            return await transport.deliver(envelope)
        site = dispatch.site
        pacer = self._pacer
        if pacer is None or not pacer.own_transport(site):
            async with self._control.transports.use(
                dispatch.rule,
                None,
                from_settings=not self._control.routes.default_changed,
            ) as transport:
                return await transport.deliver(envelope)
        async with (
            pacer.session_slot(site),
            self._control.transports.use(
                dispatch.rule,
                site,
                from_settings=not self._control.routes.default_changed,
                connect_gate=pacer.connection_gate(site),
            ) as transport,
        ):
            return await transport.deliver(envelope)

    async def _check_throttling(
        self, dispatch: Dispatch | None, reply: SmtpReply
    ) -> None:
        if self._pacer is None or dispatch is None:
            return
        if not is_throttling_reply(reply.code, reply.enhanced_code, reply.text):
            return
        try:
            await self._pacer.report_throttle(dispatch.site, reply)
        except StorageError:
            logger.exception(
                "recording a throttled destination failed",
                extra={"action": "throttle_not_saved", "site": dispatch.site},
            )

    async def _save_outcomes(
        self, transitions: Sequence[Transition]
    ) -> list[list[str]]:
        stale = await self._store.save_transitions(transitions)
        return [stale] * len(transitions)

    async def _gather_free_slots(self) -> None:
        """Wait up to ``gather_seconds`` for ``_gather_slots`` free slots.

        Returns at once when nothing is in flight, and when stopping.
        """
        with anyio.move_on_after(self.gather_seconds):
            while (
                self._in_flight
                and not self._stopping
                and self._concurrency - len(self._in_flight) < self._gather_slots
            ):
                await self._wait_for_event()

    async def _wait_for_event(self) -> None:
        await self._wakeup.wait()
        self._wakeup = anyio.Event()

    async def _wait_for_work(self) -> None:
        """Wait for a wake-up, a freed slot or the next due message.

        When something is already due but the claim found nothing (another
        worker holds it locked, or its tier is paused or reserved), the wait
        doubles from 50 ms up to the poll interval instead of spinning.
        """
        timeout = self._poll_interval
        try:
            next_due = await self._queue.next_due_at()
        except StorageError:
            # The loop then waits a full poll interval and claims again, as
            # after a failed claim.
            logger.exception(
                "reading the next due time failed", extra={"action": "claim_failed"}
            )
            next_due = None
        if next_due is not None:
            until_due = (next_due - self._clock.now()).total_seconds()
            if until_due <= 0:
                timeout = min(timeout, self._idle_wait)
                self._idle_wait = min(self._idle_wait * 2, self._poll_interval)
            else:
                timeout = max(_MIN_IDLE_WAIT, min(timeout, until_due))
        with anyio.move_on_after(timeout):
            await self._wakeup.wait()
        self._wakeup = anyio.Event()

    async def _renew_leases(self) -> None:
        interval = self._lease.total_seconds() / 3
        while True:
            await anyio.sleep(interval)
            if not self._in_flight:
                continue
            renewing = list(self._in_flight.values())
            began = _lease_clock()
            try:
                await self._queue.renew_leases(
                    [entry.message for entry in renewing],
                    self._clock.now(),
                    self._lease,
                )
            except StorageError:
                logger.exception(
                    "lease renewal failed", extra={"action": "renew_failed"}
                )
                continue
            finished = _lease_clock()
            for in_flight in renewing:
                # A renewal that ended after the lease ran out may have found
                # the message taken over, and renewed nothing.
                if finished < in_flight.valid_until:
                    in_flight.valid_until = began + self._lease.total_seconds()

    async def _maintain_pacing(self, pacer: Pacer) -> None:
        while True:
            await anyio.sleep(_PACING_INTERVAL)
            try:
                await pacer.maintain()
            except StorageError:
                logger.exception(
                    "pacing maintenance failed",
                    extra={"action": "pacing_maintenance_failed"},
                )


def _all_high(claimed: Sequence[Message], limit: int) -> bool:
    """Return whether a claim of ``limit`` filled up with ``high`` messages alone."""
    return len(claimed) >= limit and all(
        message.priority is Priority.HIGH for message in claimed
    )


def _reply_of(error: DeliveryError) -> SmtpReply:
    # A malformed reply line reaches here as code -1 (aiosmtplib's marker)
    # with its line breaks; the API must show neither.
    code = error.reply_code
    if code is not None and not 200 <= code <= 599:
        code = None
    return SmtpReply(
        code=code,
        enhanced_code=error.enhanced_code,
        text=" ".join(error.reply_text.split()),
        mx_host=error.mx_host,
    )


def _checked_reply(reply: object) -> SmtpReply:
    """Return ``reply``; raise ``TypeError`` if a transport returned another type.

    A plugin's wrong return is then handled as if ``deliver`` had raised.
    """
    if not isinstance(reply, SmtpReply):
        raise TypeError(f"Transport.deliver returned {reply!r}, not an SmtpReply")
    return reply


class _LeaseLostError(TemporaryDeliveryError):
    """The lease of a delivery ran out before its message was sent."""


class _StoppedError(_LeaseLostError):
    """The worker began to stop before a delivery's content was sent."""


def _lease_clock() -> float:
    """Seconds on a clock that runs on while the process or machine sleeps.

    Linux's ``CLOCK_MONOTONIC`` stops while the machine is suspended, and the
    lease in the database runs on; ``CLOCK_BOOTTIME`` does not stop.
    """
    return time.clock_gettime(_LEASE_CLOCK)


_LEASE_CLOCK = getattr(time, "CLOCK_BOOTTIME", time.CLOCK_MONOTONIC)


@attrs.define
class _InFlight:
    """A message in flight, and until when its lease surely holds.

    ``valid_until`` is on ``_lease_clock()``.
    """

    message: Message
    valid_until: float
    content_sent: bool = False
