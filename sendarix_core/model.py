"""Value objects of the message lifecycle.

All of them are frozen: a lifecycle transition returns a new ``Message`` and
the ``Event`` it caused, and storage persists both together.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import attrs

from sendarix_core.states import EventType, MessageStatus, Priority

__all__ = [
    "Address",
    "Attachment",
    "Event",
    "Message",
    "MessageContent",
    "SmtpReply",
]


@attrs.frozen
class Address:
    """A mailbox: optional display name, local part and domain.

    ``domain`` is always ASCII (IDNs are stored as A-labels), so it can be
    used for DNS lookups and the SMTP envelope as it is. ``smtputf8`` is true
    when the local part is not ASCII, which requires the SMTPUTF8 extension.
    """

    local_part: str
    domain: str
    display_name: str = ""

    @property
    def email(self) -> str:
        """The addr-spec (``local@domain``) used in the envelope."""
        return f"{self.local_part}@{self.domain}"

    @property
    def smtputf8(self) -> bool:
        return not self.local_part.isascii()

    def __str__(self) -> str:
        if not self.display_name:
            return self.email
        return f"{_quote_display_name(self.display_name)} <{self.email}>"


# RFC 5322 atext plus space: a phrase made only of these needs no quotes.
_PHRASE_SAFE = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~ "
)


def _quote_display_name(name: str) -> str:
    if all(char in _PHRASE_SAFE or not char.isascii() for char in name):
        return name
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


@attrs.frozen
class Attachment:
    """A file carried by a message; ``content_id`` marks an inline part."""

    filename: str
    content_type: str
    content: bytes = attrs.field(repr=lambda value: f"<{len(value)} bytes>")
    content_id: str | None = None
    inline: bool = False


@attrs.frozen(kw_only=True)
class MessageContent:
    """What the recipient reads, before MIME encoding.

    ``headers`` keeps the caller's order; their names and values were checked
    for CR, LF and reserved names at acceptance.
    """

    subject: str
    text: str | None = None
    html: str | None = None
    attachments: tuple[Attachment, ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    template: str | None = None
    template_data: Mapping[str, Any] = attrs.field(factory=dict)
    template_version: int | None = None
    """The template version that rendered ``subject``, ``text`` and ``html``."""
    raw: bytes | None = attrs.field(default=None, repr=False)
    """The finished RFC 5322 message, with CRLF line ends, when it was
    submitted as bytes (SMTP relay); the fields above then only describe it."""


# Reply bytes that are not UTF-8 reach Python as lone surrogates, which
# aiosmtplib's "surrogateescape" decoding keeps; JSON can't encode them.
_SURROGATE = re.compile("[\ud800-\udfff]")


def _encodable_text(text: str) -> str:
    """Return ``text`` with each lone surrogate replaced by U+FFFD."""
    return text if text.isascii() else _SURROGATE.sub("\ufffd", text)


@attrs.frozen(kw_only=True)
class SmtpReply:
    """The reply of a remote SMTP server (or a local stand-in for DNS errors).

    A remote server may send any bytes, so ``text`` is stored with each
    byte that was not UTF-8 as U+FFFD.
    """

    code: int | None
    enhanced_code: str | None
    text: str = attrs.field(converter=_encodable_text)
    mx_host: str | None = None


@attrs.frozen(kw_only=True)
class Message:
    """One message to one recipient, as the lifecycle sees it.

    ``version`` grows by one on every persisted change, including a claim by a
    worker. Storage updates a message only where the stored version matches,
    so a worker that lost its lease can't overwrite the work of another.
    """

    id: str
    status: MessageStatus
    priority: Priority
    sender: Address
    recipient: Address
    content: MessageContent
    created_at: datetime
    updated_at: datetime
    scheduled_at: datetime | None = None
    expires_at: datetime | None = None
    next_attempt_at: datetime | None = None
    attempts: int = 0
    last_reply: SmtpReply | None = None
    metadata: Mapping[str, str] = attrs.field(factory=dict)
    tags: tuple[str, ...] = ()
    api_key_id: str | None = None
    test_mode: bool = False
    message_id_header: str = ""
    version: int = 0

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal


@attrs.frozen(kw_only=True)
class Event:
    """A state change or observation, in the order it happened per message.

    ``message_id`` is ``None`` for an event about a recipient rather than a
    message, such as ``recipient.unsubscribed`` recorded through the API.
    """

    event_id: str
    type: EventType
    created_at: datetime
    message_id: str | None
    recipient: str
    data: Mapping[str, Any] = attrs.field(factory=dict)
