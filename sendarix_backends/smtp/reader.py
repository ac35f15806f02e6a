"""Reading several SMTP replies in a row, for pipelined commands.

aiosmtplib's protocol (version 5) reads one reply per command and drops
bytes that arrive while a parsed reply waits to be picked up, so the
replies to commands written together (RFC 2920 PIPELINING) can't be read
through it.
``ReplyReader`` takes the transport's place for the length of one mail
transaction: it queues every complete reply it receives, and hands the
transport back to aiosmtplib's protocol when the transaction ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import socket
import struct
import termios
from collections import deque
from types import TracebackType

from aiosmtplib import SMTPResponse, SMTPServerDisconnected
from aiosmtplib.errors import (
    SMTPReadTimeoutError,
    SMTPResponseException,
    SMTPTimeoutError,
)
from aiosmtplib.protocol import SMTPProtocol

__all__ = ["ReplyReader"]

# The same limits as aiosmtplib 5's protocol: one line, and one reply
# including its continuation lines.
_MAX_LINE_LENGTH = 8192
_MAX_REPLY_LENGTH = _MAX_LINE_LENGTH * 4
# The code aiosmtplib gives a malformed or oversized reply.
_INVALID_REPLY = -1
# How often ``drain`` looks at the write buffer while content is sent.
_DRAIN_POLL_SECONDS = 0.05


class ReplyReader(asyncio.Protocol):
    """The protocol of a session's transport while a transaction runs.

    Use it as a context manager around the transaction: entering installs
    it on the transport, leaving reinstalls aiosmtplib's protocol. A lost
    connection is passed on to aiosmtplib's protocol as well, so the client
    sees the session as closed afterwards.
    """

    def __init__(self, protocol: SMTPProtocol | None, timeout: float | None) -> None:
        transport = protocol.transport if protocol is not None else None
        if protocol is None or transport is None or transport.is_closing():
            raise SMTPServerDisconnected("Connection lost")
        self._protocol = protocol
        self._transport: asyncio.Transport = transport  # type: ignore[assignment]
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._buffer = bytearray()
        self._replies: deque[SMTPResponse] = deque()
        self._error: SMTPResponseException | SMTPServerDisconnected | None = None
        self._waiter: asyncio.Future[None] | None = None

    def __enter__(self) -> ReplyReader:
        self._transport.set_protocol(self)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._transport.set_protocol(self._protocol)

    @property
    def has_unread_data(self) -> bool:
        """Whether bytes arrived that no ``read`` has consumed."""
        return bool(self._replies or self._buffer)

    def write(self, data: bytes) -> None:
        if self._error is not None or self._transport.is_closing():
            raise SMTPServerDisconnected("Connection lost")
        self._transport.write(data)

    async def drain(self) -> None:
        """Wait until the server's host has received every written byte.

        Content that the kernel took at once is not waited for: that is
        every message smaller than the socket's send buffer. Otherwise this
        waits until the transport's buffer and the kernel's send queue are
        empty, so the reply timeout that follows covers the server's work,
        not the transfer. Returns early when a reply arrives first, which a
        server sends when it refuses the content before its end. ``unsent``
        is then true if part of the content was not sent. Raises
        ``SMTPTimeoutError`` when no byte went out for the session's
        timeout, and ``SMTPServerDisconnected`` when the connection is lost.
        """
        transport = self._transport
        if not transport.get_write_buffer_size():
            return
        sock = transport.get_extra_info("socket")
        remaining = transport.get_write_buffer_size() + _queued_in_kernel(sock)
        deadline = None if self._timeout is None else self._loop.time() + self._timeout
        while remaining and not self._replies:
            if self._error is not None:
                raise self._error
            if deadline is not None and self._loop.time() >= deadline:
                raise SMTPTimeoutError(
                    f"no data was sent for {self._timeout:g} s; the server stopped "
                    "reading the message content"
                )
            # Polled, because asyncio reports only the crossing of the write
            # buffer's water marks, and the kernel reports nothing.
            await asyncio.sleep(_DRAIN_POLL_SECONDS)
            now_remaining = transport.get_write_buffer_size() + _queued_in_kernel(sock)
            if now_remaining < remaining and self._timeout is not None:
                deadline = self._loop.time() + self._timeout
            remaining = now_remaining

    @property
    def unsent(self) -> bool:
        """Whether written bytes still wait in the transport's buffer."""
        return bool(self._transport.get_write_buffer_size())

    def abort(self) -> None:
        """Close the connection at once, discarding data not yet sent.

        A reset (``SO_LINGER`` of zero) also drops what the kernel still
        holds, so a message content cut off here never ends with its final
        dot at the server, which must then discard the transaction.
        """
        sock = self._transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
        self._transport.abort()

    async def read(self, wait_seconds: float | None = None) -> SMTPResponse:
        """Return the next reply, waiting up to ``wait_seconds`` for it, the
        session's timeout by default.

        Raises ``SMTPServerDisconnected`` when the connection is lost,
        ``SMTPReadTimeoutError`` on a timeout, and ``SMTPResponseException``
        with code -1 for a malformed reply.
        """
        # One deadline for the whole reply, as aiosmtplib's read_response
        # has, so a server that sends it a byte at a time can't stretch it.
        deadline = None
        timeout = self._timeout if wait_seconds is None else wait_seconds
        while not self._replies:
            if self._error is not None:
                raise self._error
            if deadline is None and timeout is not None:
                deadline = self._loop.time() + timeout
            await self._wait(deadline)
        return self._replies.popleft()

    async def _wait(self, deadline: float | None) -> None:
        waiter = self._waiter = self._loop.create_future()
        timer = None
        if deadline is not None:
            timer = self._loop.call_at(deadline, _time_out, waiter)
        try:
            await waiter
        finally:
            self._waiter = None
            if timer is not None:
                timer.cancel()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # asyncio.Protocol

    def data_received(self, data: bytes) -> None:
        if self._error is not None:
            return
        self._buffer += data
        try:
            self._parse_replies()
        except SMTPResponseException as exc:
            self._error = exc
        self._wake()

    def eof_received(self) -> bool:
        if self._error is None:
            self._error = SMTPServerDisconnected("Unexpected EOF received")
        self._wake()
        # False closes the transport, which then calls connection_lost.
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._error is None:
            error = SMTPServerDisconnected("Connection lost")
            error.__cause__ = exc
            self._error = error
        self._wake()
        self._protocol.connection_lost(exc)

    def pause_writing(self) -> None:
        self._protocol.pause_writing()

    def resume_writing(self) -> None:
        self._protocol.resume_writing()

    def _parse_replies(self) -> None:
        """Move every complete reply from the buffer to the queue.

        The parsing matches aiosmtplib's: the text of each line after the
        code and separator, stripped, joined with newlines.
        """
        buffer = self._buffer
        start = 0
        lines: list[bytes] = []
        while True:
            end = buffer.find(b"\n", start)
            if end == -1:
                break
            line = bytes(buffer[start : end + 1])
            if len(line) > _MAX_LINE_LENGTH:
                raise SMTPResponseException(_INVALID_REPLY, "Response too long")
            try:
                code = int(line[:3])
            except ValueError:
                text = line.decode("utf-8", errors="ignore")
                raise SMTPResponseException(
                    _INVALID_REPLY, f"Malformed SMTP response line: {text}"
                ) from None
            start = end + 1
            lines.append(line[4:].strip(b" \t\r\n"))
            if line[3:4] != b"-":
                # The buffer starts at this reply, so start is its length with
                # the continuation lines.
                if start > _MAX_REPLY_LENGTH:
                    raise SMTPResponseException(_INVALID_REPLY, "Response too long")
                text = b"\n".join(lines).decode("utf-8", "surrogateescape")
                self._replies.append(SMTPResponse(code, text))
                lines = []
                del buffer[:start]
                start = 0
        if len(buffer) > _MAX_REPLY_LENGTH:
            raise SMTPResponseException(_INVALID_REPLY, "Response too long")


def _queued_in_kernel(sock: socket.socket | None) -> int:
    """Return the bytes the kernel has not sent or the peer not acknowledged.

    Linux reports the send queue with ``TIOCOUTQ`` (``SIOCOUTQ`` in tcp(7));
    where the call fails, 0 is returned and only the transport's buffer is
    waited for.
    """
    if sock is None:
        return 0
    try:
        queued = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except (OSError, ValueError):
        return 0
    return int(struct.unpack("i", queued)[0])


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(
            SMTPReadTimeoutError("Timed out waiting for server response")
        )
