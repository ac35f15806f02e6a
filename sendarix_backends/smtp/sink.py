"""A transport that accepts every message and sends none."""

from __future__ import annotations

from collections import deque

from sendarix_core.model import SmtpReply
from sendarix_core.ports import Envelope

__all__ = ["SinkTransport"]

_ACCEPTED = SmtpReply(
    code=250, enhanced_code="2.0.0", text="accepted by the sink", mx_host="sink"
)


class SinkTransport:
    """Reports every message delivered without opening a connection.

    Used for test-mode API keys and ``SENDARIX_DELIVERY_MODE=sink``. The
    last ``keep`` envelopes stay in ``envelopes`` for inspection; the
    default keeps none, so a long-running sink uses no memory per message.
    """

    def __init__(self, keep: int = 0) -> None:
        if keep < 0:
            raise ValueError(f"keep must be zero or more, not {keep}")
        self._envelopes: deque[Envelope] = deque(maxlen=keep)
        self.delivered = 0

    @property
    def envelopes(self) -> list[Envelope]:
        """The most recently delivered envelopes, oldest first."""
        return list(self._envelopes)

    async def deliver(self, envelope: Envelope) -> SmtpReply:
        self.delivered += 1
        if self._envelopes.maxlen:
            self._envelopes.append(envelope)
        return _ACCEPTED

    async def aclose(self) -> None:
        """Release nothing: kept envelopes stay readable after the engine stops."""
