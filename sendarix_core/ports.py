"""The interfaces backends implement: storage, queue, transport and webhooks.

Plugins return objects with these async methods from the hooks in
``sendarix_backends.hookspecs``. Every method translates its library's
exceptions into ``StorageError`` or ``DeliveryError`` subclasses at the
boundary; no driver exception escapes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, Protocol, TypeVar

import attrs

from sendarix_core.errors import FieldError, ValidationError
from sendarix_core.idempotency import IdempotencyRecord
from sendarix_core.keys import ApiKey
from sendarix_core.lifecycle import Transition
from sendarix_core.model import Event, Message, SmtpReply
from sendarix_core.states import MessageStatus, Priority
from sendarix_core.suppression import Suppression, SuppressionReason

__all__ = [
    "MAX_PAGE_SIZE",
    "BatchOutcome",
    "BatchSubmission",
    "Envelope",
    "MessageQuery",
    "MessageQueue",
    "MessageStore",
    "Page",
    "Submission",
    "SubmitOutcome",
    "SuppressionQuery",
    "Transport",
    "WebhookResponse",
    "WebhookSender",
]

T = TypeVar("T")


@attrs.frozen
class Page(Generic[T]):
    """One page of a listing; ``next_cursor`` is ``None`` on the last page."""

    items: Sequence[T]
    next_cursor: str | None


# The largest page a listing returns; the HTTP API allows 100.
MAX_PAGE_SIZE = 10_000


def _page_size(_: object, attribute: attrs.Attribute[int], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        message = f"limit must be an integer, not {value!r}"
        raise ValidationError([FieldError("limit", "invalid_type", message)])
    if not 1 <= value <= MAX_PAGE_SIZE:
        message = f"limit must be from 1 to {MAX_PAGE_SIZE:,}, not {value}"
        raise ValidationError([FieldError("limit", "invalid_value", message)])


def _aware(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is None:
        return
    if not isinstance(value, datetime) or value.tzinfo is None:
        message = (
            f"{attribute.name} must be a timezone-aware datetime, such as "
            f"datetime.now(UTC), not {value!r}"
        )
        raise ValidationError([FieldError(attribute.name, "invalid_datetime", message)])


def _status(value: object) -> MessageStatus | None:
    if value is None or isinstance(value, MessageStatus):
        return value
    try:
        return MessageStatus(str(value))
    except ValueError:
        known = ", ".join(status.value for status in MessageStatus)
        message = f"unknown status {value!r}; use one of {known}"
        raise ValidationError(
            [FieldError("status", "invalid_value", message)]
        ) from None


def _reasons(value: object) -> frozenset[SuppressionReason] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, Iterable):
        message = f"reasons must be a set of reasons, not {value!r}"
        raise ValidationError([FieldError("reasons", "invalid_type", message)])
    try:
        return frozenset(SuppressionReason(reason) for reason in value)
    except ValueError as error:
        message = f"{error}; use one of {', '.join(SuppressionReason)}"
        raise ValidationError(
            [FieldError("reasons", "invalid_value", message)]
        ) from None


@attrs.frozen(kw_only=True)
class MessageQuery:
    """A page of messages; every field left out matches all.

    ``status`` may also be given as its name, such as ``"queued"``. Bad
    values raise ``ValidationError``.
    """

    status: MessageStatus | None = attrs.field(default=None, converter=_status)
    recipient: str | None = None
    created_after: datetime | None = attrs.field(default=None, validator=_aware)
    created_before: datetime | None = attrs.field(default=None, validator=_aware)
    limit: int = attrs.field(default=25, validator=_page_size)
    cursor: str | None = None
    test_mode: bool | None = None
    """Only messages sent with a test key (True) or a live key (False)."""


@attrs.frozen(kw_only=True)
class SuppressionQuery:
    reasons: frozenset[SuppressionReason] | None = attrs.field(
        default=None, converter=_reasons
    )
    limit: int = attrs.field(default=25, validator=_page_size)
    cursor: str | None = None


@attrs.frozen(kw_only=True)
class Submission:
    """A validated message to store, with the idempotency record to claim.

    ``idempotency.response`` is the response a replay will return.
    """

    transition: Transition
    idempotency: IdempotencyRecord | None = None


@attrs.frozen(kw_only=True)
class SubmitOutcome:
    """What storage did with one ``Submission``.

    Exactly one of ``message`` (stored now) and ``replay`` (the record of an
    earlier request with the same key) is set, unless ``conflict`` is true:
    the key was used with another body within the window.
    """

    message: Message | None = None
    replay: IdempotencyRecord | None = None
    conflict: bool = False


@attrs.frozen(kw_only=True)
class BatchSubmission:
    """Messages submitted in one request, to be stored in one transaction.

    ``idempotency`` claims a key for the batch as a whole; its ``response``
    is ignored, because the response stored with the key is
    ``respond(outcomes)``, computed inside the transaction. A replay then
    returns what the first request returned, per-item replays included.
    With ``all_or_nothing``, nothing is stored, the batch key included, when
    any submission conflicts with an earlier use of its own key.
    """

    submissions: Sequence[Submission]
    respond: Callable[[Sequence[SubmitOutcome]], Mapping[str, Any]]
    idempotency: IdempotencyRecord | None = None
    all_or_nothing: bool = False


@attrs.frozen(kw_only=True)
class BatchOutcome:
    """What storage did with a ``BatchSubmission``.

    ``replay`` (an earlier batch with the same key and body) and ``conflict``
    (the batch key used with another body) mean nothing was stored and
    ``outcomes`` is empty. Otherwise ``outcomes`` has one entry per
    submission, in order. ``rolled_back`` means ``all_or_nothing`` found a
    conflict, so nothing was stored and ``response`` is None; else
    ``response`` is what ``respond`` returned.
    """

    outcomes: Sequence[SubmitOutcome] = ()
    response: Mapping[str, Any] | None = None
    replay: IdempotencyRecord | None = None
    conflict: bool = False
    rolled_back: bool = False


class MessageStore(Protocol):
    """Durable storage for messages, events, suppressions and API keys."""

    async def create_messages(
        self, submissions: Sequence[Submission], now: datetime
    ) -> list[SubmitOutcome]:
        """Store messages and their first events in one commit.

        Idempotency keys are claimed atomically: of concurrent submissions
        with one key, exactly one is stored. Returns one outcome per
        submission, in order. Returns only after the data is durable.
        """
        ...

    async def create_batch(self, batch: BatchSubmission, now: datetime) -> BatchOutcome:
        """Store the messages of one batch request in one commit.

        Claims ``batch.idempotency`` (if set) in the same transaction as the
        messages, so of concurrent batches with one key exactly one is
        stored and the others replay its response or conflict. Per-item
        idempotency keys work as in ``create_messages``. Returns only after
        the data is durable.
        """
        ...

    async def get_message(self, message_id: str) -> Message | None: ...

    async def list_messages(self, query: MessageQuery) -> Page[Message]:
        """List messages newest first."""
        ...

    async def list_message_events(self, message_id: str) -> list[Event]:
        """Return a message's events, oldest first."""
        ...

    async def save_transitions(self, transitions: Sequence[Transition]) -> list[str]:
        """Persist transitions, their events and suppressions in one commit.

        A transition is applied only where the stored version still equals
        ``before.version``. Returns the ids of messages that were skipped
        because another writer changed them first.
        """
        ...

    async def get_suppressions(
        self, recipients: Sequence[str]
    ) -> Mapping[str, Suppression]:
        """Return the entries for those normalized recipients that have one."""
        ...

    async def add_suppression(self, suppression: Suppression) -> Suppression:
        """Add an entry, or return the one already stored for the recipient."""
        ...

    async def list_suppressions(self, query: SuppressionQuery) -> Page[Suppression]: ...

    async def remove_suppression(self, recipient: str) -> bool:
        """Remove an entry; return whether one existed."""
        ...

    async def create_api_key(self, key: ApiKey) -> None: ...

    async def find_api_key(self, key_hash: str) -> ApiKey | None: ...

    async def get_api_key(self, key_id: str) -> ApiKey | None: ...

    async def list_api_keys(self) -> list[ApiKey]:
        """Return every key, revoked ones included, oldest first."""
        ...

    async def revoke_api_key(self, key_id: str, now: datetime) -> ApiKey | None:
        """Set ``revoked_at`` to ``now`` unless it is set; return the key.

        Returns None for an unknown key.
        """
        ...

    async def touch_api_key(self, key_id: str, now: datetime) -> None:
        """Record that the key was used at ``now``."""
        ...

    async def count_request(self, api_key_id: str, window_start: int) -> int:
        """Count one request in a rate-limit window and return the new total."""
        ...

    async def aclose(self) -> None: ...


class MessageQueue(Protocol):
    """Hands due messages to workers, each to one worker at a time."""

    async def claim_due(
        self,
        worker_id: str,
        now: datetime,
        limit: int,
        lease: timedelta,
        *,
        priorities: Sequence[Priority] | None = None,
    ) -> list[Message]:
        """Lease up to ``limit`` due messages, highest priority first, FIFO
        within a priority.

        ``priorities`` limits the claim to those tiers; ``None`` claims from
        every tier. A claim bumps each message's version, which fences off
        the worker that held an earlier, expired lease.
        """
        ...

    async def renew_leases(
        self, messages: Sequence[Message], now: datetime, lease: timedelta
    ) -> None:
        """Extend the leases of messages still being delivered."""
        ...

    async def next_due_at(self) -> datetime | None:
        """Return when the earliest message becomes due, if any is waiting."""
        ...

    async def aclose(self) -> None: ...


@attrs.frozen(kw_only=True)
class Envelope:
    """What the transport hands to SMTP: envelope addresses and the bytes."""

    message_id: str
    mail_from: str
    rcpt_to: str
    data: bytes = attrs.field(repr=lambda value: f"<{len(value)} bytes>")
    smtputf8: bool = False
    test_mode: bool = False


class Transport(Protocol):
    """Delivers one message to its recipient's mail server."""

    async def deliver(self, envelope: Envelope) -> SmtpReply:
        """Return the reply to DATA when the server accepted the message.

        Raises ``TemporaryDeliveryError`` or ``PermanentDeliveryError`` with
        the reply code, enhanced code and MX host when it did not.
        """
        ...

    async def aclose(self) -> None: ...


@attrs.frozen(kw_only=True)
class WebhookResponse:
    status_code: int | None
    body_excerpt: str
    elapsed: timedelta
    error: str | None = None


class WebhookSender(Protocol):
    """Posts signed event payloads to subscriber endpoints."""

    async def post(
        self, url: str, headers: Mapping[str, str], body: bytes
    ) -> WebhookResponse: ...

    async def aclose(self) -> None: ...
