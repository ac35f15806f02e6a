"""uvicorn's h11 protocol with a deadline for each request head.

uvicorn 0.55 closes a connection that stays idle between requests
(``timeout_keep_alive``), but stops that timer at the first byte of a
request. A client that then sends its head a byte at a time keeps the
connection open, and with it a file descriptor and a buffer, for as long
as it likes. A few hundred such clients exhaust the server.

``HeadTimeoutProtocol`` gives every request head ``REQUEST_HEAD_TIMEOUT``
seconds, counted from the moment the connection opens or, on a kept-alive
connection, from the first byte of the request. A head still incomplete by
then gets a plain-text ``408`` and the connection is closed.
"""

from __future__ import annotations

import asyncio
import logging

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["REQUEST_HEAD_TIMEOUT", "HeadTimeoutProtocol"]

logger = logging.getLogger("sendarix.http")

# Seconds for a whole request head; Apache's RequestReadTimeout allows 20
# to 40 and nginx's client_header_timeout 60, but a head of at most 32 KiB
# on a working link arrives in well under a second.
REQUEST_HEAD_TIMEOUT = 10.0

_TIMEOUT_BODY = b"the request head did not arrive in time; send it in one go\n"
_TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: %d\r\n\r\n" % len(_TIMEOUT_BODY)
) + _TIMEOUT_BODY


class HeadTimeoutProtocol(H11Protocol):
    """H11Protocol that closes connections whose request head is too slow."""

    head_timeout = REQUEST_HEAD_TIMEOUT
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        # The first byte of the next request on a kept-alive connection;
        # until then uvicorn's keep-alive timeout covers the idle connection.
        if self._head_timer is None and self.conn.their_state is h11.IDLE:
            self._arm_head_timer()
        super().data_received(data)

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:
            # The head is in (the client now sends its body or is done), or
            # the connection is in error and about to close.
            self._cancel_head_timer()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        client = f"{self.client[0]}:{self.client[1]}" if self.client else "unknown"
        logger.info(
            "request head timed out",
            extra={"action": "request_head_timeout", "client": client},
        )
        self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()
