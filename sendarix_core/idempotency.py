"""Idempotency decisions for message submission.

Within 24 hours, a request with a key already used by the same API key returns
the original response and queues nothing. The same key with a different body
is a conflict. After the window the key may be used again.

Each API key's keys are stored in three namespaces. A valid key contains
no space, so no stored key belongs to two of them:

- a single message's key (also a batch item's, or an SMTP transaction's
  for one of its recipients): the key itself;
- a batch's ``Idempotency-Key``: ``"batch <key>"``;
- an SMTP transaction's key for each of its other recipients:
  ``"smtp <key> <recipient>"``.

So one string may be used both as a batch key and as a message key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import attrs

__all__ = [
    "BATCH_KEY_PREFIX",
    "IDEMPOTENCY_WINDOW",
    "RELAY_RECIPIENT_KEY_PREFIX",
    "IdempotencyDecision",
    "IdempotencyRecord",
    "decide_idempotency",
    "relay_recipient_key",
    "request_fingerprint",
    "without_null_fields",
]

IDEMPOTENCY_WINDOW = timedelta(hours=24)

# Batch keys are stored as this prefix plus the key, next to message keys.
# A valid key contains no space, so a stored batch key never equals one.
BATCH_KEY_PREFIX = "batch "

# Prefix of the keys stored for the recipients of an SMTP transaction other
# than the one that stores the key itself.
RELAY_RECIPIENT_KEY_PREFIX = "smtp "


class IdempotencyDecision(StrEnum):
    PROCEED = "proceed"
    REPLAY = "replay"
    CONFLICT = "conflict"


@attrs.frozen(kw_only=True)
class IdempotencyRecord:
    """The first response given for a key, stored to be replayed."""

    api_key_id: str
    key: str
    fingerprint: str
    status_code: int
    response: Mapping[str, Any]
    created_at: datetime


def relay_recipient_key(key: str, recipient: str) -> str:
    """Return the stored key of one recipient of an SMTP transaction."""
    return f"{RELAY_RECIPIENT_KEY_PREFIX}{key} {recipient}"


def request_fingerprint(body: Mapping[str, Any]) -> str:
    """Return a digest of a request body that ignores key order and spacing.

    A top-level field set to null counts as absent, as validation treats it.
    """
    canonical = json.dumps(
        without_null_fields(body), sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def without_null_fields(body: Mapping[str, Any]) -> Mapping[str, Any]:
    """Return ``body`` without its top-level fields whose value is null."""
    if all(value is not None for value in body.values()):
        return body
    return {name: value for name, value in body.items() if value is not None}


def decide_idempotency(
    record: IdempotencyRecord | None, fingerprint: str, now: datetime
) -> IdempotencyDecision:
    if record is None or now - record.created_at >= IDEMPOTENCY_WINDOW:
        return IdempotencyDecision.PROCEED
    if record.fingerprint != fingerprint:
        return IdempotencyDecision.CONFLICT
    return IdempotencyDecision.REPLAY
