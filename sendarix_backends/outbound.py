"""From a claimed message to what the transport sends, and which transport.

``Outbound`` is the one place that decides the bytes, the envelope and the
transport of an attempt, so signing, return paths and routing rules extend
it rather than the worker loop.
"""

from __future__ import annotations

from typing import Protocol

from sendarix_backends.inbound.verp import return_path
from sendarix_core.mime import build_message_bytes
from sendarix_core.model import Message
from sendarix_core.ports import Envelope, Transport

__all__ = ["MessageSigner", "Outbound"]


class MessageSigner(Protocol):
    async def sign(self, message: Message, data: bytes) -> bytes:
        """Return ``data``, the built ``message``, with any signatures added."""
        ...

    async def aligned_return_path_domain(self, message: Message) -> str | None:
        """Return a return-path domain under the sender's domain, or ``None``."""
        ...


class Outbound:
    def __init__(
        self,
        *,
        transport: Transport,
        sink: Transport,
        return_path_domain: str | None = None,
        signer: MessageSigner | None = None,
    ) -> None:
        self.transport = transport
        self.sink = sink
        self.return_path_domain = return_path_domain
        self.signer = signer

    async def prepare(self, message: Message) -> Envelope:
        """Build the envelope of one attempt.

        The ``Date`` header is the scheduled time of a scheduled message and
        the creation time of any other, so every attempt sends the same
        bytes under the same ``Message-ID``. With a return-path
        domain the envelope sender is ``bounces+<message id>@<domain>``
        (VERP), so a bounce report names the message it is about. Where the
        signer finds a verified sending domain for the sender, ``<domain>``
        is that domain's ``bounces.`` subdomain, which aligns SPF with
        ``From``. The signer, when there is one, also adds DKIM signatures
        to the built bytes.
        """
        mail_from = message.sender.email
        if self.return_path_domain is not None:
            domain = self.return_path_domain
            if self.signer is not None:
                aligned = await self.signer.aligned_return_path_domain(message)
                domain = aligned or domain
            mail_from = return_path(message.id, domain)
        date = message.scheduled_at or message.created_at
        data = build_message_bytes(message, date=date)
        if self.signer is not None:
            data = await self.signer.sign(message, data)
        return Envelope(
            message_id=message.id,
            mail_from=mail_from,
            rcpt_to=message.recipient.email,
            data=data,
            smtputf8=message.recipient.smtputf8 or message.sender.smtputf8,
            test_mode=message.test_mode,
        )

    def transport_for(self, message: Message) -> Transport:
        """Return the transport of an attempt; test keys always get the sink."""
        return self.sink if message.test_mode else self.transport

    async def aclose(self) -> None:
        try:
            await self.transport.aclose()
        finally:
            await self.sink.aclose()
