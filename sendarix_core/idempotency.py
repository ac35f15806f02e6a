"""Idempotency decisions for message submission.

Within 24 hours, a request with a key already used by the same API key returns
the original response and queues nothing. The same key with a different body
is a conflict. After the window the key may be used again.

A batch's ``Idempotency-Key`` and the keys of single messages, which batch
items share, are separate namespaces, so one string may be used as both.
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
    "IdempotencyDecision",
    "IdempotencyRecord",
    "decide_idempotency",
    "request_fingerprint",
    "without_null_fields",
]

IDEMPOTENCY_WINDOW = timedelta(hours=24)

# Batch keys are stored as this prefix plus the key, next to message keys.
# A valid key contains no space, so a stored batch key never equals one.
BATCH_KEY_PREFIX = "batch "


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
