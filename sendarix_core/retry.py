"""The retry schedule and the classification of delivery outcomes.

A temporary failure (SMTP 4xx, a refused or dropped connection, a timeout,
DNS SERVFAIL) defers the message: the next attempt waits 30 s, 5 min, 30 min,
2 h and 5 h after the 1st to 5th failure, and a 6th temporary failure bounces
it with ``retries_exhausted``. A permanent failure (SMTP 5xx, NXDOMAIN, null
MX) bounces at once. Enhanced status codes follow RFC 3463: ``5.1.x`` means
the address is bad, so the recipient is suppressed; ``x.7.x`` is a policy or
reputation block, which says nothing about the mailbox, so it is not.
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum

import attrs

__all__ = [
    "DEFAULT_RETRY_POLICY",
    "BounceClass",
    "FailureKind",
    "ReplyClass",
    "RetryPolicy",
    "classify_reply",
    "parse_enhanced_code",
]


class FailureKind(StrEnum):
    TEMPORARY = "temporary"
    PERMANENT = "permanent"


class BounceClass(StrEnum):
    """Why a message bounced, as reported in ``message.bounced`` events."""

    INVALID_RECIPIENT = "invalid_recipient"
    INVALID_DOMAIN = "invalid_domain"
    INVALID_SENDER = "invalid_sender"
    MAILBOX_UNAVAILABLE = "mailbox_unavailable"
    MESSAGE_REJECTED = "message_rejected"
    POLICY = "policy"
    RETRIES_EXHAUSTED = "retries_exhausted"
    OTHER = "other"


@attrs.frozen
class RetryPolicy:
    """Delays between attempts; ``max_attempts`` is one more than the delays."""

    delays: tuple[timedelta, ...]

    @property
    def max_attempts(self) -> int:
        return len(self.delays) + 1

    def delay_after(self, failed_attempts: int) -> timedelta | None:
        """Return the wait after ``failed_attempts`` temporary failures.

        ``None`` means the attempts are exhausted and the message bounces.
        """
        if failed_attempts < 1:
            raise ValueError(
                f"failed_attempts must be at least 1, not {failed_attempts}"
            )
        if failed_attempts > len(self.delays):
            return None
        return self.delays[failed_attempts - 1]


DEFAULT_RETRY_POLICY = RetryPolicy(
    delays=(
        timedelta(seconds=30),
        timedelta(minutes=5),
        timedelta(minutes=30),
        timedelta(hours=2),
        timedelta(hours=5),
    )
)

_ENHANCED_CODE = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")
_ENHANCED_PREFIX = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})(?:\s|$)")


def parse_enhanced_code(reply_text: str) -> str | None:
    """Return the RFC 3463 enhanced status code a reply text starts with."""
    match = _ENHANCED_PREFIX.match(reply_text)
    return match.group(1) if match else None


@attrs.frozen
class ReplyClass:
    """What a reply means for the message: delivered, retry or bounce."""

    delivered: bool
    kind: FailureKind | None
    bounce_class: BounceClass | None
    suppress: bool


def classify_reply(
    code: int, enhanced_code: str | None = None, *, to_mail: bool = False
) -> ReplyClass:
    """Classify an SMTP reply code and its optional enhanced status code.

    The basic code decides between success, retry and bounce (RFC 5321,
    section 4.2.1); the enhanced code only refines why a message bounced and
    whether the recipient is suppressed. ``to_mail`` marks a reply
    to ``MAIL FROM``, whose address status is about the sender.
    """
    if not 200 <= code <= 599:
        raise ValueError(f"SMTP reply code must be within 200-599, not {code}")
    if code < 400:
        return ReplyClass(delivered=True, kind=None, bounce_class=None, suppress=False)
    if code < 500:
        return ReplyClass(
            delivered=False,
            kind=FailureKind.TEMPORARY,
            bounce_class=None,
            suppress=False,
        )

    subject, detail = _split_enhanced(enhanced_code)
    # X.1.7 and X.1.8 are the sender's mailbox and system (RFC 3463 section
    # 3.2): the recipient's address is not at fault.
    if subject == 1 and (to_mail or detail in {7, 8}):
        return ReplyClass(
            delivered=False,
            kind=FailureKind.PERMANENT,
            bounce_class=BounceClass.INVALID_SENDER,
            suppress=False,
        )
    if subject == 1:
        bounce_class = (
            BounceClass.INVALID_DOMAIN
            if detail in {2, 10}
            else BounceClass.INVALID_RECIPIENT
        )
        return ReplyClass(
            delivered=False,
            kind=FailureKind.PERMANENT,
            bounce_class=bounce_class,
            suppress=True,
        )
    bounce_class = {
        2: BounceClass.MAILBOX_UNAVAILABLE,
        3: BounceClass.MESSAGE_REJECTED,
        6: BounceClass.MESSAGE_REJECTED,
        7: BounceClass.POLICY,
    }.get(subject or 0, BounceClass.OTHER)
    return ReplyClass(
        delivered=False,
        kind=FailureKind.PERMANENT,
        bounce_class=bounce_class,
        suppress=False,
    )


def _split_enhanced(enhanced_code: str | None) -> tuple[int | None, int | None]:
    """Return the subject and detail of a permanent (``5.x.x``) enhanced code.

    A code of another class contradicts a 5xx reply (``521 4.1.1``), so it
    is ignored rather than trusted to suppress a recipient.
    """
    if enhanced_code is None:
        return None, None
    match = _ENHANCED_CODE.match(enhanced_code)
    if match is None or match.group(1) != "5":
        return None, None
    return int(match.group(2)), int(match.group(3))
