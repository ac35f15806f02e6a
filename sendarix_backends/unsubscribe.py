"""One-click unsubscribe links (RFC 8058) and the key that signs them.

A link is ``{public_url}/u/{message_id}.{mac}``, where ``mac`` is an
HMAC-SHA256 over the message id and its recipient, truncated to 128 bits.
Nobody without the key can make a link for another message or recipient.
The key is generated once and kept in the database, so every process
signs and checks links alike.

RFC 8058 section 3.1 allows one-click unsubscribe only over HTTPS, so a
message gets List-Unsubscribe-Post only when the public URL is https. The
settings accept http only for a loopback host, for local development.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import os
import urllib.parse
from datetime import datetime
from typing import Protocol

from sendarix_core.clock import Clock
from sendarix_core.errors import FieldError, ValidationError
from sendarix_core.suppression import normalize_recipient

__all__ = [
    "MemorySecretStore",
    "SecretStore",
    "UnsubscribeLinks",
    "split_token",
]

logger = logging.getLogger("sendarix.content")

# The name of the stored key, not the key itself.
SECRET_NAME = "unsubscribe_link_key"  # noqa: S105
_MAC_BYTES = 16


class SecretStore(Protocol):
    async def ensure_secret(self, name: str, candidate: bytes, now: datetime) -> bytes:
        """Return the stored secret ``name``, storing ``candidate`` if none is."""
        ...


class MemorySecretStore:
    def __init__(self) -> None:
        self._secrets: dict[str, bytes] = {}

    async def ensure_secret(self, name: str, candidate: bytes, now: datetime) -> bytes:
        return self._secrets.setdefault(name, candidate)


def split_token(token: str) -> tuple[str, str] | None:
    """Return the message id and MAC of a link token, or None if malformed."""
    message_id, separator, mac = token.rpartition(".")
    if not separator or not message_id or not mac:
        return None
    return message_id, mac


class UnsubscribeLinks:
    """Makes and checks the List-Unsubscribe links of messages."""

    def __init__(
        self, secrets: SecretStore, *, public_url: str | None, clock: Clock
    ) -> None:
        self._secrets = secrets
        self._public_url = public_url.rstrip("/") if public_url else None
        self._clock = clock
        self._key: bytes | None = None
        self._one_click = self._public_url is None or (
            urllib.parse.urlsplit(self._public_url).scheme == "https"
        )
        if not self._one_click:
            logger.warning(
                "the public URL is not https, so messages get no "
                "List-Unsubscribe-Post and mailbox providers offer no one-click "
                "unsubscribe; use an https URL outside local development",
                extra={"action": "public_url_not_https"},
            )

    async def headers(
        self, message_id: str, recipient: str
    ) -> tuple[tuple[str, str], ...]:
        """Return the List-Unsubscribe and List-Unsubscribe-Post fields.

        List-Unsubscribe-Post is left out when the public URL is not https.
        Raises ``ValidationError`` when no public URL is configured, because
        the link would have nowhere to point.
        """
        if self._public_url is None:
            raise ValidationError(
                [
                    FieldError(
                        "list_unsubscribe",
                        "unsubscribe_unavailable",
                        "this server has no public URL for unsubscribe links; "
                        "the operator sets SENDARIX_PUBLIC_URL",
                    )
                ]
            )
        mac = await self._mac(message_id, recipient)
        url = f"{self._public_url}/u/{message_id}.{mac}"
        if not self._one_click:
            return (("List-Unsubscribe", f"<{url}>"),)
        return (
            ("List-Unsubscribe", f"<{url}>"),
            ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        )

    async def is_valid(self, token: str, recipient: str) -> bool:
        """Return whether ``token`` was made for its message and ``recipient``."""
        parts = split_token(token)
        if parts is None:
            return False
        message_id, mac = parts
        expected = await self._mac(message_id, recipient)
        return hmac.compare_digest(mac, expected)

    async def _mac(self, message_id: str, recipient: str) -> str:
        if self._key is None:
            self._key = await self._secrets.ensure_secret(
                SECRET_NAME, os.urandom(32), self._clock.now()
            )
        data = f"{message_id}\0{normalize_recipient(recipient)}".encode()
        digest = hmac.new(self._key, data, hashlib.sha256).digest()[:_MAC_BYTES]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
