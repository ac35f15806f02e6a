"""Parsing bounce reports (RFC 3464) and complaint reports (RFC 5965).

Both arrive as ``multipart/report``. A delivery status notification has
``report-type=delivery-status`` and a ``message/delivery-status`` part: one
block of per-message fields, then one block per recipient with ``Action``,
``Status`` and ``Diagnostic-Code``. A feedback report has
``report-type=feedback-report`` and a ``message/feedback-report`` part with
``Feedback-Type``. Both usually carry the original message or its headers
(``message/rfc822`` or ``text/rfc822-headers``), whose ``Message-ID`` helps
find the message when the return path does not name it. Without them, an
``Original-Message-ID`` field of the report is used instead.
"""

from __future__ import annotations

import binascii
import email
import email.message
import email.policy
import quopri
import re
from collections.abc import Iterable

import attrs

from sendarix_core.suppression import normalize_recipient

__all__ = [
    "DeliveryReport",
    "FeedbackReport",
    "RecipientStatus",
    "parse_report",
]

_STATUS = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")


@attrs.frozen(kw_only=True)
class RecipientStatus:
    """One per-recipient block of a delivery status notification."""

    final_recipient: str
    action: str
    status: str
    diagnostic_code: str | None = None
    remote_mta: str | None = None
    original_recipient: str | None = None
    """The address before forwarding, when the block gives it."""

    def names(self, recipient: str) -> bool:
        """Return whether ``recipient`` (normalized) is this block's recipient."""
        return any(
            address is not None and normalize_recipient(address) == recipient
            for address in (self.final_recipient, self.original_recipient)
        )

    @property
    def is_failure(self) -> bool:
        """True for ``Action: failed``; delayed, delivered, relayed and
        expanded notices report no failure."""
        return self.action == "failed"


@attrs.frozen(kw_only=True)
class DeliveryReport:
    report_id: str | None
    reporting_mta: str | None
    original_message_id: str | None
    recipients: tuple[RecipientStatus, ...]


@attrs.frozen(kw_only=True)
class FeedbackReport:
    report_id: str | None
    feedback_type: str
    user_agent: str | None
    original_recipient: str | None
    original_message_id: str | None


def parse_report(data: bytes) -> DeliveryReport | FeedbackReport | None:
    """Return the report in ``data``, or ``None`` if it is neither kind."""
    message = email.message_from_bytes(data, policy=email.policy.compat32)
    if message.get_content_type() != "multipart/report":
        return None
    report_type = str(message.get_param("report-type") or "").lower()
    parts = list(_parts(message))
    report_id = _header(message, "Message-ID")
    original_id = _original_message_id(parts)
    if report_type == "delivery-status":
        return _delivery_report(parts, report_id, original_id)
    if report_type == "feedback-report":
        return _feedback_report(parts, report_id, original_id)
    return None


def _parts(message: email.message.Message) -> Iterable[email.message.Message]:
    payload = message.get_payload()
    if isinstance(payload, list):
        yield from (part for part in payload if isinstance(part, email.message.Message))


def _blocks(part: email.message.Message) -> list[email.message.Message]:
    """Return the header blocks of a report part, one per blank-line block."""
    payload = part.get_payload()
    encoding = str(part.get("Content-Transfer-Encoding", "")).strip().lower()
    if (
        isinstance(payload, list)
        and part.get_content_type() in _PARSED_AS_BLOCKS
        and encoding not in _DECODED
    ):
        return [block for block in payload if isinstance(block, email.message.Message)]
    text = _part_text(payload, encoding).replace("\r\n", "\n")
    return [
        email.message_from_string(block.strip() + "\n")
        for block in text.split("\n\n")
        if block.strip()
    ]


# The email package splits these into header blocks itself, unless they are
# encoded. It reads other message/* types, such as RFC 6533's
# message/global-delivery-status, as one message, whose bytes are read again.
_PARSED_AS_BLOCKS = {"message/delivery-status", "message/feedback-report"}
_DECODED = {"base64", "quoted-printable"}


def _part_text(payload: object, encoding: str) -> str:
    """Return the text of a part's payload, decoded if some sender encoded it."""
    if isinstance(payload, list):
        data = b"".join(
            block.as_bytes()
            for block in payload
            if isinstance(block, email.message.Message)
        )
    elif isinstance(payload, str):
        data = payload.encode("utf-8", "surrogateescape")
    else:
        return ""
    try:
        if encoding == "base64":
            data = binascii.a2b_base64(b"".join(data.split()))
        elif encoding == "quoted-printable":
            data = quopri.decodestring(data)
    except (binascii.Error, ValueError):
        return ""
    return data.decode("utf-8", "replace")


# RFC 3464, and RFC 6533's form with UTF-8 addresses.
_DELIVERY_STATUS_TYPES = {"message/delivery-status", "message/global-delivery-status"}


def _delivery_report(
    parts: list[email.message.Message], report_id: str | None, original_id: str | None
) -> DeliveryReport | None:
    status_part = next(
        (p for p in parts if p.get_content_type() in _DELIVERY_STATUS_TYPES), None
    )
    if status_part is None:
        return None
    blocks = _blocks(status_part)
    if not blocks:
        return None
    per_message, per_recipient = blocks[0], blocks[1:]
    recipients = tuple(
        status for block in per_recipient if (status := _recipient_status(block))
    )
    return DeliveryReport(
        report_id=report_id,
        reporting_mta=_typed_value(_header(per_message, "Reporting-MTA")),
        original_message_id=original_id or _header(per_message, "Original-Message-ID"),
        recipients=recipients,
    )


def _recipient_status(block: email.message.Message) -> RecipientStatus | None:
    original = _typed_value(_header(block, "Original-Recipient"))
    recipient = _typed_value(_header(block, "Final-Recipient")) or original
    action = (_header(block, "Action") or "").lower()
    status = (_header(block, "Status") or "").split()
    if not recipient or not action:
        return None
    code = status[0] if status and _STATUS.match(status[0]) else ""
    return RecipientStatus(
        final_recipient=recipient,
        action=action,
        status=code,
        diagnostic_code=_typed_value(_header(block, "Diagnostic-Code")),
        remote_mta=_typed_value(_header(block, "Remote-MTA")),
        original_recipient=original,
    )


def _feedback_report(
    parts: list[email.message.Message], report_id: str | None, original_id: str | None
) -> FeedbackReport | None:
    report_part = next(
        (p for p in parts if p.get_content_type() == "message/feedback-report"), None
    )
    if report_part is None:
        return None
    fields = _blocks(report_part)
    if not fields:
        return None
    block = fields[0]
    recipient = _header(block, "Original-Rcpt-To")
    return FeedbackReport(
        report_id=report_id,
        feedback_type=(_header(block, "Feedback-Type") or "").lower(),
        user_agent=_header(block, "User-Agent"),
        original_recipient=recipient.strip("<> ") if recipient else None,
        original_message_id=original_id or _header(block, "Original-Message-ID"),
    )


def _original_message_id(parts: list[email.message.Message]) -> str | None:
    for part in parts:
        content_type = part.get_content_type()
        if content_type == "text/rfc822-headers":
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                headers = email.message_from_bytes(payload)
                return _header(headers, "Message-ID")
        if content_type in {"message/rfc822", "message/global"}:
            blocks = _blocks(part)
            if blocks:
                return _header(blocks[0], "Message-ID")
    return None


def _header(message: email.message.Message, name: str) -> str | None:
    value = message.get(name)
    if value is None:
        return None
    text = " ".join(str(value).split())
    return text or None


def _typed_value(value: str | None) -> str | None:
    """Return the value after the type of ``rfc822; ada@example.com``."""
    if value is None:
        return None
    _, separator, rest = value.partition(";")
    return (rest if separator else value).strip() or None
