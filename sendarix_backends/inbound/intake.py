"""Turning a received bounce or complaint report into events and suppressions.

The report is matched to a message by the VERP return path it was sent to
(``bounces+<message_id>@<return path domain>``), or else by the Message-ID
of the original message quoted in the report, which Sendarix generates as
``<message_id@sender domain>``. The message's state never changes: a
message that was delivered stays ``delivered`` and gains a
``message.bounced`` or ``message.complained`` event, so its timeline shows
both the receiving server's reply at delivery and what came later.

* A DSN block with ``Action: failed`` for the message's recipient (by
  ``Final-Recipient`` or ``Original-Recipient``, or the only block of the
  report) records ``message.bounced`` with ``asynchronous: true``; a
  ``5.1.x`` status also suppresses the recipient (``hard_bounce``), as a
  synchronous bounce does. Other actions (``delayed``, ``delivered``,
  ``relayed``, ``expanded``) and blocks about other addresses record
  nothing.
* Reports about messages sent with a test key, or never attempted, are
  ignored: no server can have received those messages.
* A feedback report of type ``abuse`` records ``message.complained`` and
  suppresses the recipient (``complaint``). Other feedback types
  (``not-spam``, ``auth-failure``, …) record nothing.
* A report already recorded for the message (same report Message-ID and
  event type) is not recorded twice, so a resent report changes nothing.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import anyio
import anyio.to_thread
import attrs

from sendarix_backends.events.storage import SqlEventStorage
from sendarix_backends.inbound.reports import (
    DeliveryReport,
    FeedbackReport,
    RecipientStatus,
    parse_report,
)
from sendarix_backends.inbound.verp import MESSAGE_ID, message_id_of
from sendarix_core.clock import Clock
from sendarix_core.model import Event, Message
from sendarix_core.retry import BounceClass, classify_reply
from sendarix_core.states import EventType
from sendarix_core.suppression import (
    Suppression,
    SuppressionReason,
    normalize_recipient,
)

__all__ = ["IntakeResult", "ReportIntake"]

logger = logging.getLogger("sendarix.inbound")

_REPLY_CODE = re.compile(r"^\s*([245]\d\d)\b")


@attrs.frozen
class IntakeResult:
    """The outcome of one received message: the events recorded, or why none."""

    events: tuple[Event, ...] = ()
    ignored: str | None = None


class ReportIntake:
    def __init__(
        self,
        *,
        storage: SqlEventStorage,
        clock: Clock,
        new_id: Callable[[str], str],
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._new_id = new_id

    async def receive(self, recipients: Sequence[str], data: bytes) -> IntakeResult:
        """Parse one received message and record what it reports.

        Parsing runs in a worker thread: a report of several megabytes takes
        seconds, which would hold up the event loop and the API it serves.
        """
        report = await anyio.to_thread.run_sync(parse_report, data)
        if report is None:
            return _ignored("not a delivery status or feedback report")
        message = await self._find_message(recipients, report.original_message_id)
        if message is None:
            return _ignored("no message matches the return path or Message-ID")
        if message.test_mode:
            # A test key's messages go to the built-in sink only, so no
            # server can have reported on them; the report is forged.
            return _ignored("the message was sent with a test key", message.id)
        if message.attempts == 0:
            return _ignored("no delivery of the message was attempted", message.id)

        if isinstance(report, DeliveryReport):
            built = self._bounce(message, report)
        else:
            built = self._complaint(message, report)
        if isinstance(built, str):
            return _ignored(built, message.id)
        event, suppression = built

        suppressions = [suppression] if suppression is not None else []
        if not await self._storage.record_report(event, suppressions):
            return _ignored("this report was already recorded", message.id)
        logger.info(
            "report recorded",
            extra={
                "action": "report_recorded",
                "message_id": message.id,
                "event_type": str(event.type),
                "suppressed": suppression is not None,
            },
        )
        return IntakeResult(events=(event,))

    async def _find_message(
        self, recipients: Sequence[str], original_message_id: str | None
    ) -> Message | None:
        for recipient in recipients:
            named = message_id_of(recipient)
            if named is not None:
                message = await self._storage.get_message(named)
                if message is not None:
                    return message
        if original_message_id is None:
            return None
        candidate = original_message_id.strip("<> ").partition("@")[0].lower()
        if not MESSAGE_ID.match(candidate):
            return None
        message = await self._storage.get_message(candidate)
        if message is None:
            return None
        # The Message-ID names our id; it must also be the header we sent.
        if message.message_id_header.lower() != original_message_id.strip().lower():
            return None
        return message

    def _bounce(
        self, message: Message, report: DeliveryReport
    ) -> tuple[Event, Suppression | None] | str:
        failed = [status for status in report.recipients if status.is_failure]
        if not failed:
            actions = ", ".join(sorted({s.action for s in report.recipients}))
            return f"the report has no failed recipient (actions: {actions or 'none'})"
        status = _matching_status(report.recipients, message)
        if status is None:
            return "no failed recipient of the report is the message's recipient"
        bounce_class, suppress = _classify(status)
        data: dict[str, Any] = {
            "asynchronous": True,
            "bounce_class": str(bounce_class),
            "smtp_code": _reply_code(status.diagnostic_code),
            "enhanced_code": status.status or None,
            "reply": status.diagnostic_code,
            "reporting_mta": report.reporting_mta,
            "remote_mta": status.remote_mta,
            "report_id": report.report_id,
            "suppressed_recipient": suppress,
        }
        now = self._clock.now()
        suppression = None
        if suppress:
            suppression = self._suppression(message, SuppressionReason.HARD_BOUNCE)
        return self._event(message, EventType.BOUNCED, data, now), suppression

    def _complaint(
        self, message: Message, report: FeedbackReport
    ) -> tuple[Event, Suppression | None] | str:
        if report.feedback_type != "abuse":
            return f"feedback type {report.feedback_type!r} is not a complaint"
        data = {
            "feedback_type": report.feedback_type,
            "user_agent": report.user_agent,
            "report_id": report.report_id,
            "suppressed_recipient": True,
        }
        event = self._event(message, EventType.COMPLAINED, data, self._clock.now())
        return event, self._suppression(message, SuppressionReason.COMPLAINT)

    def _event(
        self,
        message: Message,
        event_type: EventType,
        data: dict[str, Any],
        now: datetime,
    ) -> Event:
        return Event(
            event_id=self._new_id("evt"),
            type=event_type,
            created_at=now,
            message_id=message.id,
            recipient=message.recipient.email,
            data=data,
        )

    def _suppression(self, message: Message, reason: SuppressionReason) -> Suppression:
        return Suppression(
            recipient=normalize_recipient(message.recipient.email),
            reason=reason,
            created_at=self._clock.now(),
            message_id=message.id,
        )


def _matching_status(
    statuses: Sequence[RecipientStatus], message: Message
) -> RecipientStatus | None:
    """Return the failed block about the message's recipient, or ``None``.

    Each block reports on its own recipient only (RFC 3464 section 2.3).
    A report with a single block that names another address is taken as
    about the message's recipient under a forwarded address, because the
    return path already named the message, which has one recipient.
    """
    wanted = normalize_recipient(message.recipient.email)
    named = [status for status in statuses if status.names(wanted)]
    if not named and len(statuses) == 1:
        named = list(statuses)
    return next((status for status in named if status.is_failure), None)


def _classify(status: RecipientStatus) -> tuple[BounceClass, bool]:
    code = _reply_code(status.diagnostic_code)
    if status.status.startswith("4") or (code is not None and code < 500):
        # A remote server that gave up after temporary failures.
        return BounceClass.RETRIES_EXHAUSTED, False
    reply_class = classify_reply(code or 550, status.status or None)
    return reply_class.bounce_class or BounceClass.OTHER, reply_class.suppress


def _reply_code(diagnostic_code: str | None) -> int | None:
    if diagnostic_code is None:
        return None
    match = _REPLY_CODE.match(diagnostic_code)
    return int(match.group(1)) if match else None


def _ignored(reason: str, message_id: str | None = None) -> IntakeResult:
    logger.info(
        "report ignored: %s",
        # The reason may quote the report, which anyone can send.
        _CONTROL.sub(lambda found: f"\\x{ord(found.group()):02x}", reason),
        extra={"action": "report_ignored", "message_id": message_id},
    )
    return IntakeResult(ignored=reason)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
