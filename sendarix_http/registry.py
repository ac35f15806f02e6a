"""Route declarations that both the router and the OpenAPI document read.

Each endpoint is one ``Operation``: method, path, handler, the scope a key
needs, the request schema and the documented responses. ``create_app``
routes requests with ``build_routes`` and ``sendarix_http.openapi``
describes the same objects, so the two can't disagree on what exists, which
scope it needs or which errors it may return. A resource module exports its
list as ``operations``; app.py adds that list to ``OPERATIONS`` in one line.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, Literal

import attrs
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Send
from starlette.types import Scope as ASGIScope

from sendarix_core.addresses import quote_value
from sendarix_core.errors import FieldError, ValidationError
from sendarix_core.header_checks import IDEMPOTENCY_KEY_PATTERN
from sendarix_core.keys import Scope
from sendarix_http.http_io import authorize
from sendarix_http.limits import check_request_headers, request_line_bytes

__all__ = [
    "IDEMPOTENCY_KEY_PARAMETER",
    "Endpoint",
    "Operation",
    "Parameter",
    "Reply",
    "build_routes",
    "check_query",
    "operation",
]

Endpoint = Callable[[Request], Awaitable[Response]]
Schema = Mapping[str, Any]


@attrs.frozen(kw_only=True)
class Parameter:
    """A path, query or header parameter.

    A query parameter named ``prefix[KEY]`` stands for every name of that
    form. ``repeated`` allows a query parameter more than once.
    """

    name: str
    location: Literal["path", "query", "header"]
    description: str
    schema: Schema = attrs.field(factory=lambda: {"type": "string"})
    required: bool = False
    repeated: bool = False


IDEMPOTENCY_KEY_PARAMETER = Parameter(
    name="Idempotency-Key",
    location="header",
    description="within 24 hours, a retry with this key returns the first "
    "response; another body with it is 409",
    schema={"type": "string", "pattern": f"^{IDEMPOTENCY_KEY_PATTERN.pattern}$"},
)


@attrs.frozen(kw_only=True)
class Reply:
    """A documented success response.

    ``headers`` names response headers beyond the ones every response has
    (entries of ``components.headers`` in the OpenAPI document).
    """

    status: int
    description: str
    schema: Schema | None = None
    example: Any = None
    headers: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class Operation:
    """One endpoint: what the router dispatches and the document describes.

    ``scope`` None means no key is needed. ``errors`` lists error statuses
    beyond those that follow from the declaration (see
    ``error_statuses``), such as ``404`` for an unknown id or ``409``.
    """

    method: str
    path: str
    endpoint: Endpoint
    operation_id: str
    summary: str
    tag: str
    scope: Scope | None
    replies: tuple[Reply, ...]
    description: str = ""
    parameters: tuple[Parameter, ...] = ()
    request_schema: Schema | None = None
    request_required: bool = True
    """False when the handler also accepts a request without a body."""
    request_example: Any = None
    errors: tuple[int, ...] = ()

    async def handle(self, request: Request) -> Response:
        """Check the header limits and the key, then run the handler.

        The handler may still call ``authorize`` itself to get the key; that
        call reuses the key authorized here.
        """
        request_scope = request.scope
        request_line = request_line_bytes(
            request_scope["method"],
            request_scope.get("raw_path") or request_scope["path"].encode("utf-8"),
            request_scope["query_string"],
        )
        check_request_headers(request_scope["headers"], request_line)
        if self.scope is not None:
            await authorize(request, self.scope)
        if request.scope["query_string"]:
            check_query(request, self.parameters)
        check_nul_characters(request)
        return await self.endpoint(request)

    def error_statuses(self) -> list[int]:
        """Return every error status this endpoint may respond with, sorted.

        Any request may get ``422`` (header limits) and ``500``; a path
        parameter brings ``404``; a key ``401``, ``403``, ``429`` and ``503``
        (the database); a JSON body ``400``, ``408``, ``413`` and ``415``.
        """
        statuses = {422, 500, *self.errors}
        if "{" in self.path:
            statuses.add(404)
        if self.scope is not None:
            statuses |= {401, 403, 429, 503}
        if self.request_schema is not None:
            statuses |= {400, 408, 413, 415}
        return sorted(statuses)


def check_query(request: Request, parameters: Iterable[Parameter]) -> None:
    """Raise ValidationError for a query parameter that ``parameters`` do not
    declare, or one given twice that is not ``repeated``.

    An ignored parameter would change what a request does without a word:
    ``?stauts=bounced`` would list every message.
    """
    declared = {p.name: p for p in parameters if p.location == "query"}
    # A family such as metadata[KEY] takes each key once, like a parameter.
    families = {
        name.removesuffix("[KEY]") + "[": parameter
        for name, parameter in declared.items()
        if name.endswith("[KEY]")
    }
    counts = Counter(name for name, _ in request.query_params.multi_items())
    errors = []
    for name, count in counts.items():
        known = declared.get(name)
        if known is None and families:
            known = _family_of(name, families)
        if known is None:
            listed = ", ".join(sorted(declared)) or "none"
            message = (
                f"the query parameter {quote_value(name)} is unknown here; "
                f"this endpoint takes {listed}"
            )
            errors.append(FieldError(name, "unknown_parameter", message))
        elif count > 1 and not known.repeated:
            message = (
                f"the query parameter {quote_value(name)} is given {count} "
                "times; give it once"
            )
            errors.append(FieldError(name, "repeated_parameter", message))
    if errors:
        raise ValidationError(errors)


def _family_of(name: str, families: Mapping[str, Parameter]) -> Parameter | None:
    for prefix, parameter in families.items():
        if name.startswith(prefix):
            return parameter
    return None


def check_nul_characters(request: Request) -> None:
    """Raise ValidationError for a path or query value that contains U+0000.

    No id, address or name that Sendarix stores contains it, and PostgreSQL
    rejects it in text, so a lookup would fail as a database error.
    """
    errors = [
        _nul_error("path parameter", name, value)
        for name, value in request.path_params.items()
        if "\x00" in value
    ]
    if request.scope["query_string"]:
        errors.extend(
            _nul_error("query parameter", name, f"{name}={value}")
            for name, value in request.query_params.multi_items()
            if "\x00" in name or "\x00" in value
        )
    if errors:
        raise ValidationError(errors)


def _nul_error(kind: str, name: str, text: str) -> FieldError:
    return FieldError(
        name,
        "invalid_character",
        f"the {kind} {quote_value(text)} contains the NUL character U+0000 "
        f"at index {text.index(chr(0))}; remove it",
    )


def build_routes(operations: Iterable[Operation]) -> list[Route]:
    """Return one route per path, dispatching on the method.

    One route per path makes a ``405`` list every method of the path in
    ``Allow``. Paths without parameters come first, so
    ``/v1/messages/batch`` is not taken for a message id.
    """
    by_path: dict[str, dict[str, Operation]] = {}
    for declared in operations:
        methods = by_path.setdefault(declared.path, {})
        if declared.method in methods:
            raise ValueError(f"{declared.method} {declared.path} is declared twice")
        methods[declared.method] = declared
    ordered = sorted(by_path, key=lambda path: "{" in path)
    return [_route(path, by_path[path]) for path in ordered]


def _route(path: str, methods: Mapping[str, Operation]) -> Route:
    return Route(_with_converters(path), _Dispatch(methods), methods=list(methods))


class _Dispatch:
    """The ASGI app of one path, which runs the operation of the request's method.

    Being an ASGI app rather than a request function, it skips the exception
    wrapper Starlette puts around each request function. Exceptions reach
    the app's ``ExceptionMiddleware``, which runs the same handlers.
    """

    def __init__(self, methods: Mapping[str, Operation]) -> None:
        self._methods = methods

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive, send)
        method = "GET" if request.method == "HEAD" else request.method
        response = await self._methods[method].handle(request)
        await response(scope, receive, send)


# Path parameters that may contain "/": an address's local part may.
_PATH_CONVERTERS = {"{recipient}": "{recipient:path}"}


def _with_converters(path: str) -> str:
    for plain, converted in _PATH_CONVERTERS.items():
        path = path.replace(plain, converted)
    return path


def operation(
    method: str,
    path: str,
    endpoint: Endpoint,
    *,
    summary: str,
    tag: str,
    scope: Scope | None,
    replies: tuple[Reply, ...] | Reply,
    **details: Any,
) -> Operation:
    """Declare an endpoint; ``operation_id`` defaults to the handler's name."""
    details.setdefault("operation_id", endpoint.__name__)
    return Operation(
        method=method,
        path=path,
        endpoint=endpoint,
        summary=summary,
        tag=tag,
        scope=scope,
        replies=replies if isinstance(replies, tuple) else (replies,),
        **details,
    )
