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
from collections import deque
from types import TracebackType

from aiosmtplib import SMTPResponse, SMTPServerDisconnected
from aiosmtplib.errors import SMTPReadTimeoutError, SMTPResponseException
from aiosmtplib.protocol import SMTPProtocol

__all__ = ["ReplyReader"]

# The same limits as aiosmtplib 5's protocol: one line, and one reply
# including its continuation lines.
_MAX_LINE_LENGTH = 8192
_MAX_REPLY_LENGTH = _MAX_LINE_LENGTH * 4
# The code aiosmtplib gives a malformed or oversized reply.
_INVALID_REPLY = -1


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

    async def read(self) -> SMTPResponse:
        """Return the next reply, waiting up to the session's timeout for it.

        Raises ``SMTPServerDisconnected`` when the connection is lost,
        ``SMTPReadTimeoutError`` on a timeout, and ``SMTPResponseException``
        with code -1 for a malformed reply.
        """
        # One deadline for the whole reply, as aiosmtplib's read_response
        # has, so a server that sends it a byte at a time can't stretch it.
        deadline = None
        while not self._replies:
            if self._error is not None:
                raise self._error
            if deadline is None and self._timeout is not None:
                deadline = self._loop.time() + self._timeout
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


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(
            SMTPReadTimeoutError("Timed out waiting for server response")
        )
