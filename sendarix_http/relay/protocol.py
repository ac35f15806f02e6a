"""One relay session: aiosmtpd's SMTP protocol with the relay's limits.

aiosmtpd 1.4.6 ends DATA only on a line that is exactly ``.<CRLF>`` after
a CRLF: it reads the data in lines up to each CRLF, so ``<LF>.<CRLF>`` or
``<CR>.<CR>`` stays inside the message. The engine then rejects such bare
line breaks, so they can't split the message on a server further along.
"""

from __future__ import annotations

import asyncio
import binascii
import functools
import ipaddress
import logging
import re
from base64 import b64decode, b64encode
from collections.abc import Awaitable, Callable
from typing import Any, AnyStr, cast

from aiosmtpd.smtp import MISSING, SMTP, Session, TLSSetupException, _Missing, syntax

from sendarix_http.relay.auth import client_address
from sendarix_http.relay.handler import ascii_text

__all__ = ["RelaySMTP"]

Command = Callable[[str | None], Awaitable[None]]

logger = logging.getLogger("sendarix.relay")

_NULL_SENDER = re.compile(r"FROM:\s*<>", re.IGNORECASE)
# The AUTH parameter of MAIL (RFC 4954 section 5), with its xtext value.
_AUTH_PARAMETER = re.compile(r"\s+AUTH=\S*", re.IGNORECASE)
# A path of MAIL or RCPT that is <dot-atom@domain>: no quoted local part,
# no domain literal, no source route (RFC 5321 section 4.1.2).
_PLAIN_PATH = re.compile(
    r"<([A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>"
)


class RelaySMTP(SMTP):
    """An SMTP session that allows ``max_commands`` commands.

    AUTH needs TLS unless the session runs on the implicit TLS port, or
    ``allow_plaintext_loopback`` is set and the client is on loopback.
    """

    def __init__(
        self,
        handler: Any,
        *,
        max_commands: int,
        implicit_tls: bool = False,
        allow_plaintext_loopback: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(handler, auth_required=True, auth_require_tls=True, **kwargs)
        self._implicit_tls = implicit_tls
        self._allow_plaintext_loopback = allow_plaintext_loopback
        self._commands_left = max_commands
        # True while the client sends the data after DATA.
        self._receiving_data = False
        # True from the end of the data until the reply to it is written.
        self._storing = False
        # A 421 held back until the reply to the data is sent, so that no
        # client retries a message that was stored.
        self._deferred_close: str | None = None
        self._reply_sent = asyncio.Event()
        self._reply_sent.set()
        # NOTE: _smtp_methods and _auth_require_tls are private to aiosmtpd
        # (checked against 1.4.6); the relay tests cover both uses.
        self._smtp_methods = {
            verb: self._counted(method) for verb, method in self._smtp_methods.items()
        }

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            # Clients and scanners that hang up during the handshake are
            # common, so this is one line with the client, not a traceback.
            logger.warning(
                "relay TLS handshake failed",
                extra={
                    "action": "relay_tls_failed",
                    "client": client_address(self),
                    "error": repr(error.__cause__ or error),
                },
            )
            # aiosmtpd closes the connection without sending this reply.
            return "454 4.7.0 TLS not available due to temporary reason"
        return await super().handle_exception(error)

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        # aiosmtpd replies "malformed address" to "<>"; give the real reason.
        if arg is not None and _NULL_SENDER.match(arg):
            if await self.check_helo_needed() or await self.check_auth_needed("MAIL"):
                return
            await self.push(
                "553 5.1.7 the null sender <> is not accepted; use the address "
                "that should receive bounces"
            )
            return
        await super().smtp_MAIL(_without_auth_parameter(arg))

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        self._receiving_data = True
        try:
            await super().smtp_DATA(arg)
        finally:
            self._receiving_data = False

    def data_received(self, data: bytes) -> None:
        # aiosmtpd 1.4.6 restarts the idle timer only when a command
        # arrives, so a client sending a long message line by line would
        # time out in the middle of it.
        if self._receiving_data and not self._storing:
            self._reset_timeout()
        super().data_received(data)

    async def _call_handler_hook(self, command: str, *args: Any) -> Any:
        if command != "DATA":
            return await super()._call_handler_hook(command, *args)
        # The client waits for the reply now, so it is not idle. A 421
        # during the commit would make it retry a message that may be
        # stored, and deliver it twice.
        self._storing = True
        self._reply_sent.clear()
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
        return await super()._call_handler_hook(command, *args)

    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str):
            status = ascii_text(status)
        if not self._storing:
            await super().push(status)
            return
        # The reply to the data: the idle timer starts again, and a close
        # requested meanwhile follows it.
        self._storing = False
        try:
            self._reset_timeout()
            await super().push(status)
        finally:
            self._reply_sent.set()
        if self._deferred_close is not None:
            self.close_with_reply(self._deferred_close)

    async def challenge_auth(
        self,
        challenge: str | bytes,
        encode_to_b64: bool = True,
        log_client_response: bool = False,
    ) -> _Missing | bytes:
        """Send ``334 challenge`` and return the client's decoded response.

        aiosmtpd 1.4.6 reads the response with ``StreamReader.readline``,
        which raises on a line over the reader's limit and leaves the rest
        of the line to be read as the next command. This reads past such a
        line and replies 500 instead. ``log_client_response`` is ignored,
        because the response contains the credential.
        """
        if isinstance(challenge, str):
            challenge = challenge.encode()
        await self.push(
            b"334 " + (b64encode(challenge) if encode_to_b64 else challenge)
        )
        line = await self._read_line()
        if line is None:
            await self.push(
                f"500 5.5.6 the AUTH response is longer than {self.line_length_limit} "
                "octets; send a shorter one"
            )
            return MISSING
        blob = line.strip()
        if blob == b"*":
            await self.push("501 5.7.0 AUTH cancelled by the client")
            return MISSING
        try:
            return b64decode(blob, validate=True)
        except binascii.Error:
            await self.push("501 5.5.2 the AUTH response is not valid base64")
            return MISSING

    async def _read_line(self) -> bytes | None:
        """Read one line, or read past it and return None if it is longer
        than ``line_length_limit`` octets with its line ending."""
        try:
            line = await self._reader.readuntil()
        except asyncio.LimitOverrunError as error:
            await self._reader.read(error.consumed)
        else:
            # readuntil raises only when the separator starts after the
            # limit, so it returns lines of up to limit + 1 octets.
            return None if len(line) > self.line_length_limit else line
        while True:
            try:
                await self._reader.readuntil()
            except asyncio.LimitOverrunError as error:
                await self._reader.read(error.consumed)
            else:
                return None

    def close_with_reply(self, reply: str) -> None:
        """Send ``reply``, a 421, and close the connection.

        RFC 5321 sections 3.8 and 4.5.3.2 have a server that ends a session
        on its own send 421 first, so the client knows to retry. While a
        message is being stored, the 421 waits for the reply to its data,
        which shows the client whether the message was stored.
        """
        if self._storing:
            self._deferred_close = reply
            return
        # A stream transport; uvloop's does not subclass asyncio's classes.
        transport = cast(asyncio.Transport | None, self.transport)
        if transport is None or transport.is_closing():
            return
        transport.write(ascii_text(reply).encode("ascii") + b"\r\n")
        transport.close()

    async def wait_reply_sent(self) -> None:
        """Wait until a message being stored has got its reply."""
        await self._reply_sent.wait()

    def _timeout_cb(self) -> None:
        # aiosmtpd 1.4.6 closes an idle session without a reply.
        logger.info(
            "relay session idle for too long; closing it",
            extra={"action": "relay_session_timeout", "client": client_address(self)},
        )
        self.close_with_reply("421 4.4.2 idle for too long; closing the connection")

    @property
    def starttls_available(self) -> bool:
        """Whether STARTTLS may be sent now: TLS is offered and not yet active."""
        session_tls = self.session is not None and self.session.ssl is not None
        return (
            self.tls_context is not None and not self._implicit_tls and not session_tls
        )

    @syntax("STARTTLS", when="starttls_available")
    async def smtp_STARTTLS(self, arg: str) -> None:
        # aiosmtpd 1.4.6 replies 220 to a second STARTTLS and 454 to one on
        # the implicit TLS port. RFC 3207 allows STARTTLS only on a session
        # without TLS, so both get 503, RFC 5321's bad sequence of commands.
        session_tls = self.session is not None and self.session.ssl is not None
        if self._implicit_tls or session_tls:
            await self.push("503 5.5.1 TLS is already active; go on without STARTTLS")
            return
        await super().smtp_STARTTLS(arg)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        # aiosmtpd 1.4.6 reads every MAIL and RCPT path with the email
        # package's header parser, about a sixth of a relay session's CPU
        # time. A plain path, the usual case, is parsed here into the same
        # address and rest; anything else still goes to aiosmtpd.
        match = _PLAIN_PATH.match(arg)
        if match is None:
            return self._getaddr_by_aiosmtpd(arg)
        rest = arg[match.end() :].lstrip(" \t")
        if rest.startswith("("):
            # A comment, which the header parser skips.
            return self._getaddr_by_aiosmtpd(arg)
        address = match.group(1)
        local_part = address.rpartition("@")[0]
        if self.local_part_limit and len(local_part) > self.local_part_limit:
            return None, None
        return address, rest

    def _getaddr_by_aiosmtpd(self, arg: str) -> tuple[str | None, str | None]:
        if arg.lstrip().startswith("<") and ">" not in arg:
            # The header parser reads "<a@b.example" as a@b.example, but
            # RFC 5321 requires the closing bracket.
            return None, None
        try:
            return super()._getaddr(arg)
        except IndexError:
            # The header parser of CPython 3.11 raises IndexError on a bare
            # "a@". Without this the session would reply 451, so the client
            # would retry a path that can never be valid.
            return None, None

    def _create_session(self) -> Session:
        return _RelaySession(self.loop)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # STARTTLS calls this again for the same session.
        is_new = self.transport is None
        super().connection_made(transport)
        if not is_new:
            return
        if self._implicit_tls or (
            self._allow_plaintext_loopback
            and self.session is not None
            and _is_loopback(self.session.peer)
        ):
            self._auth_require_tls = False

    def connection_lost(self, error: Exception | None) -> None:
        self._reply_sent.set()
        super().connection_lost(error)

    def _counted(self, method: Command) -> Command:
        @functools.wraps(method)
        async def counted(arg: str | None) -> None:
            self._commands_left -= 1
            if self._commands_left >= 0:
                await method(arg)
                return
            await self.push("421 4.7.0 too many commands in one session; reconnect")
            if self.transport is not None:
                self.transport.close()

        return counted


class _RelaySession(Session):
    """A session without aiosmtpd's deprecated ``login_data``.

    aiosmtpd 1.4.6 sets it after every successful AUTH and logs a WARNING
    each time; the relay keeps its credential in ``auth_data`` instead.
    """

    @property
    def login_data(self) -> None:
        return None

    @login_data.setter
    def login_data(self, value: object) -> None:
        pass


def _is_loopback(peer: object) -> bool:
    if not isinstance(peer, tuple) or not peer:
        return False
    try:
        return ipaddress.ip_address(peer[0]).is_loopback
    except ValueError:
        return False


def _without_auth_parameter(arg: str | None) -> str | None:
    """Drop the AUTH parameter from the parameters after a MAIL path.

    A server that offers AUTH must accept it (RFC 4954 section 5). It names
    the original submitter for a server that relays on, which Sendarix
    does not do, so the value is not kept. aiosmtpd would reply 555.
    """
    if arg is None:
        return None
    # The path ends at its first ">": the value AUTH=<> contains one too.
    start = arg.find("<")
    end = arg.find(">", start) if start >= 0 else -1
    if end < 0:
        return arg
    return arg[: end + 1] + _AUTH_PARAMETER.sub("", arg[end + 1 :])
