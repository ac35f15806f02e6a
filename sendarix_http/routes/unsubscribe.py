"""``/u/{token}``: the one-click unsubscribe links in List-Unsubscribe.

A mailbox provider POSTs ``List-Unsubscribe=One-Click`` to the link
(RFC 8058); that suppresses the recipient and records
``recipient.unsubscribed``. A GET, as from a person opening the link or a
link scanner, only shows a page with a button that sends the POST, so
prefetching a link never unsubscribes anyone.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response

from sendarix_backends.unsubscribe import split_token
from sendarix_core.errors import NotFoundError
from sendarix_core.model import Message
from sendarix_http.http_io import engine_of
from sendarix_http.registry import Parameter, Reply, operation

__all__ = ["operations"]

_CONFIRM_PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>Unsubscribe</title></head>
<body><form method="post">
<p>Stop receiving these emails?</p>
<button type="submit" name="List-Unsubscribe" value="One-Click">Unsubscribe</button>
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


async def unsubscribe_one_click(request: Request) -> Response:
    message = await _message_of(request)
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
        "user_unsubscribed and records recipient.unsubscribed. Needs no key: "
        "the token is signed. Repeating it changes nothing.",
        tag="unsubscribe",
        scope=None,
        parameters=(_TOKEN,),
        replies=Reply(status=200, description="an HTML confirmation page"),
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
