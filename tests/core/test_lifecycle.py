from __future__ import annotations

from datetime import timedelta

import pytest

from sendarix_core import lifecycle
from sendarix_core.errors import InvalidTransitionError, MessageNotCancellableError
from sendarix_core.model import SmtpReply
from sendarix_core.retry import BounceClass
from sendarix_core.states import EventType, MessageStatus
from sendarix_core.suppression import Suppression, SuppressionReason
from tests.core.factories import T0, make_message

OK = SmtpReply(
    code=250, enhanced_code="2.0.0", text="queued as 1", mx_host="mx.example.com"
)
BUSY = SmtpReply(
    code=451, enhanced_code="4.7.1", text="try later", mx_host="mx.example.com"
)
NO_USER = SmtpReply(code=550, enhanced_code="5.1.1", text="no such user", mx_host="mx")
POLICY = SmtpReply(code=554, enhanced_code="5.7.1", text="blocked", mx_host="mx")


def test_create_queued_emits_queued() -> None:
    transition = lifecycle.create(make_message(), event_id="evt_1")
    assert transition.before is None
    assert transition.event.type == EventType.QUEUED


def test_create_scheduled_emits_scheduled() -> None:
    message = make_message(
        status=MessageStatus.SCHEDULED, scheduled_at=T0 + timedelta(hours=1)
    )
    transition = lifecycle.create(message, event_id="evt_1")
    assert transition.event.type == EventType.SCHEDULED
    assert transition.event.data["scheduled_at"] == "2026-04-19T15:30:00.000Z"


def test_accept_counts_attempt() -> None:
    transition = lifecycle.accept(make_message(), now=T0, event_id="evt_1")
    assert transition.after.status == MessageStatus.ACCEPTED
    assert transition.after.attempts == 1
    assert transition.after.version == 1
    assert transition.event.data == {"attempt": 1}


def test_deliver_records_reply() -> None:
    accepted = lifecycle.accept(make_message(), now=T0, event_id="e1").after
    transition = lifecycle.deliver(accepted, OK, now=T0, event_id="e2")
    assert transition.after.status == MessageStatus.DELIVERED
    assert transition.after.last_reply == OK
    assert transition.event.data["smtp_code"] == 250
    assert transition.event.data["mx_host"] == "mx.example.com"


def test_deliver_from_queued_raises() -> None:
    with pytest.raises(InvalidTransitionError):
        lifecycle.deliver(make_message(), OK, now=T0, event_id="e1")


@pytest.mark.parametrize(
    "status",
    [
        MessageStatus.DELIVERED,
        MessageStatus.BOUNCED,
        MessageStatus.SUPPRESSED,
        MessageStatus.CANCELLED,
        MessageStatus.EXPIRED,
    ],
)
def test_terminal_state_has_no_exit(status: MessageStatus) -> None:
    assert lifecycle.ALLOWED_TRANSITIONS[status] == frozenset()
    with pytest.raises(InvalidTransitionError):
        lifecycle.accept(make_message(status=status), now=T0, event_id="e1")


def test_retry_schedule_then_bounce() -> None:
    message = make_message()
    now = T0
    waits = []
    for _ in range(5):
        message = lifecycle.accept(message, now=now, event_id="e").after
        deferred = lifecycle.defer_or_bounce(message, BUSY, now=now, event_id="e").after
        assert deferred.status == MessageStatus.DEFERRED
        assert deferred.next_attempt_at is not None
        waits.append(deferred.next_attempt_at - now)
        now = deferred.next_attempt_at
        message = deferred
    assert waits == [
        timedelta(seconds=30),
        timedelta(minutes=5),
        timedelta(minutes=30),
        timedelta(hours=2),
        timedelta(hours=5),
    ]

    message = lifecycle.accept(message, now=now, event_id="e").after
    sixth = lifecycle.defer_or_bounce(message, BUSY, now=now, event_id="e")
    assert message.attempts == 6
    assert sixth.after.status == MessageStatus.BOUNCED
    assert sixth.event.data["bounce_class"] == BounceClass.RETRIES_EXHAUSTED
    assert sixth.suppression is None


def test_deferral_capped_at_expiry() -> None:
    message = make_message(expires_at=T0 + timedelta(seconds=10))
    accepted = lifecycle.accept(message, now=T0, event_id="e").after
    deferred = lifecycle.defer_or_bounce(accepted, BUSY, now=T0, event_id="e").after
    assert deferred.next_attempt_at == T0 + timedelta(seconds=10)


def test_bad_mailbox_bounce_suppresses() -> None:
    accepted = lifecycle.accept(make_message(), now=T0, event_id="e").after
    transition = lifecycle.bounce(accepted, NO_USER, now=T0, event_id="e")
    assert transition.after.status == MessageStatus.BOUNCED
    assert transition.suppression is not None
    assert transition.suppression.reason == SuppressionReason.HARD_BOUNCE
    assert transition.suppression.recipient == "user@example.com"
    assert transition.event.data["bounce_class"] == BounceClass.INVALID_RECIPIENT


def test_policy_bounce_does_not_suppress() -> None:
    accepted = lifecycle.accept(make_message(), now=T0, event_id="e").after
    transition = lifecycle.bounce(accepted, POLICY, now=T0, event_id="e")
    assert transition.suppression is None
    assert transition.event.data["bounce_class"] == BounceClass.POLICY


def test_cancel_queued() -> None:
    transition = lifecycle.cancel(make_message(), now=T0, event_id="e")
    assert transition.after.status == MessageStatus.CANCELLED
    assert transition.event.type == EventType.CANCELLED


@pytest.mark.parametrize("status", [MessageStatus.ACCEPTED, MessageStatus.DELIVERED])
def test_cancel_after_start_raises(status: MessageStatus) -> None:
    with pytest.raises(MessageNotCancellableError):
        lifecycle.cancel(make_message(status=status), now=T0, event_id="e")


def test_claimed_suppressed_recipient() -> None:
    entry = Suppression(
        recipient="user@example.com",
        reason=SuppressionReason.HARD_BOUNCE,
        created_at=T0,
    )
    transition = lifecycle.decide_claimed(make_message(), entry, now=T0, event_id="e")
    assert transition is not None
    assert transition.after.status == MessageStatus.SUPPRESSED
    assert transition.event.data == {"reason": "hard_bounce"}


def test_claimed_past_deadline_expires() -> None:
    message = make_message(expires_at=T0)
    transition = lifecycle.decide_claimed(message, None, now=T0, event_id="e")
    assert transition is not None
    assert transition.after.status == MessageStatus.EXPIRED


def test_claimed_accepted_resumes() -> None:
    message = make_message(status=MessageStatus.ACCEPTED, attempts=1)
    assert lifecycle.decide_claimed(message, None, now=T0, event_id="e") is None


def test_monotonic_ids_sort_in_one_millisecond() -> None:
    from sendarix_core.ids import MonotonicIds

    ids = MonotonicIds()
    made = [ids.new_id("msg", T0, bytes([255 - n] * 10)) for n in range(50)]
    assert made == sorted(made)
    assert len(set(made)) == 50
