"""Rows read by position decode to the messages that were stored."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import orjson
import pytest

from sendarix_backends.sql import bulk, codec
from sendarix_backends.sql.schema import messages
from sendarix_core.model import Attachment, MessageContent, SmtpReply
from tests.core.factories import T0, make_message

COLUMNS = tuple(column.name for column in messages.columns)


def stored_values(row: dict[str, Any]) -> tuple[Any, ...]:
    """The driver row SQLite returns for ``row``: every column in table order."""
    encoded = bulk.sqlite_rows(messages, [row])[0]
    return tuple(encoded[name] for name in COLUMNS)


@pytest.mark.parametrize(
    "content",
    [
        MessageContent(subject="Your code", text="847291"),
        MessageContent(
            subject="Invoice",
            html="<p>Attached.</p>",
            attachments=(Attachment("a.pdf", "application/pdf", b"%PDF-1.7"),),
            headers=(("X-Campaign", "spring"),),
        ),
        MessageContent(
            subject="Welcome",
            text="Hi",
            template="welcome",
            template_data={"name": "Ada"},
            template_version=3,
        ),
        MessageContent(subject="Raw", raw=b"Subject: Raw\r\n\r\nbody\r\n"),
    ],
)
def test_values_decode_to_message(content: MessageContent) -> None:
    message = make_message(
        content=content,
        attempts=2,
        expires_at=T0 + timedelta(days=1),
        last_reply=SmtpReply(code=451, enhanced_code="4.7.1", text="later"),
        metadata={"user_id": "7"},
        tags=("otp",),
        version=4,
    )
    row = codec.message_row(message)
    row["lease_owner"] = None

    assert codec.message_from_values(stored_values(row)) == message


def test_old_content_document_gets_defaults() -> None:
    message = make_message()
    row = codec.message_row(message)
    values = list(stored_values(row))
    document = orjson.loads(values[COLUMNS.index("content")])
    del document["raw"], document["template_version"], document["template_data"]
    values[COLUMNS.index("content")] = orjson.dumps(document).decode()

    assert codec.message_from_values(values).content == message.content
