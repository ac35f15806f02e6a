"""uvicorn's httptools protocol with guards on request heads and trailers.

``sendarix serve`` parses HTTP with httptools (llhttp, the parser of
Node.js), which took about a quarter less CPU per request than uvicorn's
pure-Python h11 protocol on the send path. uvicorn leaves two guards out
of that protocol, and ``GuardedHttpProtocol`` adds them:

* **A deadline for each request head.** uvicorn closes a connection that
  stays idle between requests (``timeout_keep_alive``), but stops that
  timer at the first byte of a request. A client that then sends its head
  a byte at a time keeps the connection open, and with it a file
  descriptor and a buffer, for as long as it likes. Every head gets
  ``REQUEST_HEAD_TIMEOUT`` seconds, counted from the moment the connection
  opens or, on a kept-alive connection, from the first byte of the next
  request. A head still incomplete by then gets a plain-text ``408`` and
  the connection is closed.
* **A size limit for each request head.** httptools buffers a header
  field until its line ends, however long it grows. A head that has
  passed ``MAX_HEADER_BLOCK_BYTES`` and is still incomplete gets the
  API's JSON ``422`` for ``http_headers``, and the connection is closed.
  A head that arrives whole in one read reaches the application, which
  checks the same limit (``sendarix_http.limits``).
* **A size limit for the trailer section of a chunked body.** httptools
  buffers trailer fields the same way, and while it does the application
  waits for body data, so nothing else ends the request. Once more than
  ``MAX_HEADER_BLOCK_BYTES`` have come in without body data or the end of
  a chunk, the connection is closed without a response, because the
  request's own response may already be on its way.

* **The keep-alive timeout after an early answer.** An application may
  answer before it has read the body (a ``429`` does). uvicorn stops its
  keep-alive timer when the rest of that body arrives and never starts it
  again, so the connection would stay open until the client closed it.
  Here the timer keeps running through such bytes.

It also keeps llhttp's upgrade handling from desynchronising the
connection. For a request with ``Connection: upgrade`` and an ``Upgrade``
field, or with the CONNECT method, llhttp (as httptools 0.9 drives it)
ends the request at its head and skips any body it declares. It then
parses the bytes after the head as the next request, and uvicorn drops
the rest of that read. ``sendarix serve`` upgrades to no other protocol,
so such a request with a body gets a plain-text ``400``. One without a
body gets its response as usual, and the connection is closed after it.

Last, it writes each response in one piece. uvicorn writes a response's
head and its body separately, and the event loop sends each write at
once, so a small response took two ``send`` calls and reached the client
in two segments. ``_CoalescingTransport`` keeps a write back until the
next one, so a response's head and body go out in one call.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import (
    HttpToolsProtocol,
    RequestResponseCycle,
)

from sendarix_backends.randomness import random_bytes
from sendarix_core.errors import FieldError, ValidationError
from sendarix_http.errors import error_body
from sendarix_http.limits import MAX_HEADER_BLOCK_BYTES

__all__ = ["REQUEST_HEAD_TIMEOUT", "GuardedHttpProtocol"]

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


_UPGRADE_WITH_BODY_MESSAGE = (
    "a request with an Upgrade header field can't have a body here; "
    "send it without the Upgrade and Connection: upgrade fields"
)


def _too_large_body(limit: int) -> bytes:
    message = (
        f"the request line and header fields are over {limit} bytes; send at "
        f"most {limit} bytes before the body"
    )
    error = ValidationError([FieldError("http_headers", "too_long", message)])
    return orjson.dumps(error_body(error))


class GuardedHttpProtocol(HttpToolsProtocol):
    """HttpToolsProtocol that closes connections whose request head is too
    slow or too large, or whose chunked body's trailer section is too large."""

    head_timeout = REQUEST_HEAD_TIMEOUT
    max_head_bytes = MAX_HEADER_BLOCK_BYTES
    _head_timer: asyncio.TimerHandle | None = None
    # Between requests, and while a request's head is coming in.
    _awaiting_head = True
    # Bytes read since the last request ended. Those that followed the end
    # in the same read belong to the next request but are not counted, so
    # the limit may be passed by up to one read before it is noticed.
    _head_bytes = 0
    # Bytes read during a request's body since httptools last passed on body
    # data or ended a chunk. Trailer fields, chunk sizes and chunk
    # extensions count here.
    _bytes_without_body_data = 0
    # Set when an upgrade request with a body got its 400.
    _upgrade_rejected = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        # Everything this protocol and its requests write goes through the
        # one wrapper, so writes keep their order.
        super().connection_made(_CoalescingTransport(transport, self.loop))
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        cycle = self.cycle
        idle_timer = None
        if not self._awaiting_head:
            self._bytes_without_body_data += len(data)
            if cycle is not None and cycle.response_complete:
                # The rest of the body of a request already answered, a 429
                # sent before the body was read for example. uvicorn stops
                # its keep-alive timer for any bytes and starts it again
                # only when a response completes, so without this the
                # connection would stay open for as long as the client likes.
                idle_timer, self.timeout_keep_alive_task = (
                    self.timeout_keep_alive_task,
                    None,
                )
        else:
            self._head_bytes += len(data)
            if self._head_timer is None:
                # Any byte between requests stops uvicorn's keep-alive
                # timer, even the empty lines that llhttp skips without
                # starting a request, so the head deadline starts here.
                self._arm_head_timer()
        super().data_received(data)
        if idle_timer is not None:
            self._keep_idle_timer(idle_timer, cycle)
        if self.transport.is_closing():
            return
        if self._awaiting_head:
            if self._head_bytes > self.max_head_bytes:
                self._reject_large_head()
        elif self._bytes_without_body_data > self.max_head_bytes:
            self._reject_large_trailer()

    # Parser callbacks. httptools calls on_message_begin at the first byte
    # of a request, and on_headers_complete once its head has arrived.

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._head_timer is None:
            # A request that starts in the read where the one before it
            # ended. data_received arms the timer for any other.
            self._arm_head_timer()

    def on_headers_complete(self) -> None:
        self._awaiting_head = False
        self._bytes_without_body_data = 0
        self._cancel_head_timer()
        if not self.parser.should_upgrade() or self._should_upgrade():
            super().on_headers_complete()
            return
        # llhttp skips this request's body and takes the bytes after the
        # head for the next request, and uvicorn drops the rest of the read.
        if self._declares_body():
            self._upgrade_rejected = True
            logger.info(
                "upgrade request with a body rejected",
                extra={
                    "action": "upgrade_with_body_rejected",
                    "client": self._client_label(),
                },
            )
            if self._response_pending():
                # A response now would land inside that one.
                self.transport.close()
            else:
                self.send_400_response(_UPGRADE_WITH_BODY_MESSAGE)
            return
        super().on_headers_complete()
        self.cycle.keep_alive = False

    def on_message_complete(self) -> None:
        self._awaiting_head = True
        self._head_bytes = 0
        if self._upgrade_rejected:
            # No cycle was started for the request.
            return
        super().on_message_complete()

    def on_body(self, body: bytes) -> None:
        self._bytes_without_body_data = 0
        super().on_body(body)

    def on_chunk_complete(self) -> None:
        self._bytes_without_body_data = 0

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self._head_timer is not None:
            # The next request has begun, so the connection is not idle and
            # the head deadline, not uvicorn's keep-alive timer, applies.
            self._unset_keepalive_if_required()

    def _keep_idle_timer(
        self, timer: asyncio.TimerHandle, cycle: RequestResponseCycle | None
    ) -> None:
        """Restore the keep-alive timer that ``data_received`` held back,
        unless the bytes it read began another request."""
        if (
            self.cycle is cycle
            and self._head_timer is None
            and self.timeout_keep_alive_task is None
            and not self.transport.is_closing()
        ):
            self.timeout_keep_alive_task = timer
        else:
            timer.cancel()

    def _declares_body(self) -> bool:
        for name, value in self.headers:
            if name == b"transfer-encoding":
                return True
            if name == b"content-length" and value.strip() != b"0":
                return True
        return False

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_timeout, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _response_pending(self) -> bool:
        # A pipelined request's head may come in while the response to the
        # one before it is still being written.
        return self.cycle is not None and not self.cycle.response_complete

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or not self._awaiting_head:
            return
        if self._response_pending():
            # A 408 now would land inside that response; the deadline
            # starts again instead.
            self._arm_head_timer()
            return
        logger.info(
            "request head timed out",
            extra={"action": "request_head_timeout", "client": self._client_label()},
        )
        self.transport.write(_TIMEOUT_RESPONSE)
        self.transport.close()

    def _reject_large_head(self) -> None:
        self._cancel_head_timer()
        logger.info(
            "request head too large",
            extra={
                "action": "request_head_too_large",
                "client": self._client_label(),
                "bytes": self._head_bytes,
            },
        )
        if self._response_pending():
            # A response now would land inside that one.
            self.transport.close()
            return
        body = _too_large_body(self.max_head_bytes)
        request_id = f"req_{random_bytes(12).hex()}"
        self.transport.write(
            b"HTTP/1.1 422 Unprocessable Entity\r\n"
            b"content-type: application/json\r\n"
            b"x-request-id: %s\r\n"
            b"connection: close\r\n"
            b"content-length: %d\r\n\r\n%s" % (request_id.encode(), len(body), body)
        )
        self.transport.close()

    def _reject_large_trailer(self) -> None:
        logger.info(
            "request trailer too large",
            extra={
                "action": "request_trailer_too_large",
                "client": self._client_label(),
                "bytes": self._bytes_without_body_data,
            },
        )
        self.transport.close()

    def _client_label(self) -> str:
        return f"{self.client[0]}:{self.client[1]}" if self.client else "unknown"


# A write this large goes out at once, after the pending write, rather
# than being copied into one buffer with it.
_COALESCE_LIMIT = 64 * 1024


class _CoalescingTransport(asyncio.Transport):
    """Transport wrapper that joins a write with the one that follows it.

    A write waits until the next write, which sends both in one call, as
    uvicorn's write of a response body does with the head before it. A
    write that nothing follows in the same event loop step goes out from a
    ``call_soon`` callback. ``close`` sends a pending write first, and
    ``abort`` drops it.

    The joined write goes out during the step that made it, as uvicorn's
    writes did. When a client half-closes right after its request, the
    transport closes itself, and a response left pending until a later
    step would find it closing and be dropped.
    """

    __slots__ = ("_flush_handle", "_loop", "_pending", "_transport")

    def __init__(
        self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop
    ) -> None:
        super().__init__()
        self._transport = transport
        self._loop = loop
        self._pending: bytes | None = None
        self._flush_handle: asyncio.Handle | None = None

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pending = self._take_pending()
        if len(data) >= _COALESCE_LIMIT:
            if pending is not None:
                self._transport.write(pending)
            self._transport.write(data)
        elif pending is not None:
            self._transport.write(pending + data)
        else:
            self._pending = bytes(data)
            self._flush_handle = self._loop.call_soon(self._flush)

    def writelines(
        self, list_of_data: Iterable[bytes | bytearray | memoryview]
    ) -> None:
        self.write(b"".join(list_of_data))

    def _take_pending(self) -> bytes | None:
        pending, self._pending = self._pending, None
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        return pending

    def _flush(self) -> None:
        pending = self._take_pending()
        if pending is not None and not self._transport.is_closing():
            self._transport.write(pending)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def abort(self) -> None:
        self._take_pending()
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def is_reading(self) -> bool:
        return self._transport.is_reading()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def get_write_buffer_size(self) -> int:
        pending = len(self._pending) if self._pending is not None else 0
        return pending + self._transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(
        self, high: int | None = None, low: int | None = None
    ) -> None:
        self._transport.set_write_buffer_limits(high, low)
