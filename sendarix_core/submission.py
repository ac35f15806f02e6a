"""Turning a validated request into a new message and its first event."""

from __future__ import annotations

from datetime import datetime

from sendarix_core.keys import ApiKey, Environment
from sendarix_core.lifecycle import Transition, create
from sendarix_core.mime import make_message_id_header
from sendarix_core.model import Message, MessageContent
from sendarix_core.states import MessageStatus
from sendarix_core.validation import SendRequest

__all__ = ["new_message"]


def new_message(
    request: SendRequest,
    *,
    message_id: str,
    event_id: str,
    now: datetime,
    api_key: ApiKey | None = None,
    content: MessageContent | None = None,
) -> Transition:
    """Build the message for ``request`` and the transition that stores it.

    A message whose ``scheduled_at`` lies in the future starts ``scheduled``;
    every other message starts ``queued``. ``content``, such as a rendered
    template, replaces the content taken from the request.
    """
    scheduled = request.scheduled_at is not None and request.scheduled_at > now
    content = content or MessageContent(
        subject=request.subject or "",
        text=request.text,
        html=request.html,
        attachments=request.attachments,
        headers=request.headers,
        template=request.template,
        template_data=request.template_data,
    )
    message = Message(
        id=message_id,
        status=MessageStatus.SCHEDULED if scheduled else MessageStatus.QUEUED,
        priority=request.priority,
        sender=request.sender,
        recipient=request.recipient,
        content=content,
        created_at=now,
        updated_at=now,
        scheduled_at=request.scheduled_at if scheduled else None,
        expires_at=request.expires_at,
        metadata=request.metadata,
        tags=request.tags,
        api_key_id=api_key.id if api_key else None,
        test_mode=api_key is not None and api_key.environment == Environment.TEST,
        message_id_header=make_message_id_header(message_id, request.sender.domain),
    )
    return create(message, event_id=event_id)
