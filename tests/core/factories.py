"""Builders of core values for tests."""

from __future__ import annotations

from datetime import UTC, datetime
from itertools import count
from typing import Any

import attrs

from sendarix_core.model import Address, Message, MessageContent
from sendarix_core.states import MessageStatus, Priority

T0 = datetime(2026, 4, 19, 14, 30, tzinfo=UTC)
_ids = count(1)


def make_message(**changes: Any) -> Message:
    number = next(_ids)
    message = Message(
        id=f"msg_{number:026d}",
        status=MessageStatus.QUEUED,
        priority=Priority.NORMAL,
        sender=Address("no-reply", "acme.example", "Acme"),
        recipient=Address("user", "example.com"),
        content=MessageContent(subject="Your code", text="847291"),
        created_at=T0,
        updated_at=T0,
    )
    return attrs.evolve(message, **changes)


def event_ids() -> Any:
    numbers = count(1)
    return lambda: f"evt_{next(numbers):026d}"
