"""From a claimed batch to the deliveries a worker starts now.

For each claimed message the lifecycle decides first: an expired message
expires, a suppressed recipient is suppressed. The others are routed and
paced. Those the pacer admits move to ``accepted``, which counts one
attempt. The others go back to the queue unchanged, or are parked when
their site is paused. Every decision of the batch is saved in one commit.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import attrs

from sendarix_backends.delivery_control import DeliveryControl
from sendarix_backends.pacing import Admission, Pacer
from sendarix_backends.queue_control import Pauses
from sendarix_backends.routing import Dispatch
from sendarix_core import lifecycle
from sendarix_core.clock import Clock
from sendarix_core.lifecycle import Transition
from sendarix_core.model import Message
from sendarix_core.ports import MessageStore
from sendarix_core.routing import TransportKind
from sendarix_core.states import MessageStatus
from sendarix_core.suppression import normalize_recipient

__all__ = ["Admitter", "Started"]

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

    async def admit(self, claimed: Sequence[Message], pauses: Pauses) -> list[Started]:
        """Decide, route and pace a claimed batch; return what to deliver."""
        decisions, candidates = await self._decide(claimed)
        routed, plain = self._split(candidates)
        dispatches = await self._route(routed)
        admission = await self._pace(routed, dispatches, pauses)

        admitted_ids = {message.id for message, _ in admission.admitted}
        starting = [*plain, *(c for c in routed if c.message.id in admitted_ids)]
        transitions = [*decisions, *(c.accept for c in starting if c.accept)]
        stale = set(await self._store.save_transitions(transitions))
        await self._hand_back(admission)

        for transition in decisions:
            if transition.after.id not in stale:
                log_outcome(transition)
        started = []
        for candidate in starting:
            message = candidate.accept.after if candidate.accept else candidate.message
            dispatch = dispatches.get(message.id)
            if message.id in stale:
                if self._pacer is not None and dispatch is not None:
                    self._pacer.finished(dispatch.site, None)
                continue
            if candidate.accept is None:
                logger.warning(
                    "resuming a delivery whose worker's lease ran out",
                    extra={"action": "lease_taken_over", "message_id": message.id},
                )
            started.append(Started(message, dispatch))
        return started

    async def _decide(
        self, claimed: Sequence[Message]
    ) -> tuple[list[Transition], list[_Candidate]]:
        now = self._clock.now()
        recipients = [normalize_recipient(m.recipient.email) for m in claimed]
        suppressions = await self._store.get_suppressions(recipients)
        decisions = []
        candidates = []
        for message, recipient in zip(claimed, recipients, strict=True):
            transition = lifecycle.decide_claimed(
                message,
                suppressions.get(recipient),
                now=now,
                event_id=self._new_id("evt"),
            )
            if transition is None:
                candidates.append(_Candidate(message, None))
            elif transition.after.status is MessageStatus.ACCEPTED:
                candidates.append(_Candidate(message, transition))
            else:
                decisions.append(transition)
        return decisions, candidates

    def _split(
        self, candidates: list[_Candidate]
    ) -> tuple[list[_Candidate], list[_Candidate]]:
        """Separate the messages that are routed from those that are not:
        test-mode messages always go to the sink."""
        if self._control is None:
            return [], candidates
        routed = [c for c in candidates if not c.message.test_mode]
        plain = [c for c in candidates if c.message.test_mode]
        return routed, plain

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
