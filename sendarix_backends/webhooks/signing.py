"""Standard Webhooks signatures.

A delivery carries ``webhook-id``, ``webhook-timestamp`` (Unix seconds) and
``webhook-signature``: ``v1,`` and the base64 HMAC-SHA256 of
``{id}.{timestamp}.{body}`` under the secret's key bytes. While a rotated
secret is in its grace period the header lists one signature per secret,
separated by spaces, and a receiver accepts the delivery if any matches
(Standard Webhooks specification, "Signature scheme").
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence
from datetime import datetime

__all__ = ["SECRET_PREFIX", "delivery_headers", "format_secret", "sign"]

SECRET_PREFIX = "whsec_"  # noqa: S105 - the format prefix, not a secret


def format_secret(key: bytes) -> str:
    """Return a secret as receivers configure it: ``whsec_`` and base64."""
    if not 24 <= len(key) <= 64:
        raise ValueError(f"a webhook key must have 24 to 64 bytes, not {len(key)}")
    return SECRET_PREFIX + base64.b64encode(key).decode("ascii")


def _key_of(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """Return the ``v1,…`` signature of one delivery attempt."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key_of(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode("ascii")


def delivery_headers(
    secrets: Sequence[str], webhook_id: str, sent_at: datetime, body: bytes
) -> dict[str, str]:
    """Return the headers of one attempt, signed with every secret given."""
    timestamp = int(sent_at.timestamp())
    signatures = " ".join(sign(s, webhook_id, timestamp, body) for s in secrets)
    return {
        "content-type": "application/json",
        "user-agent": "Sendarix-Webhooks/1",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signatures,
    }
