"""One mail transaction (MAIL, RCPT, DATA) on an open session."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable

import aiosmtplib

from sendarix_backends.smtp.connection import SmtpConnection
from sendarix_backends.smtp.fence import before_data
from sendarix_backends.smtp.replies import HostFailure, reply_error
from sendarix_core.errors import PermanentDeliveryError
from sendarix_core.model import SmtpReply
from sendarix_core.ports import Envelope
from sendarix_core.retry import parse_enhanced_code

__all__ = ["send_envelope"]

logger = logging.getLogger("sendarix.smtp")

_SERVICE_NOT_AVAILABLE = 421


async def send_envelope(connection: SmtpConnection, envelope: Envelope) -> SmtpReply:
    """Send one message over ``connection``; return the reply to DATA.

    A negative reply raises ``TemporaryDeliveryError`` or
    ``PermanentDeliveryError`` after RSET has returned the session to a
    reusable state. A lost session, a timeout, or a ``421`` (the server is
    closing the session) raises ``HostFailure``.
    """
    mail_options = _mail_options(connection, envelope)
    encoding = "utf-8" if "SMTPUTF8" in mail_options else "ascii"
    client = connection.client

    connection.clean = False
    connection.transactions += 1
    await _step(
        connection,
        envelope,
        "MAIL",
        client.mail(envelope.mail_from, options=mail_options, encoding=encoding),
    )
    await _step(
        connection,
        envelope,
        "RCPT",
        client.rcpt(envelope.rcpt_to, encoding=encoding),
    )
    await before_data()
    response = await _step(connection, envelope, "DATA", client.data(envelope.data))
    connection.clean = True

    return SmtpReply(
        code=response.code,
        enhanced_code=parse_enhanced_code(response.message),
        text=response.message,
        mx_host=connection.host,
    )


async def _step(
    connection: SmtpConnection,
    envelope: Envelope,
    stage: str,
    command: Awaitable[aiosmtplib.SMTPResponse],
) -> aiosmtplib.SMTPResponse:
    try:
        response = await command
    except aiosmtplib.SMTPResponseException as exc:
        logger.debug("%s %s: %d %s", connection.host, stage, exc.code, exc.message)
        if exc.code == _SERVICE_NOT_AVAILABLE:
            connection.close()
            raise HostFailure(
                f"[{connection.address}]:{connection.port} closed the session at "
                f"{stage}: {exc.code} {exc.message}",
                reply_code=exc.code,
                reply_text=exc.message,
                stage=stage,
            ) from exc
        error = reply_error(
            exc.code,
            exc.message,
            stage=stage,
            mx_host=connection.host,
            recipient=envelope.rcpt_to,
        )
        connection.clean = await connection.reset()
        raise error from exc
    except (aiosmtplib.SMTPException, ssl.SSLError, OSError) as exc:
        connection.close()
        raise HostFailure(
            f"[{connection.address}]:{connection.port} lost the session at "
            f"{stage}: {exc}",
            stage=stage,
        ) from exc

    logger.debug(
        "%s %s: %d %s", connection.host, stage, response.code, response.message
    )
    return response


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

    if not envelope.data.isascii() and connection.supports("8bitmime"):
        options.append("BODY=8BITMIME")

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
