"""Messages submitted as finished bytes: one message per envelope recipient.

The SMTP relay hands over what a client sent after DATA. Every recipient
gets its own message whose content is those bytes (``MessageContent.raw``),
so states, events, retries, suppression and test keys work as for API
sends. The envelope sender (``MAIL FROM``) becomes the message's
``sender``, which delivery uses as its envelope sender. Its display name
comes from the From header when that names the same mailbox.

A message without Message-ID or Date gets them in front of its headers, as
RFC 5321 section 6.4 lets a submission server do. A submitted Message-ID
is kept, so receivers that drop duplicates by it still can.

An idempotency key applies to the whole transaction: the same key with the
same envelope and bytes within 24 hours queues nothing and returns the
original message ids; with another envelope or other bytes it is a
conflict. One submission, the anchor, stores the key itself, and the others
store ``relay_recipient_key(key, recipient)``. All of them commit in one
transaction, so a conflict on any of them stores nothing.
"""

from __future__ import annotations

import email.utils
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime

import attrs

from sendarix_backends.raw_message import HeaderMailbox, RawMessage, read_raw_message
from sendarix_core.addresses import AddressError, parse_address
from sendarix_core.errors import FieldError, ValidationError
from sendarix_core.idempotency import (
    IdempotencyRecord,
    relay_recipient_key,
    request_fingerprint,
)
from sendarix_core.keys import ApiKey, Environment
from sendarix_core.lifecycle import create
from sendarix_core.mime import make_message_id_header
from sendarix_core.model import Address, Message, MessageContent
from sendarix_core.ports import Submission, SubmitOutcome
from sendarix_core.representation import accepted_response
from sendarix_core.states import MessageStatus

__all__ = ["RawBatch", "prepare_raw_batch", "submit_raw_batch"]

SubmitOne = Callable[[Submission], Awaitable[SubmitOutcome]]
SubmitAll = Callable[[Sequence[Submission]], Awaitable[Sequence[SubmitOutcome]]]


@attrs.frozen(kw_only=True)
class RawBatch:
    """The submissions of one transaction, in the order of its recipients."""

    submissions: tuple[Submission, ...]
    senders: tuple[Address, ...]
    """The envelope sender and the mailboxes of From, Sender, Resent-From and
    Resent-Sender, one per domain, whose domains the API key and sender
    verification must allow."""
    idempotency_key: str | None
    anchor: int
    """Index of the submission whose record is the idempotency key itself."""


def prepare_raw_batch(
    data: bytes,
    *,
    mail_from: str,
    recipients: Sequence[str],
    now: datetime,
    new_id: Callable[[str], str],
    api_key: ApiKey | None,
    idempotency_owner: str,
) -> RawBatch:
    """Build one submission per recipient of a finished RFC 5322 message.

    Raises ``ValidationError`` naming every invalid address and header.
    """
    sender, addresses = _parse_envelope(mail_from, recipients)
    raw = read_raw_message(data)
    header_senders = (
        *(HeaderMailbox("From", address) for address in raw.senders),
        *raw.other_senders,
    )
    if api_key is not None:
        _check_key_domains(api_key, header_senders)
    display_sender = _display_sender(sender, raw.senders)

    # Only a message with an idempotency key needs the fingerprint, and
    # hashing the whole message is not free.
    fingerprint = ""
    if raw.idempotency_key is not None:
        fingerprint = request_fingerprint(
            {
                "mail_from": sender.email,
                "recipients": sorted(address.email for address in addresses),
                "data": hashlib.sha256(data).hexdigest(),
            }
        )
    anchor = min(range(len(addresses)), key=lambda index: addresses[index].email)
    submissions = []
    for index, recipient in enumerate(addresses):
        message = _new_message(
            raw, display_sender, recipient, now=now, new_id=new_id, api_key=api_key
        )
        record = None
        if raw.idempotency_key is not None:
            key = raw.idempotency_key
            if index != anchor:
                key = relay_recipient_key(key, recipient.email)
            record = IdempotencyRecord(
                api_key_id=idempotency_owner,
                key=key,
                fingerprint=fingerprint,
                status_code=250,
                response=accepted_response(message),
                created_at=now,
            )
        transition = create(message, event_id=new_id("evt"))
        submissions.append(Submission(transition=transition, idempotency=record))

    senders = {
        address.domain: address
        for address in (*(item.address for item in header_senders), sender)
    }
    return RawBatch(
        submissions=tuple(submissions),
        senders=tuple(senders.values()),
        idempotency_key=raw.idempotency_key,
        anchor=anchor,
    )


async def submit_raw_batch(
    batch: RawBatch, *, submit_one: SubmitOne, submit_all: SubmitAll
) -> list[SubmitOutcome]:
    """Store a batch; return one outcome per submission, in order.

    A single submission goes through ``submit_one``, which shares a group
    commit with concurrent submissions. Several go through ``submit_all``,
    which must store all of them in one transaction, or none when one of
    their idempotency keys conflicts.
    """
    submissions = batch.submissions
    if len(submissions) == 1:
        return [await submit_one(submissions[0])]
    return list(await submit_all(submissions))


def _parse_envelope(
    mail_from: str, recipients: Sequence[str]
) -> tuple[Address, list[Address]]:
    errors = []
    sender = None
    try:
        sender = parse_address(mail_from)
    except AddressError as error:
        errors.append(FieldError("mail_from", error.code, str(error)))

    addresses = []
    for index, recipient in enumerate(recipients):
        try:
            addresses.append(parse_address(recipient))
        except AddressError as error:
            errors.append(FieldError(f"recipients.{index}", error.code, str(error)))
    if not recipients:
        errors.append(
            FieldError(
                "recipients", "missing_field", "at least one recipient is needed"
            )
        )
    if errors or sender is None:
        raise ValidationError(errors)
    return sender, addresses


def _check_key_domains(api_key: ApiKey, mailboxes: Sequence[HeaderMailbox]) -> None:
    """Raise ``ValidationError`` naming each header whose domain the key forbids.

    The engine checks the same domains, but names every one ``from``. Here
    a refused Sender or Resent- header is named as such.
    """
    if not api_key.sender_domains:
        return
    allowed = ", ".join(api_key.sender_domains)
    errors = [
        FieldError(
            mailbox.header,
            "sender_domain_not_allowed",
            f"the API key may send only from {allowed}, "
            f"not from {mailbox.address.domain!r}",
        )
        for mailbox in mailboxes
        if mailbox.address.domain.lower() not in api_key.sender_domains
    ]
    if errors:
        raise ValidationError(errors)


def _display_sender(sender: Address, header_senders: Sequence[Address]) -> Address:
    """Return the envelope sender with the From header's display name, if any."""
    for address in header_senders:
        if address.email.lower() == sender.email.lower():
            return Address(sender.local_part, sender.domain, address.display_name)
    return sender


def _new_message(
    raw: RawMessage,
    sender: Address,
    recipient: Address,
    *,
    now: datetime,
    new_id: Callable[[str], str],
    api_key: ApiKey | None,
) -> Message:
    message_id = new_id("msg")
    message_id_header = raw.message_id
    added = b""
    if message_id_header is None:
        message_id_header = make_message_id_header(message_id, sender.domain)
        added += f"Message-ID: {message_id_header}\r\n".encode("ascii")
    if not raw.has_date:
        added += f"Date: {email.utils.format_datetime(now)}\r\n".encode("ascii")

    return Message(
        id=message_id,
        status=MessageStatus.QUEUED,
        priority=raw.priority,
        sender=sender,
        recipient=recipient,
        content=MessageContent(subject=raw.subject, raw=added + raw.data),
        created_at=now,
        updated_at=now,
        metadata=raw.metadata,
        tags=raw.tags,
        api_key_id=api_key.id if api_key else None,
        test_mode=api_key is not None and api_key.environment == Environment.TEST,
        message_id_header=message_id_header,
    )
