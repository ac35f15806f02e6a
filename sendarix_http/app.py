"""The ASGI application of the v1 HTTP API."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, cast

import anyio
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sendarix_backends.engine import Engine
from sendarix_backends.randomness import random_bytes
from sendarix_core.errors import SendarixError
from sendarix_core.ratelimit import RateLimitDecision
from sendarix_http import openapi
from sendarix_http.errors import HttpError, error_body, status_and_code
from sendarix_http.http_io import AnonymousLimiter, JsonResponse
from sendarix_http.registry import Operation, build_routes
from sendarix_http.routes import (
    analytics,
    api_keys,
    batch,
    domains,
    events,
    health,
    messages,
    queue,
    routes,
    suppressions,
    templates,
    unsubscribe,
    webhooks,
)

__all__ = ["OPERATIONS", "create_app"]

logger = logging.getLogger("sendarix.http")


def create_app(engine: Engine, *, manage_engine: bool = False) -> Starlette:
    """Build the API around ``engine``.

    With ``manage_engine`` the app's lifespan opens and closes the engine
    (and so runs its delivery workers), as ``sendarix serve`` does. Without
    it, the caller owns the engine's lifetime.
    """

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_engine:
            async with engine:
                yield
        else:
            yield

    app = Starlette(
        routes=build_routes(OPERATIONS),
        exception_handlers={
            SendarixError: _handle_sendarix_error,
            HTTPException: _handle_http_exception,
            Exception: _handle_unexpected,
        },
        lifespan=lifespan,
    )
    # No 307 to the path without its slash: Starlette would build the
    # Location from the client's Host header.
    app.router.redirect_slashes = False
    app.state.engine = engine
    app.state.operations = OPERATIONS
    app.state.anonymous_limiter = AnonymousLimiter()
    app.add_middleware(LargeBodyLimiter)
    app.add_middleware(ResponseHeadersMiddleware, limiter=app.state.anonymous_limiter)
    return app


# Every endpoint, in the order the router tries them and the OpenAPI
# document lists them. A resource module adds its ``operations`` here.
OPERATIONS: tuple[Operation, ...] = (
    *health.operations,
    *openapi.operations,
    *messages.operations,
    *batch.operations,
    *suppressions.operations,
    *api_keys.operations,
    *events.operations,
    *webhooks.operations,
    *analytics.operations,
    *templates.operations,
    *domains.operations,
    *unsubscribe.operations,
    *routes.operations,
    *queue.operations,
)


async def _handle_sendarix_error(request: Request, exc: Exception) -> Response:
    exc = cast(SendarixError, exc)
    status, code = status_and_code(exc)
    headers = dict(getattr(exc, "headers", {}) or {})
    decision: RateLimitDecision | None = getattr(request.state, "rate_limit", None)
    if status == 429 and decision is not None:
        now = int(request.app.state.engine.clock.now().timestamp())
        headers["Retry-After"] = str(max(decision.reset_at - now, 1))
    if status == 401:
        headers["WWW-Authenticate"] = 'Bearer realm="sendarix"'
    if status >= 500:
        request_id = getattr(request.state, "request_id", None)
        logger.error(
            "request failed",
            exc_info=exc,
            extra={
                "action": "request_failed",
                "code": code,
                "path": request.url.path,
                "request_id": request_id,
            },
        )
        if not isinstance(exc, HttpError):
            # The cause can name the database and its host: it goes to the
            # log, and the client gets where to find it.
            exc = HttpError(status, code, _server_failure(code, request_id))
    return JsonResponse(error_body(exc), status_code=status, headers=headers)


def _server_failure(code: str, request_id: str | None) -> str:
    failure = (
        "the database could not complete the request"
        if code == "storage_unavailable"
        else "internal server error"
    )
    return (
        f"{failure}; retry with backoff, and if it keeps failing, the server log "
        f"has the cause under request_id {request_id}"
    )


async def _handle_http_exception(request: Request, exc: Exception) -> Response:
    exc = cast(HTTPException, exc)
    if exc.status_code == 405:
        error = HttpError(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed on {request.url.path}",
            headers=dict(exc.headers or {}),
        )
    elif exc.status_code == 404:
        error = HttpError(404, "route_not_found", f"no endpoint at {request.url.path}")
    else:
        error = HttpError(exc.status_code, "http_error", str(exc.detail))
    return await _handle_sendarix_error(request, error)


async def _handle_unexpected(request: Request, exc: Exception) -> Response:
    request_id = getattr(request.state, "request_id", None)
    logger.error(
        "unexpected error",
        exc_info=exc,
        extra={
            "action": "request_crashed",
            "path": request.url.path,
            "request_id": request_id,
        },
    )
    error = HttpError(
        500, "internal_error", _server_failure("internal_error", request_id)
    )
    return JsonResponse(error_body(error), status_code=500)


class ResponseHeadersMiddleware:
    """Add ``X-Request-Id`` and the ``X-RateLimit-*`` headers to every response.

    An authenticated request reports its key's window. Any other request
    (a missing or unknown key, an unknown route) is counted per client
    address in this process, so those responses carry the headers too.
    """

    def __init__(self, app: ASGIApp, *, limiter: AnonymousLimiter) -> None:
        self.app = app
        self._limiter = limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_request_id(scope) or f"req_{random_bytes(12).hex()}"
        state: dict[str, Any] = scope.setdefault("state", {})
        state["request_id"] = request_id

        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                decision = state.get("rate_limit") or self._anonymous_decision(scope)
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                headers.append((b"x-ratelimit-limit", str(decision.limit).encode()))
                headers.append(
                    (b"x-ratelimit-remaining", str(decision.remaining).encode())
                )
                headers.append((b"x-ratelimit-reset", str(decision.reset_at).encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception as exc:
            # Answered here rather than by Starlette's outermost handler, so
            # a 500 carries the same headers as every other response.
            if started:
                raise
            response = await _handle_unexpected(Request(scope), exc)
            await response(scope, receive, send_with_headers)

    def _anonymous_decision(self, scope: Scope) -> RateLimitDecision:
        client = scope.get("client") or ("unknown", 0)
        return self._limiter.count(str(client[0]), datetime.now(UTC))


class LargeBodyLimiter:
    """Let only a few requests with large bodies run at once.

    A 48 MB JSON body costs several times its size in memory while it is
    parsed, decoded and stored, so eight of them at once took 1.6 GB. A
    request that declares more than ``threshold`` bytes, or streams without
    declaring a length, waits for one of ``slots`` before its body is read.
    """

    def __init__(
        self, app: ASGIApp, *, slots: int = 4, threshold: int = 1 << 20
    ) -> None:
        self.app = app
        self._threshold = threshold
        self._slots = anyio.Semaphore(slots)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self._is_large(scope):
            await self.app(scope, receive, send)
            return
        async with self._slots:
            await self.app(scope, receive, send)

    def _is_large(self, scope: Scope) -> bool:
        if scope.get("method") in {"GET", "HEAD", "DELETE", "OPTIONS"}:
            return False
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                return not value.isdigit() or int(value) > self._threshold
        return True


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = bytes(value).decode("latin-1")
            # Echo a caller's id only when it is short printable ASCII, so a
            # header can't be used to inject into logs.
            if 0 < len(text) <= 128 and text.isascii() and text.isprintable():
                return text
    return None
