"""``/u/{token}``: the one-click unsubscribe links in List-Unsubscribe.

A mailbox provider POSTs ``List-Unsubscribe=One-Click`` to the link
(RFC 8058); that suppresses the recipient and records
``recipient.unsubscribed``. A POST without that form field is a ``400``,
so a stray POST to the link unsubscribes nobody. A GET, as from a person
opening the link or a link scanner, only shows a page whose form sends the
field, so prefetching a link never unsubscribes anyone.
"""

from __future__ import annotations

import email.parser
import email.policy
import urllib.parse

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from sendarix_backends.unsubscribe import split_token
from sendarix_core.addresses import quote_value
from sendarix_core.checks import ErrorCode
from sendarix_core.errors import FieldError, NotFoundError
from sendarix_core.model import Message
from sendarix_http.errors import HttpError
from sendarix_http.http_io import engine_of, read_body
from sendarix_http.registry import Parameter, Reply, operation

__all__ = ["operations"]

_CONFIRM_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Unsubscribe</title></head>
<body><form method="post" enctype="application/x-www-form-urlencoded">
<input type="hidden" name="List-Unsubscribe" value="One-Click">
<p>Stop receiving these emails?</p>
<button type="submit">Unsubscribe</button>
</form></body></html>
"""
_DONE_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Unsubscribed</title></head>
<body><p>You are unsubscribed and will receive no more of these emails.</p></body>
</html>
"""


async def _message_of(request: Request) -> Message:
    """Return the message a valid token names; 404 for any invalid token."""
    token = request.path_params["token"]
    engine = engine_of(request)
    parts = split_token(token)
    message = await engine.store.get_message(parts[0]) if parts else None
    links = engine.content.unsubscribe_links
    if message is None or not await links.is_valid(token, message.recipient.email):
        raise NotFoundError("unsubscribe_link", token)
    return message


_FIELD = "List-Unsubscribe"
_ONE_CLICK = "One-Click"
_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


async def _check_one_click_body(request: Request) -> None:
    """Raise a ``400`` unless the body is the form ``List-Unsubscribe=One-Click``.

    A body without ``Content-Type`` is read as URL-encoded.
    """
    content_type = request.headers.get("content-type", _FORM_TYPES[0])
    media_type = content_type.split(";")[0].strip().lower()
    body = await read_body(request)
    if media_type == _FORM_TYPES[0]:
        values = _urlencoded_values(body)
    elif media_type == _FORM_TYPES[1]:
        values = _multipart_values(content_type, body)
    else:
        raise _one_click_missing(
            f"got Content-Type {quote_value(content_type)}; send the field as "
            f"{' or '.join(_FORM_TYPES)}"
        )
    if _ONE_CLICK not in values:
        got = ", ".join(quote_value(value) for value in values[:3]) or "none"
        raise _one_click_missing(f"got {_FIELD} values: {got}")


def _urlencoded_values(body: bytes) -> list[str]:
    text = body.decode("utf-8", errors="replace")
    pairs = urllib.parse.parse_qsl(text, keep_blank_values=True)
    return [value for name, value in pairs if name == _FIELD]


def _multipart_values(content_type: str, body: bytes) -> list[str]:
    # The email package parses multipart/form-data (RFC 7578 builds on MIME),
    # which spares a dependency for one field.
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    parser = email.parser.BytesParser(policy=email.policy.HTTP)
    form = parser.parsebytes(head + body)
    if not form.is_multipart():
        return []
    values = []
    for part in form.iter_parts():
        if part.get_param("name", header="content-disposition") == _FIELD:
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes):
                values.append(payload.decode("utf-8", errors="replace").strip())
    return values


def _one_click_missing(detail: str) -> HttpError:
    message = (
        f"a one-click unsubscribe POST needs the form field "
        f"{_FIELD}={_ONE_CLICK} (RFC 8058); {detail}"
    )
    return HttpError(
        400,
        "invalid_body",
        message,
        errors=(FieldError(_FIELD, ErrorCode.MISSING_FIELD, message),),
    )


async def unsubscribe_one_click(request: Request) -> Response:
    message = await _message_of(request)
    await _check_one_click_body(request)
    await engine_of(request).unsubscribe(message.recipient.email, message_id=message.id)
    return HTMLResponse(_DONE_PAGE)


async def show_unsubscribe_page(request: Request) -> Response:
    await _message_of(request)
    return HTMLResponse(_CONFIRM_PAGE)


_TOKEN = Parameter(
    name="token",
    location="path",
    description="the signed token from the List-Unsubscribe link",
    required=True,
)

operations = [
    operation(
        "POST",
        "/u/{token}",
        unsubscribe_one_click,
        summary="Unsubscribe with one click (RFC 8058)",
        description="Suppresses the message's recipient with reason "
        "user_unsubscribed and records recipient.unsubscribed. The body is the "
        "form field List-Unsubscribe=One-Click, URL-encoded (also when "
        "Content-Type is missing) or as multipart/form-data; without it the "
        "response is 400 invalid_body. Needs no key: the token is signed. "
        "Repeating it changes nothing.",
        tag="unsubscribe",
        scope=None,
        parameters=(_TOKEN,),
        replies=Reply(status=200, description="an HTML confirmation page"),
        errors=(400, 408, 413),
    ),
    operation(
        "GET",
        "/u/{token}",
        show_unsubscribe_page,
        summary="Show the unsubscribe button",
        description="Unsubscribes nobody, so link scanners that open the "
        "link have no effect.",
        tag="unsubscribe",
        scope=None,
        parameters=(_TOKEN,),
        replies=Reply(status=200, description="an HTML page with the button"),
    ),
]
