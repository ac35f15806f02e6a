"""An in-memory storage and queue for integrators' tests.

``MemoryStore`` implements ``MessageStore`` and ``MessageQueue`` with plain
dictionaries. It follows the same contract as the SQL backend (versions,
leases, idempotency, cursors) and keeps nothing after the process ends, so
use it in tests, never in production.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

import attrs

from sendarix_core.errors import FieldError, StorageError, ValidationError
from sendarix_core.idempotency import (
    IdempotencyDecision,
    IdempotencyRecord,
    decide_idempotency,
)
from sendarix_core.keys import ApiKey
from sendarix_core.lifecycle import Transition
from sendarix_core.model import Event, Message
from sendarix_core.ports import (
    BatchOutcome,
    BatchSubmission,
    MessageQuery,
    Page,
    Submission,
    SubmitOutcome,
    SuppressionQuery,
)
from sendarix_core.states import MessageStatus, Priority
from sendarix_core.suppression import Suppression, normalize_recipient

__all__ = ["MemoryStore", "due_at"]

T = TypeVar("T")

_SavedState = tuple[
    dict[str, Message],
    dict[str, datetime],
    dict[str, list[Event]],
    dict[tuple[str, str], IdempotencyRecord],
]


def due_at(message: Message) -> datetime | None:
    """Return when a message can next be claimed; ``None`` when terminal."""
    if message.is_terminal:
        return None
    if message.status == MessageStatus.SCHEDULED:
        return message.scheduled_at or message.created_at
    if message.status == MessageStatus.DEFERRED:
        return message.next_attempt_at or message.updated_at
    return message.created_at


class MemoryStore:
    def __init__(self) -> None:
        self._messages: dict[str, Message] = {}
        self._due: dict[str, datetime] = {}
        self._events: dict[str, list[Event]] = {}
        self._suppressions: dict[str, Suppression] = {}
        self._idempotency: dict[tuple[str, str], IdempotencyRecord] = {}
        self._keys: dict[str, ApiKey] = {}
        self._counters: dict[tuple[str, int], int] = {}

    async def create_messages(
        self, submissions: Sequence[Submission], now: datetime
    ) -> list[SubmitOutcome]:
        outcomes = []
        for submission in submissions:
            record = submission.idempotency
            if record is not None:
                slot = (record.api_key_id, record.key)
                existing = self._idempotency.get(slot)
                decision = decide_idempotency(existing, record.fingerprint, now)
                if decision == IdempotencyDecision.REPLAY:
                    outcomes.append(SubmitOutcome(replay=existing))
                    continue
                if decision == IdempotencyDecision.CONFLICT:
                    outcomes.append(SubmitOutcome(conflict=True))
                    continue
                self._idempotency[slot] = record
            message = submission.transition.after
            if message.id in self._messages:
                raise StorageError(f"message {message.id!r} already exists")
            self._store(message)
            self._events[message.id] = [submission.transition.event]
            outcomes.append(SubmitOutcome(message=message))
        return outcomes

    async def create_batch(self, batch: BatchSubmission, now: datetime) -> BatchOutcome:
        claim = batch.idempotency
        if claim is not None:
            existing = self._idempotency.get((claim.api_key_id, claim.key))
            decision = decide_idempotency(existing, claim.fingerprint, now)
            if decision == IdempotencyDecision.REPLAY:
                return BatchOutcome(replay=existing)
            if decision == IdempotencyDecision.CONFLICT:
                return BatchOutcome(conflict=True)

        saved = self._save_state() if batch.all_or_nothing else None
        outcomes = await self.create_messages(batch.submissions, now)
        if saved is not None and any(outcome.conflict for outcome in outcomes):
            self._restore_state(saved)
            return BatchOutcome(outcomes=outcomes, rolled_back=True)

        response = batch.respond(outcomes)
        if claim is not None:
            slot = (claim.api_key_id, claim.key)
            self._idempotency[slot] = attrs.evolve(claim, response=response)
        return BatchOutcome(outcomes=outcomes, response=response)

    def _save_state(self) -> _SavedState:
        # Shallow copies suffice: create_messages only adds entries.
        return (
            dict(self._messages),
            dict(self._due),
            dict(self._events),
            dict(self._idempotency),
        )

    def _restore_state(self, saved: _SavedState) -> None:
        self._messages, self._due, self._events, self._idempotency = saved

    async def get_message(self, message_id: str) -> Message | None:
        return self._messages.get(message_id)

    async def list_messages(self, query: MessageQuery) -> Page[Message]:
        after = _decode_cursor(query.cursor)
        recipient = normalize_recipient(query.recipient) if query.recipient else None
        selected = []
        for message in sorted(
            self._messages.values(), key=lambda m: m.id, reverse=True
        ):
            if after is not None and message.id >= after:
                continue
            if query.status is not None and message.status != query.status:
                continue
            if query.test_mode is not None and message.test_mode != query.test_mode:
                continue
            if recipient and normalize_recipient(message.recipient.email) != recipient:
                continue
            if query.created_after and message.created_at <= query.created_after:
                continue
            if query.created_before and message.created_at >= query.created_before:
                continue
            selected.append(message)
            if len(selected) > query.limit:
                break
        return _page(selected, query.limit, lambda message: message.id)

    async def list_message_events(self, message_id: str) -> list[Event]:
        return list(self._events.get(message_id, []))

    async def save_transitions(self, transitions: Sequence[Transition]) -> list[str]:
        stale = []
        for transition in transitions:
            before, after = transition.before, transition.after
            current = self._messages.get(after.id)
            if before is None or current is None or current.version != before.version:
                stale.append(after.id)
                continue
            self._store(after, keep_lease=after.status == MessageStatus.ACCEPTED)
            self._events.setdefault(after.id, []).append(transition.event)
            if transition.suppression is not None:
                await self.add_suppression(transition.suppression)
        return stale

    async def get_suppressions(
        self, recipients: Sequence[str]
    ) -> Mapping[str, Suppression]:
        return {r: self._suppressions[r] for r in recipients if r in self._suppressions}

    async def add_suppression(self, suppression: Suppression) -> Suppression:
        return self._suppressions.setdefault(suppression.recipient, suppression)

    async def list_suppressions(self, query: SuppressionQuery) -> Page[Suppression]:
        after = _decode_cursor(query.cursor)
        selected = [
            entry
            for recipient, entry in sorted(self._suppressions.items())
            if (after is None or recipient > after)
            and (query.reasons is None or entry.reason in query.reasons)
        ][: query.limit + 1]
        return _page(selected, query.limit, lambda entry: entry.recipient)

    async def remove_suppression(self, recipient: str) -> bool:
        return self._suppressions.pop(recipient, None) is not None

    async def create_api_key(self, key: ApiKey) -> None:
        self._keys[key.key_hash] = key

    async def find_api_key(self, key_hash: str) -> ApiKey | None:
        return self._keys.get(key_hash)

    async def get_api_key(self, key_id: str) -> ApiKey | None:
        return next((key for key in self._keys.values() if key.id == key_id), None)

    async def list_api_keys(self) -> list[ApiKey]:
        return sorted(self._keys.values(), key=lambda key: (key.created_at, key.id))

    async def revoke_api_key(self, key_id: str, now: datetime) -> ApiKey | None:
        key = await self.get_api_key(key_id)
        if key is not None and key.revoked_at is None:
            key = attrs.evolve(key, revoked_at=now)
            self._keys[key.key_hash] = key
        return key

    async def touch_api_key(self, key_id: str, now: datetime) -> None:
        key = await self.get_api_key(key_id)
        if key is not None:
            self._keys[key.key_hash] = attrs.evolve(key, last_used_at=now)

    async def count_request(self, api_key_id: str, window_start: int) -> int:
        slot = (api_key_id, window_start)
        self._counters[slot] = self._counters.get(slot, 0) + 1
        return self._counters[slot]

    async def claim_due(
        self,
        worker_id: str,
        now: datetime,
        limit: int,
        lease: timedelta,
        *,
        priorities: Sequence[Priority] | None = None,
    ) -> list[Message]:
        due = [
            self._messages[message_id]
            for message_id, when in self._due.items()
            if when <= now
            and (
                priorities is None or self._messages[message_id].priority in priorities
            )
        ]
        due.sort(key=lambda m: (m.priority.rank, self._due[m.id], m.id))
        claimed = []
        for message in due[:limit]:
            leased = attrs.evolve(message, version=message.version + 1)
            self._messages[message.id] = leased
            self._due[message.id] = now + lease
            claimed.append(leased)
        return claimed

    async def renew_leases(
        self, messages: Sequence[Message], now: datetime, lease: timedelta
    ) -> None:
        for message in messages:
            current = self._messages.get(message.id)
            if current is not None and current.version == message.version:
                self._due[message.id] = now + lease

    async def next_due_at(self) -> datetime | None:
        return min(self._due.values(), default=None)

    async def aclose(self) -> None:
        return None

    def _store(self, message: Message, *, keep_lease: bool = False) -> None:
        self._messages[message.id] = message
        if keep_lease:
            return
        when = due_at(message)
        if when is None:
            self._due.pop(message.id, None)
        else:
            self._due[message.id] = when


def _page(items: list[T], limit: int, key: Callable[[T], str]) -> Page[T]:
    if len(items) <= limit:
        return Page(items=items, next_cursor=None)
    last = items[limit - 1]
    cursor = base64.urlsafe_b64encode(key(last).encode()).decode()
    return Page(items=items[:limit], next_cursor=cursor)


def _decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        return base64.urlsafe_b64decode(cursor.encode()).decode()
    except (ValueError, UnicodeDecodeError):
        message = (
            f"{cursor!r} is not a cursor this API returned; pass next_cursor unchanged"
        )
        raise ValidationError(
            [FieldError("cursor", "invalid_cursor", message)]
        ) from None
