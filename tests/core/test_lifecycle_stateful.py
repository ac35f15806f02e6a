"""A stateful model of one message's lifecycle under random operations."""

from __future__ import annotations

from datetime import timedelta

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from sendarix_core import lifecycle
from sendarix_core.errors import InvalidTransitionError, MessageNotCancellableError
from sendarix_core.model import Message, SmtpReply
from sendarix_core.suppression import Suppression, SuppressionReason
from tests.core.factories import T0, make_message

REPLIES = st.sampled_from(
    [
        SmtpReply(code=451, enhanced_code="4.7.1", text="later"),
        SmtpReply(code=421, enhanced_code=None, text="closing"),
        SmtpReply(code=550, enhanced_code="5.1.1", text="no user"),
        SmtpReply(code=554, enhanced_code="5.7.1", text="blocked"),
    ]
)


class MessageLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.message: Message = make_message()
        self.now = T0
        self.events = 1
        self.history = [self.message]

    def _apply(self, operation: object) -> None:
        before = self.message
        try:
            transition = operation()  # type: ignore[operator]
        except (InvalidTransitionError, MessageNotCancellableError):
            # An illegal move raises and leaves the message as it was.
            return
        if transition is None:
            return
        assert not before.status.is_terminal, "moved out of a terminal state"
        assert transition.before == before
        assert transition.after.version == before.version + 1
        assert transition.event.message_id == before.id
        self.message = transition.after
        self.events += 1
        self.history.append(self.message)

    @rule(seconds=st.integers(0, 6 * 3600))
    def tick(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule()
    def claim(self) -> None:
        self._apply(
            lambda: lifecycle.decide_claimed(
                self.message, None, now=self.now, event_id="e"
            )
        )

    @rule()
    def claim_suppressed(self) -> None:
        entry = Suppression(
            recipient="user@example.com",
            reason=SuppressionReason.MANUAL,
            created_at=self.now,
        )
        self._apply(
            lambda: lifecycle.decide_claimed(
                self.message, entry, now=self.now, event_id="e"
            )
        )

    @rule()
    def deliver(self) -> None:
        reply = SmtpReply(code=250, enhanced_code="2.0.0", text="ok")
        self._apply(
            lambda: lifecycle.deliver(self.message, reply, now=self.now, event_id="e")
        )

    @rule(reply=REPLIES)
    def fail(self, reply: SmtpReply) -> None:
        if reply.code and reply.code >= 500:
            self._apply(
                lambda: lifecycle.bounce(
                    self.message, reply, now=self.now, event_id="e"
                )
            )
        else:
            self._apply(
                lambda: lifecycle.defer_or_bounce(
                    self.message, reply, now=self.now, event_id="e"
                )
            )

    @rule()
    def cancel(self) -> None:
        self._apply(lambda: lifecycle.cancel(self.message, now=self.now, event_id="e"))

    @invariant()
    def attempts_only_grow(self) -> None:
        attempts = [message.attempts for message in self.history]
        assert attempts == sorted(attempts)

    @invariant()
    def attempts_bounded(self) -> None:
        assert self.message.attempts <= 6

    @invariant()
    def one_event_per_change(self) -> None:
        assert self.events == len(self.history)

    @invariant()
    def terminal_is_final(self) -> None:
        statuses = [message.status for message in self.history]
        for index, status in enumerate(statuses[:-1]):
            assert not status.is_terminal, f"left terminal {status} at step {index}"


TestMessageLifecycle = MessageLifecycle.TestCase
