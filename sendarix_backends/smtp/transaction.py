"""One mail transaction (MAIL, RCPT, DATA) on an open session.

When the server offers PIPELINING (RFC 2920), MAIL, RCPT and DATA go out in
one write and their replies are read in turn, so a message takes two round
trips instead of four. Each reply is still checked against its own
command, and the first negative one decides the outcome, as without
pipelining.
"""

from __future__ import annotations

import logging
import re
import ssl

import aiosmtplib
from aiosmtplib.email import quote_address

from sendarix_backends.smtp.connection import SmtpConnection
from sendarix_backends.smtp.fence import before_content, before_data
from sendarix_backends.smtp.reader import ReplyReader
from sendarix_backends.smtp.replies import HostFailure, reply_error
from sendarix_core.errors import PermanentDeliveryError, TemporaryDeliveryError
from sendarix_core.model import SmtpReply
from sendarix_core.ports import Envelope
from sendarix_core.retry import parse_enhanced_code

__all__ = ["send_envelope"]

logger = logging.getLogger("sendarix.smtp")

_SERVICE_NOT_AVAILABLE = 421
_RCPT_ACCEPTED = (250, 251)
_START_MAIL_INPUT = 354
_DATA = b"DATA\r\n"
_END_OF_DATA = b".\r\n"
# A dot-atom address: email.utils.parseaddr returns it unchanged and
# aiosmtplib's check accepts it, so it is quoted without either. Non-ASCII
# letters count as atom text, as in RFC 6531.
_ATOM = r"[^\s\x00-\x1f\x7f()<>\[\]:;@\\,.\"]+"
_DOT_ATOM = rf"{_ATOM}(?:\.{_ATOM})*"
_PLAIN_ADDRESS = re.compile(rf"{_DOT_ATOM}@{_DOT_ATOM}")
# The control characters aiosmtplib rejects in a command.
_CONTROL_CHARACTER = re.compile(rb"[\x00-\x1f\x7f]")
_LINE_BREAK = re.compile(rb"(?:\r\n|\n|\r(?!\n))")
_LEADING_DOT = re.compile(rb"(?m)^\.")


async def send_envelope(connection: SmtpConnection, envelope: Envelope) -> SmtpReply:
    """Send one message over ``connection``; return the reply to DATA.

    A negative reply raises ``TemporaryDeliveryError`` or
    ``PermanentDeliveryError`` after RSET has returned the session to a
    reusable state. A lost session, a timeout, or a ``421`` (the server is
    closing the session) raises ``HostFailure``.
    """
    mail_options = _mail_options(connection, envelope)
    encoding = "utf-8" if "SMTPUTF8" in mail_options else "ascii"
    mail = b" ".join(
        [
            b"MAIL FROM:" + _quote(envelope.mail_from, encoding),
            *(option.encode("ascii") for option in mail_options),
        ]
    )
    rcpt = b"RCPT TO:" + _quote(envelope.rcpt_to, encoding)
    pipelined = connection.supports("pipelining")
    if pipelined:
        # DATA goes out together with MAIL and RCPT.
        await before_data()

    connection.clean = False
    connection.transactions += 1
    transaction = _Transaction(connection, envelope)
    refusal = await transaction.run(mail + b"\r\n", rcpt + b"\r\n", pipelined)
    if refusal is not None:
        stage, code, text = refusal
        error = reply_error(
            code,
            text,
            stage=stage,
            mx_host=connection.host,
            recipient=envelope.rcpt_to,
        )
        connection.clean = await connection.reset()
        raise error

    response = transaction.response
    connection.clean = True
    return SmtpReply(
        code=response.code,
        enhanced_code=parse_enhanced_code(response.message),
        text=response.message,
        mx_host=connection.host,
    )


class _Transaction:
    """The commands and replies of one transaction, read through a
    ``ReplyReader`` that takes over the session's transport meanwhile."""

    def __init__(self, connection: SmtpConnection, envelope: Envelope) -> None:
        self._connection = connection
        self._envelope = envelope
        self._reader: ReplyReader
        self.response = aiosmtplib.SMTPResponse(-1, "")

    async def run(
        self, mail: bytes, rcpt: bytes, pipelined: bool
    ) -> tuple[str, int, str] | None:
        """Run the transaction; return the stage, code and text of the first
        negative reply, or None once the message is accepted.

        The aiosmtplib protocol is back on the transport when this returns.
        """
        client = self._connection.client
        try:
            self._reader = ReplyReader(client.protocol, client.timeout)
        except aiosmtplib.SMTPServerDisconnected as exc:
            raise self._lost("MAIL", exc) from exc

        with self._reader:
            refusal = await self._exchange(mail, rcpt, pipelined)
        if self._reader.has_unread_data:
            # Replies to no command sent: the session is out of step.
            self._connection.close()
        return refusal

    async def _exchange(
        self, mail: bytes, rcpt: bytes, pipelined: bool
    ) -> tuple[str, int, str] | None:
        self._write("MAIL", mail + rcpt + _DATA if pipelined else mail)
        response = await self._reply("MAIL")
        if response.code != 250:
            await self._skip_replies(2 if pipelined else 0)
            return ("MAIL", response.code, response.message)

        if not pipelined:
            self._write("RCPT", rcpt)
        response = await self._reply("RCPT")
        if response.code not in _RCPT_ACCEPTED:
            await self._skip_replies(1 if pipelined else 0)
            return ("RCPT", response.code, response.message)

        if not pipelined:
            await before_data()
            self._write("DATA", _DATA)
        response = await self._reply("DATA")
        if response.code != _START_MAIL_INPUT:
            return ("DATA", response.code, response.message)

        try:
            before_content()
        except Exception:
            # The server waits for content and takes no command now; without
            # the final dot it must drop the message.
            self._connection.close()
            raise
        self._write("DATA", _message_content(self._envelope.data))
        refusal = await self._send_content()
        if refusal is not None:
            return refusal
        try:
            response = await self._reply(
                "DATA", wait_seconds=self._connection.data_timeout
            )
        except HostFailure as failure:
            if failure.reply_code is not None:
                # A 421 refuses the message, which another host may take.
                raise
            raise self._outcome_unknown(failure) from failure
        # Any 2yz reply is a positive completion (RFC 5321 section 4.2.1).
        # Taken as a refusal, it would make the retry a second copy.
        if not 200 <= response.code <= 299:
            return ("DATA", response.code, response.message)
        self.response = response
        return None

    async def _send_content(self) -> tuple[str, int, str] | None:
        """Wait until the content written is sent; return an early refusal.

        The reply timeout starts only once the content is out, so a slow
        link no longer times out a message the server goes on receiving.
        A session that fails while content is unsent is reset rather than
        closed: a close would still send the rest, final dot included, and
        the server would take a message this attempt counts as failed.
        """
        reader = self._reader
        try:
            await reader.drain()
        except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
            reader.abort()
            raise self._lost("DATA", exc) from exc
        if not reader.unsent:
            return None
        # A reply while content still waits in the transport refuses it. The
        # session is out of step, so the rest, final dot included, is not
        # sent; what the kernel already took goes out regardless. The reply
        # is already queued, so the reset comes first.
        reader.abort()
        self._connection.close()
        response = await self._reply("DATA")
        if 200 <= response.code <= 299:
            raise self._lost(
                "DATA",
                ConnectionError(f"{response.code} before the end of the content"),
            )
        return ("DATA", response.code, response.message)

    def _write(self, stage: str, data: bytes) -> None:
        try:
            self._reader.write(data)
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise self._lost(stage, exc) from exc

    async def _reply(
        self, stage: str, wait_seconds: float | None = None
    ) -> aiosmtplib.SMTPResponse:
        """Read the reply to ``stage``'s command, within ``wait_seconds`` if
        given, else the session's timeout.

        A malformed reply is returned as code -1, as aiosmtplib reports it,
        and closes the session, which can't be read in step any more.
        """
        connection = self._connection
        try:
            response = await self._reader.read(wait_seconds)
        except aiosmtplib.SMTPResponseException as exc:
            connection.close()
            response = aiosmtplib.SMTPResponse(exc.code, exc.message)
        except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
            raise self._lost(stage, exc) from exc

        logger.debug(
            "%s %s: %d %s", connection.host, stage, response.code, response.message
        )
        if response.code == _SERVICE_NOT_AVAILABLE:
            connection.close()
            raise HostFailure(
                f"[{connection.address}]:{connection.port} closed the session at "
                f"{stage}: {response.code} {response.message}",
                reply_code=response.code,
                reply_text=response.message,
                stage=stage,
            )
        return response

    async def _skip_replies(self, count: int) -> None:
        """Read the replies to pipelined commands after a refused one.

        RFC 2920, section 3.1: a server may accept DATA although no
        recipient was accepted, so a lone dot then ends the empty message.
        A session that fails meanwhile is closed, and the refusal is
        still what the transaction returns.
        """
        try:
            for _ in range(count):
                response = await self._reader.read()
                if response.code == _START_MAIL_INPUT:
                    self._reader.write(_END_OF_DATA)
                    await self._reader.read()
        except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
            logger.debug("%s lost after a refusal: %s", self._connection.host, exc)
            self._connection.close()

    def _outcome_unknown(self, failure: HostFailure) -> TemporaryDeliveryError:
        """Return the deferral for a session lost after the final dot.

        The server may have taken the message, so no other host gets it now.
        The retry sends it again, which can make a duplicate (RFC 1047).
        """
        connection = self._connection
        return TemporaryDeliveryError(
            f"{failure}; the server may have accepted the message before the "
            "session ended, so it is retried later instead of going to "
            "another host now",
            enhanced_code="4.4.2",
            mx_host=connection.host,
            recipient=self._envelope.rcpt_to,
            details={"stage": "DATA"},
        )

    def _lost(self, stage: str, exc: BaseException) -> HostFailure:
        connection = self._connection
        connection.close()
        return HostFailure(
            f"[{connection.address}]:{connection.port} lost the session at "
            f"{stage}: {exc}",
            stage=stage,
        )


def _quote(address: str, encoding: str) -> bytes:
    """Return ``address`` in angle brackets, as aiosmtplib's MAIL and RCPT
    send it.

    Raises ``ValueError`` for an address that can't be put on a command
    line, as aiosmtplib does.
    """
    if _PLAIN_ADDRESS.fullmatch(address):
        return f"<{address}>".encode(encoding)
    quoted = quote_address(address).encode(encoding)
    if _CONTROL_CHARACTER.search(quoted):
        raise ValueError("Command arg contains a prohibited control character")
    return quoted


def _message_content(data: bytes) -> bytes:
    """Return ``data`` as sent after DATA: CRLF line endings, leading dots
    doubled (RFC 5321, section 4.5.2), and the ending dot line."""
    crlf = data.count(b"\r\n")
    if (
        crlf != data.count(b"\n")
        or crlf != data.count(b"\r")
        or not data.endswith(b"\r\n")
    ):
        data = _LINE_BREAK.sub(b"\r\n", data)
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
    if data.startswith(b".") or b"\n." in data:
        data = _LEADING_DOT.sub(b"..", data)
    return data + _END_OF_DATA


def _body_of(data: bytes) -> bytes:
    """Return what follows the header section of a message: the data after
    its first empty line, whichever line ending the message uses."""
    ends = [
        (start, len(separator))
        for separator in (b"\r\n\r\n", b"\n\n")
        if (start := data.find(separator)) != -1
    ]
    if not ends:
        return b""
    start, length = min(ends)
    return data[start + length :]


def _mail_options(connection: SmtpConnection, envelope: Envelope) -> list[str]:
    """Return the MAIL FROM parameters, or raise when the server can't take
    the message at all."""
    options = []
    needs_utf8 = envelope.smtputf8 or not (
        envelope.mail_from.isascii() and envelope.rcpt_to.isascii()
    )
    if needs_utf8:
        if not connection.supports("smtputf8"):
            # RFC 6531, section 3.2: without the extension the message can't
            # be relayed, and downgrading addresses is not possible.
            raise PermanentDeliveryError(
                f"{connection.host} does not support SMTPUTF8, which the "
                f"non-ASCII address of this message requires",
                reply_code=553,
                enhanced_code="5.6.7",
                mx_host=connection.host,
                recipient=envelope.rcpt_to,
                details={"stage": "MAIL"},
            )
        options.append("SMTPUTF8")

    if not envelope.data.isascii():
        if connection.supports("8bitmime"):
            options.append("BODY=8BITMIME")
        elif not needs_utf8 and not _body_of(envelope.data).isascii():
            # RFC 6152, section 3: an 8-bit body must be converted or
            # returned. Converting would break its DKIM signatures.
            raise PermanentDeliveryError(
                f"{connection.host} does not support 8BITMIME, which the 8-bit "
                "body of this message requires; send the body as "
                "quoted-printable or base64",
                reply_code=554,
                enhanced_code="5.6.3",
                mx_host=connection.host,
                recipient=envelope.rcpt_to,
                details={"stage": "MAIL"},
            )

    if connection.supports("size"):
        _check_size(connection, envelope)
        options.append(f"SIZE={len(envelope.data)}")
    return options


def _check_size(connection: SmtpConnection, envelope: Envelope) -> None:
    limit = connection.extension_parameter("size").strip()
    if not limit.isdigit() or int(limit) == 0:
        return
    if len(envelope.data) > int(limit):
        raise PermanentDeliveryError(
            f"the message is {len(envelope.data)} bytes, more than the "
            f"{limit} bytes {connection.host} accepts",
            reply_code=552,
            enhanced_code="5.3.4",
            mx_host=connection.host,
            recipient=envelope.rcpt_to,
            details={"stage": "MAIL"},
        )
