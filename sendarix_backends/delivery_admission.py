"""From a claimed batch to the deliveries a worker starts now.

For each claimed message the lifecycle decides first: an expired message
expires, a suppressed recipient is suppressed. Messages that need no
routing move to ``accepted`` at once, which counts one attempt. These
decisions are saved in the claim's transaction when the queue offers
``claim_and_decide``, and right after the claim otherwise. The other
messages are routed and paced. Those the pacer admits move to
``accepted`` in one more commit. The rest go back to the queue unchanged,
or are parked when their site is paused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

import attrs

from sendarix_backends.delivery_control import DeliveryControl
from sendarix_backends.pacing import Admission, Pacer
from sendarix_backends.queue_control import Pauses
from sendarix_backends.routing import Dispatch
from sendarix_core import lifecycle
from sendarix_core.clock import Clock
from sendarix_core.lifecycle import Transition
from sendarix_core.model import Message
from sendarix_core.ports import MessageQueue, MessageStore
from sendarix_core.routing import TransportKind
from sendarix_core.states import MessageStatus, Priority
from sendarix_core.suppression import Suppression, normalize_recipient

__all__ = ["Admitter", "Claim", "DecidingQueue", "Started"]

logger = logging.getLogger("sendarix.delivery")


@attrs.frozen
class Started:
    """A delivery to start: the accepted message and where it goes.

    ``dispatch`` is None for test-mode messages and without routing.
    """

    message: Message
    dispatch: Dispatch | None


@attrs.frozen
class _Candidate:
    message: Message
    accept: Transition | None
    routed: bool


class _DecidedClaim(Protocol):
    @property
    def messages(self) -> list[Message]: ...
    @property
    def stale(self) -> list[str]: ...
    @property
    def released(self) -> frozenset[str]: ...


@runtime_checkable
class DecidingQueue(Protocol):
    """A queue that saves the decisions about a claimed batch with the claim.

    ``decide`` receives the claimed messages and the suppression entries of
    their recipients, by message id.
    """

    async def claim_and_decide(
        self,
        worker_id: str,
        now: datetime,
        limit: int,
        lease: timedelta,
        decide: Callable[
            [Sequence[Message], Mapping[str, Suppression]], Sequence[Transition]
        ],
        *,
        priorities: Sequence[Priority] | None = None,
    ) -> _DecidedClaim: ...


@attrs.define
class Claim:
    """Claimed messages, with the transitions already saved for them.

    ``decisions`` are the saved transitions other than ``accepted``.
    ``stale`` lists the ids whose transition was not saved because another
    worker had claimed the message since.
    """

    messages: list[Message] = attrs.Factory(list)
    decisions: list[Transition] = attrs.Factory(list)
    stale: set[str] = attrs.Factory(set)
    candidates: list[_Candidate] = attrs.Factory(list)
    released: set[str] = attrs.Factory(set)
    """Ids of accepted messages that a stopping worker gave back."""

    def extend(self, other: Claim) -> None:
        self.messages.extend(other.messages)
        self.decisions.extend(other.decisions)
        self.stale.update(other.stale)
        self.candidates.extend(other.candidates)
        self.released.update(other.released)


@attrs.define
class _Decider:
    """Callback for ``claim_and_decide`` that decides each claimed message.

    It runs in a worker thread, with event ids made on the event loop
    before the claim. ``decisions`` and ``candidates`` keep the result of
    the last call, which is the one whose claim was committed.
    """

    now: datetime
    event_ids: list[str]
    routing: bool
    decisions: list[Transition] = attrs.Factory(list)
    candidates: list[_Candidate] = attrs.Factory(list)

    def __call__(
        self, claimed: Sequence[Message], suppressions: Mapping[str, Suppression]
    ) -> list[Transition]:
        decisions: list[Transition] = []
        accepted: list[Transition] = []
        candidates: list[_Candidate] = []
        for message, event_id in zip(claimed, self.event_ids, strict=False):
            transition = lifecycle.decide_claimed(
                message,
                suppressions.get(message.id),
                now=self.now,
                event_id=event_id,
            )
            routed = self.routing and not message.test_mode
            if transition is None:
                candidates.append(_Candidate(message, None, routed))
            elif transition.after.status is not MessageStatus.ACCEPTED:
                decisions.append(transition)
            else:
                candidates.append(_Candidate(message, transition, routed))
                if not routed:
                    accepted.append(transition)
        self.decisions = decisions
        self.candidates = candidates
        return [*decisions, *accepted]


class Admitter:
    def __init__(
        self,
        *,
        store: MessageStore,
        control: DeliveryControl | None,
        pacer: Pacer | None,
        clock: Clock,
        new_id: Callable[[str], str],
    ) -> None:
        self._store = store
        self._control = control
        self._pacer = pacer
        self._clock = clock
        self._new_id = new_id

    async def claim(
        self,
        queue: MessageQueue,
        worker_id: str,
        limit: int,
        lease: timedelta,
        priorities: Sequence[Priority] | None,
    ) -> Claim:
        """Claim up to ``limit`` messages and save the decisions that need no
        routing: expired, suppressed, and accepted for unrouted messages."""
        now = self._clock.now()
        decider = _Decider(
            now=now,
            event_ids=[self._new_id("evt") for _ in range(limit)],
            routing=self._control is not None,
        )
        if isinstance(queue, DecidingQueue):
            result = await queue.claim_and_decide(
                worker_id, now, limit, lease, decider, priorities=priorities
            )
            claimed, stale = result.messages, result.stale
            released = set(result.released)
        else:
            claimed = await queue.claim_due(
                worker_id, now, limit, lease, priorities=priorities
            )
            recipients = {m.id: normalize_recipient(m.recipient.email) for m in claimed}
            found = await self._store.get_suppressions(list(recipients.values()))
            suppressions = {
                message_id: found[recipient]
                for message_id, recipient in recipients.items()
                if recipient in found
            }
            transitions = decider(claimed, suppressions)
            stale = await self._store.save_transitions(transitions)
            # NOTE: claim_due does not tell a released lease from one that
            # ran out, so every resumed message here logs a takeover.
            released = set()
        return Claim(
            claimed, decider.decisions, set(stale), decider.candidates, released
        )

    async def admit(self, claim: Claim, pauses: Pauses) -> list[Started]:
        """Route and pace a claimed batch; return what to deliver."""
        for transition in claim.decisions:
            if transition.after.id not in claim.stale:
                log_outcome(transition)

        candidates = claim.candidates
        routed = [c for c in candidates if c.routed]
        dispatches = await self._route(routed)
        admission = await self._pace(routed, dispatches, pauses)

        admitted_ids = {message.id for message, _ in admission.admitted}
        starting = [
            c for c in candidates if not c.routed or c.message.id in admitted_ids
        ]
        transitions = [c.accept for c in starting if c.routed and c.accept]
        stale = claim.stale | set(await self._store.save_transitions(transitions))
        await self._hand_back(admission)

        started = []
        for candidate in starting:
            message = candidate.accept.after if candidate.accept else candidate.message
            dispatch = dispatches.get(message.id)
            if message.id in stale:
                if self._pacer is not None and dispatch is not None:
                    self._pacer.finished(dispatch.site)
                continue
            if candidate.accept is None and message.id in claim.released:
                logger.info(
                    "resuming a delivery that a stopping worker gave back",
                    extra={"action": "lease_released", "message_id": message.id},
                )
            elif candidate.accept is None:
                logger.warning(
                    "resuming a delivery whose worker's lease ran out",
                    extra={"action": "lease_taken_over", "message_id": message.id},
                )
            started.append(Started(message, dispatch))
        return started

    async def _route(self, routed: list[_Candidate]) -> dict[str, Dispatch]:
        if self._control is None or not routed:
            return {}
        dispatches = await self._control.router.route([c.message for c in routed])
        if self._control.has_queue_control:
            sites = {
                c.message.recipient.domain.lower(): dispatches[c.message.id].site
                for c in routed
                if dispatches[c.message.id].rule.action.transport is TransportKind.MX
            }
            await self._control.queue.record_sites(sites)
        return dispatches

    async def _pace(
        self,
        routed: list[_Candidate],
        dispatches: dict[str, Dispatch],
        pauses: Pauses,
    ) -> Admission:
        pairs = [(c.message, dispatches[c.message.id]) for c in routed]
        if self._pacer is None:
            return Admission(admitted=pairs, released=[], parked={})
        return await self._pacer.admit(pairs, paused_sites=pauses.sites)

    async def _hand_back(self, admission: Admission) -> None:
        if self._control is None or not self._control.has_queue_control:
            return
        queue = self._control.queue
        await queue.release(admission.released)
        for site, releases in admission.parked.items():
            await queue.park(site, releases)
            logger.info(
                "parked %d messages of paused site %s",
                len(releases),
                site,
                extra={"action": "messages_parked", "site": site},
            )


def log_outcome(transition: Transition) -> None:
    """Log one line for a decision or delivery outcome."""
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
