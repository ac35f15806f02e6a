"""Reading requests and writing responses: bodies, queries, keys, JSON."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import anyio.to_thread
import orjson
from starlette.requests import Request
from starlette.responses import Response

from sendarix_backends.engine import Engine
from sendarix_core.addresses import AddressError, parse_address, quote_value
from sendarix_core.checks import ErrorCode, Errors, check_no_nul, describe
from sendarix_core.errors import (
    AuthenticationError,
    FieldError,
    PermissionDeniedError,
    RateLimitedError,
    ValidationError,
)
from sendarix_core.header_checks import IDEMPOTENCY_KEY_PATTERN
from sendarix_core.keys import ApiKey, Environment, Scope, require_scope
from sendarix_core.ratelimit import (
    DEFAULT_RATE_LIMIT,
    RateLimitDecision,
    decide_rate_limit,
    window_start,
)
from sendarix_http.errors import HttpError
from sendarix_http.limits import (
    MAX_JSON_DEPTH,
    check_json_depth,
    contains_escape,
    deep_json_path,
    find_repeated_key,
)

__all__ = [
    "BODY_IDLE_TIMEOUT",
    "MAX_BODY_BYTES",
    "THREAD_PARSE_BYTES",
    "WARN_BODY_BYTES",
    "JsonResponse",
    "authorize",
    "authorize_live",
    "check_time_range",
    "collect_fields",
    "idempotency_key_of",
    "is_ascii_digits",
    "parse_query",
    "query_int",
    "query_time",
    "read_body",
    "read_json_object",
    "require_live",
]

MAX_BODY_BYTES = 50 * 1024 * 1024
# Seconds the body may pause between two chunks, as nginx's
# client_body_timeout (60 s by default) counts them.
BODY_IDLE_TIMEOUT = 30.0
# Many receiving servers refuse messages above 25 MB (Gmail's limit, among others).
WARN_BODY_BYTES = 25 * 1024 * 1024


class JsonResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def engine_of(request: Request) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


async def authorize(request: Request, scope: Scope) -> ApiKey:
    """Authenticate the bearer key, count it against its rate limit, check ``scope``.

    The key is looked up on every request, never cached across requests, so a
    revoked key is refused from the next request on. A second call within
    one request reuses the key and only checks ``scope``.
    """
    authorized: ApiKey | None = getattr(request.state, "api_key", None)
    if authorized is not None:
        require_scope(authorized, scope)
        return authorized

    engine = engine_of(request)
    try:
        key, decision = await engine.authenticate_and_count(_bearer_secret(request))
    except AuthenticationError:
        _count_anonymous(request, engine)
        raise
    request.state.rate_limit = decision
    if not decision.allowed:
        raise RateLimitedError(decision.limit, decision.reset_at)
    request.state.api_key = key
    require_scope(key, scope)
    return key


async def authorize_live(request: Request, scope: Scope, action: str) -> ApiKey:
    """Authorize as ``authorize`` does, then reject a test key with ``403``.

    ``action`` completes "test keys can't …" in the error message, for
    example "change routing rules, which live mail uses".
    """
    key = await authorize(request, scope)
    require_live(key, action)
    return key


def require_live(key: ApiKey, action: str) -> None:
    """Raise ``PermissionDeniedError`` when ``key`` is a test key.

    A test key runs the whole pipeline on its own messages, but must neither
    change what live messages do nor read live data.
    """
    if key.environment == Environment.TEST:
        raise PermissionDeniedError(f"test keys can't {action}; use a live key")


def _bearer_secret(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, separator, secret = header.partition(" ")
    if scheme and scheme.lower() != "bearer":
        # A key sent without a scheme must not be echoed back.
        problem = "the Authorization header does not start with 'Bearer '"
        if separator and scheme.isascii() and scheme.isalpha() and len(scheme) <= 20:
            problem = f"unsupported authorization scheme {scheme!r}"
        raise AuthenticationError(
            f"{problem}; send the header 'Authorization: Bearer sk_live_…'"
        )
    if not secret.strip():
        raise AuthenticationError(
            "missing API key; send the header 'Authorization: Bearer sk_live_…'"
        )
    return secret.strip()


def _count_anonymous(request: Request, engine: Engine) -> None:
    """Count a request without a valid key; raise 429 past the default limit.

    Without this, key guessing would never be slowed down. The count is per
    client address and per process.
    """
    limiter: AnonymousLimiter = request.app.state.anonymous_limiter
    client = request.client.host if request.client else "unknown"
    decision = limiter.count(client, engine.clock.now())
    request.state.rate_limit = decision
    if not decision.allowed:
        raise RateLimitedError(decision.limit, decision.reset_at) from None


class AnonymousLimiter:
    """Fixed-window counters of requests without a valid key, per client."""

    _MAX_TRACKED = 10_000

    def __init__(self, limit: int = DEFAULT_RATE_LIMIT) -> None:
        self.limit = limit
        self._counts: dict[tuple[str, int], int] = {}

    def count(self, client: str, now: datetime) -> RateLimitDecision:
        window = window_start(now)
        if len(self._counts) > self._MAX_TRACKED:
            self._counts = {k: v for k, v in self._counts.items() if k[1] == window}
        slot = (client, window)
        self._counts[slot] = self._counts.get(slot, 0) + 1
        return decide_rate_limit(self._counts[slot], self.limit, now)


# A body larger than this is parsed and checked in a worker thread. A repeated
# key makes the check parse the body again in pure Python, which for a 50 MiB
# body of small objects took tens of seconds. On the event loop, that would
# stall every other request of the process.
THREAD_PARSE_BYTES = 256 * 1024


async def read_json_object(
    request: Request, *, nul_checked: bool = True
) -> tuple[dict[str, Any], int]:
    """Read the body as a JSON object, rejecting more than 50 MiB as it streams.

    Returns the object and the body size in bytes. An object that repeats a
    key is a ``400``. Unless ``nul_checked`` is false, for an endpoint that
    checks U+0000 itself, a string or key that contains U+0000 anywhere in
    the body is a ``422 invalid_character``.
    """
    content_type = request.headers.get("content-type", "application/json")
    if content_type.split(";")[0].strip().lower() not in {"application/json", ""}:
        raise HttpError(
            415,
            "unsupported_media_type",
            f"content type {content_type!r} is not supported; send application/json",
        )
    raw = await read_body(request)
    if len(raw) > THREAD_PARSE_BYTES:
        body = await anyio.to_thread.run_sync(_parse_json_object, raw, nul_checked)
    else:
        body = _parse_json_object(raw, nul_checked)
    return body, len(raw)


def _parse_json_object(raw: bytes, nul_checked: bool) -> dict[str, Any]:
    """Parse and check the body text as ``read_json_object`` describes."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit exceeded"):
            # orjson 3 stops at 1,024 levels, before check_json_depth could.
            message = (
                f"the JSON nests more than {MAX_JSON_DEPTH} arrays and objects "
                "deep; flatten the data"
            )
            raise ValidationError(
                [FieldError(deep_json_path(raw), "too_deep", message)]
            ) from exc
        if _LONG_DIGITS.search(raw):
            # orjson refuses an integer too long for a double.
            _check_integer_range(raw)
        raise HttpError(400, "invalid_json", _invalid_json_message(raw, exc)) from exc
    if not isinstance(body, dict):
        raise HttpError(
            400,
            "invalid_body",
            f"the body must be a JSON object, not {describe(body)}",
        )
    repeated = find_repeated_key(raw, body)
    if repeated is not None:
        raise _repeated_key_error(*repeated)
    # Each level of nesting opens with "[" or "{", so a body with few of them
    # can't nest too deep and needs no walk.
    if raw.count(b"[") + raw.count(b"{") > MAX_JSON_DEPTH:
        check_json_depth(body)
    if _may_hold_long_integer(body, raw):
        _check_integer_range(raw)
    # JSON text can contain U+0000 only as the escape \u0000.
    if nul_checked and contains_escape(raw, (b"\\u0000",)):
        errors = Errors()
        if not check_no_nul("", body, errors):
            raise ValidationError(errors.items)
    return body


def _repeated_key_error(path: str, key: str) -> HttpError:
    where = f"the object at {path!r}" if path else "the top-level object"
    field = f"{path}.{key}" if path else key
    message = (
        f"{where} contains the key {quote_value(key)} more than once; give "
        "each key once"
    )
    return HttpError(
        400,
        "invalid_json",
        message,
        errors=(FieldError(field, ErrorCode.DUPLICATE, message),),
    )


# orjson turns an integer outside the 64-bit range into a float, which would
# lose digits unnoticed, or refuses it when it is past a double's range too.
# Only a run of 19 or more digits can be one.
_LONG_DIGITS = re.compile(rb"\d{19}")
# The scan took about 13 ns a byte on a 2-core test machine. Only a float
# in the parsed body can stand for such an integer, so past this size the
# body is looked through for one first.
_SCAN_LIMIT = 64 * 1024


def _may_hold_long_integer(body: Any, raw: bytes) -> bool:
    if len(raw) > _SCAN_LIMIT and not _has_float(body):
        return False
    return _LONG_DIGITS.search(raw) is not None


def _has_float(document: Any) -> bool:
    stack = [document]
    while stack:
        value = stack.pop()
        if isinstance(value, float):
            return True
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


_MIN_INTEGER = -(2**63)
_MAX_INTEGER = 2**64 - 1


class _OutOfRange(str):
    """The text of an integer outside the range orjson keeps exact."""


def _invalid_json_message(raw: bytes, exc: orjson.JSONDecodeError) -> str:
    """Describe why the body is not JSON.

    orjson 3 reports invalid UTF-8 as "surrogates not allowed" at char 0,
    which points at neither the byte nor the place, so that case is found
    here.
    """
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as error:
        byte = raw[error.start]
        return (
            f"the body is not valid UTF-8: byte 0x{byte:02x} at offset "
            f"{error.start} ({error.reason}); send JSON encoded as UTF-8"
        )
    return f"the body is not valid JSON: {exc}"


def _read_integer(text: str) -> int | _OutOfRange:
    # Python refuses to convert integers of more than 4,300 digits.
    if len(text) > 25:
        return _OutOfRange(text)
    value = int(text)
    if _MIN_INTEGER <= value <= _MAX_INTEGER:
        return value
    return _OutOfRange(text)


def _check_integer_range(raw: bytes) -> None:
    """Raise ``ValidationError`` for an integer that orjson read as a float."""
    try:
        document = json.loads(raw, parse_int=_read_integer)
    except (ValueError, RecursionError):
        return
    stack: list[tuple[Any, str]] = [(document, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, dict):
            children: Any = value.items()
        elif isinstance(value, list):
            children = enumerate(value)
        else:
            if isinstance(value, _OutOfRange):
                excerpt = value if len(value) <= 40 else f"{value[:20]}…{value[-10:]}"
                message = (
                    f"the integer {excerpt} does not fit in 64 bits; send it "
                    "as a string"
                )
                raise ValidationError([FieldError(path, ErrorCode.TOO_LARGE, message)])
            continue
        for key, child in reversed(list(children)):
            stack.append((child, f"{path}.{key}" if path else str(key)))


async def read_body(request: Request) -> bytes:
    """Read the body as bytes, rejecting more than 50 MiB as it streams."""
    declared = request.headers.get("content-length")
    if (
        declared is not None
        and is_ascii_digits(declared)
        and int(declared) > MAX_BODY_BYTES
    ):
        raise _too_large()
    return await _receive_body(request)


async def _receive_body(request: Request) -> bytes:
    """Receive the whole body, rejecting more than 50 MiB as it streams."""
    chunks = []
    size = 0
    receive = request.receive
    loop = asyncio.get_running_loop()
    try:
        # A body that stops arriving would hold its connection and its
        # buffered part forever. One timer covers the whole read, and its
        # deadline moves on with every chunk, so the limit is the pause
        # between two chunks. asyncio's own timeout costs less than half
        # of anyio.fail_after; uvicorn runs the app on asyncio.
        async with asyncio.timeout(BODY_IDLE_TIMEOUT) as timer:
            while (received := await receive())["type"] == "http.request":
                chunk = received.get("body", b"")
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise _too_large()
                chunks.append(chunk)
                if not received.get("more_body", False):
                    return b"".join(chunks)
                timer.reschedule(loop.time() + BODY_IDLE_TIMEOUT)
    except TimeoutError:
        raise HttpError(
            408,
            "request_timeout",
            f"no part of the body arrived for {BODY_IDLE_TIMEOUT:.0f} s after "
            f"{size} bytes; send the whole body without pauses",
            headers={"Connection": "close"},
        ) from None
    # The only other message is http.disconnect.
    raise HttpError(
        400, "client_disconnected", "the client closed the connection mid-body"
    )


def _too_large() -> HttpError:
    return HttpError(
        413,
        "payload_too_large",
        "the request is larger than 50 MiB (52,428,800 bytes); host large "
        "files and send links instead",
    )


def idempotency_key_of(request: Request) -> str | None:
    """Return the ``Idempotency-Key`` header, checked like the body's key."""
    keys = request.headers.getlist("idempotency-key")
    if not keys:
        return None
    # Some HTTP stacks send a header twice, so only differing values are ambiguous.
    if len(set(keys)) > 1:
        listed = ", ".join(quote_value(_header_text(key)) for key in keys)
        message = (
            "the request has Idempotency-Key headers with different values "
            f"({listed}); send one"
        )
        raise ValidationError(
            [FieldError("Idempotency-Key", "invalid_idempotency_key", message)]
        )
    key = keys[0]
    if IDEMPOTENCY_KEY_PATTERN.fullmatch(key):
        return key
    message = (
        f"{quote_value(_header_text(key))} is not a valid idempotency key; expected "
        "1 to 255 printable ASCII characters without spaces, such as a UUID"
    )
    raise ValidationError(
        [FieldError("Idempotency-Key", "invalid_idempotency_key", message)]
    )


def _header_text(value: str) -> str:
    """Return a header value as the client most likely wrote it.

    ASGI servers decode header bytes as Latin-1, so UTF-8 text such as
    ``ké`` arrives as ``kÃ©``. Bytes that are not UTF-8 stay as decoded.
    """
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def is_ascii_digits(text: str) -> bool:
    """Return whether ``text`` is a non-empty run of the digits 0-9.

    ``str.isdigit`` and ``int`` also accept other scripts' digits, such as
    "٣", which HTTP and JSON clients never mean as numbers.
    """
    return text.isascii() and text.isdigit()


def query_int(
    params: Mapping[str, str], name: str, *, default: int, low: int, high: int
) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not is_ascii_digits(raw) or not low <= int(raw) <= high:
        raise _query_error(
            name,
            "invalid_number",
            f"{raw!r} is not a whole number from {low} to {high}",
        )
    return int(raw)


def query_time(params: Mapping[str, str], name: str) -> datetime | None:
    raw = params.get(name)
    if raw is None:
        return None
    try:
        # A "+" of an offset arrives as a space when the client did not escape it.
        value = datetime.fromisoformat(raw.replace(" ", "+").replace("Z", "+00:00"))
    except ValueError:
        raise _query_error(
            name,
            "invalid_time",
            f"{raw!r} is not an ISO 8601 time such as 2026-04-19T14:30:00Z",
        ) from None
    if value.tzinfo is None:
        raise _query_error(
            name, "missing_timezone", f"{raw!r} has no timezone; add Z or an offset"
        )
    try:
        return value.astimezone(UTC)
    except OverflowError:
        # Such as 0001-01-01T00:00:00+14:00, before the first UTC time.
        raise _query_error(
            name, "invalid_time", f"{raw!r} is out of range in UTC"
        ) from None


def query_address(params: Mapping[str, str], name: str) -> str | None:
    """Return the parameter as given, once it parses as one address.

    A filter that is not an address could match nothing, so it is a 422
    with the reason rather than an empty page.
    """
    raw = params.get(name)
    if raw is None:
        return None
    try:
        parse_address(raw)
    except AddressError as error:
        raise _query_error(name, str(error.code), str(error)) from None
    return raw


def check_time_range(
    params: Mapping[str, str],
    start: tuple[str, datetime | None],
    end: tuple[str, datetime | None],
) -> None:
    """Raise ValidationError unless the end bound is later than the start.

    ``start`` and ``end`` are a parameter name with its parsed value, which
    is None when the parameter is absent. The range is then open and valid.
    """
    (start_name, start_time), (end_name, end_time) = start, end
    if start_time is None or end_time is None or end_time > start_time:
        return
    message = (
        f"{end_name} ({params[end_name]}) must be later than {start_name} "
        f"({params[start_name]}); swap them or widen the range"
    )
    raise _query_error(end_name, "invalid_range", message)


def parse_query(**parsers: Callable[[], Any]) -> dict[str, Any]:
    """Run every parser and return their values by name.

    Raises one ValidationError with the errors of every parser that
    failed, so a request with several invalid parameters learns of them all.
    """
    values, errors = collect_fields(**parsers)
    if errors:
        raise ValidationError(errors)
    return values


def collect_fields(
    **parsers: Callable[[], Any],
) -> tuple[dict[str, Any], list[FieldError]]:
    """Run every parser; return the values of those that passed and the
    errors of those that raised ValidationError."""
    values: dict[str, Any] = {}
    errors: list[FieldError] = []
    for name, parse in parsers.items():
        try:
            values[name] = parse()
        except ValidationError as exc:
            errors.extend(exc.errors)
    return values, errors


def _query_error(name: str, code: str, message: str) -> ValidationError:
    return ValidationError([FieldError(name, code, message)])
