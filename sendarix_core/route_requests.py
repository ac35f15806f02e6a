"""Routing rules as JSON documents: validation of API bodies and the stored form.

The API and the database use one document shape::

    {"description": "…",
     "match": {"recipient_domains": ["*.example.com"], "mx_hosts": […],
               "sender_domains": […], "tags": […], "priorities": ["high"]},
     "action": {"transport": "smarthost", "smarthost": "smtp://u:p@host:587",
                "source_address": "192.0.2.10", "tls": "required",
                "pacing": {"max_connections": 5, "messages_per_second": 10},
                "retry": {"intervals": [60, 600], "max_attempts": 4,
                          "max_age": 86400}}}

Durations are whole seconds. Every function raises ``ValidationError``
listing every invalid field at once.
"""

from __future__ import annotations

import ipaddress
import math
import sys
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, TypeVar

import idna

from sendarix_core.errors import FieldError, ValidationError
from sendarix_core.header_checks import TAG_PATTERN
from sendarix_core.pacing import PacingLimits
from sendarix_core.routing import (
    MASKED_PASSWORD,
    RetryOverride,
    RouteAction,
    RouteMatch,
    SmarthostUrl,
    TlsPolicy,
    TransportKind,
)
from sendarix_core.states import Priority

__all__ = [
    "PACING_RANGES",
    "action_to_document",
    "match_to_document",
    "parse_action",
    "parse_description",
    "parse_match",
]

MAX_PATTERNS = 100
MAX_DESCRIPTION = 500
MAX_ATTEMPTS = 100
# Twice the longest wait of the default schedule (5 hours) would be short
# for some operators; 30 days bounds typos such as a value in milliseconds.
MAX_SECONDS = 30 * 24 * 3600

_MATCH_FIELDS = (
    "recipient_domains",
    "mx_hosts",
    "sender_domains",
    "tags",
    "priorities",
)
_ACTION_FIELDS = ("transport", "smarthost", "source_address", "tls", "pacing", "retry")
_INTEGER_PACING = ("max_connections", "messages_per_connection")
_RATE_PACING = ("messages_per_second", "messages_per_minute", "connections_per_minute")
# Accepted pacing values, (min, max, description of the range). A rate must
# let at least one message or session through a day. The maximums lie far
# above what one site accepts, so they only catch typos such as a value in
# the wrong unit, and keep the token bucket arithmetic finite.
PACING_RANGES: dict[str, tuple[float, float, str]] = {
    "max_connections": (1, 10_000, "a whole number from 1 to 10000"),
    "messages_per_connection": (1, 1_000_000, "a whole number from 1 to 1000000"),
    "messages_per_second": (
        1 / 86_400,
        1_000_000,
        "from 1/86400 (one a day) to 1000000 messages per second",
    ),
    "messages_per_minute": (
        1 / 1_440,
        60_000_000,
        "from 1/1440 (one a day) to 60000000 messages per minute",
    ),
    "connections_per_minute": (
        1 / 1_440,
        60_000_000,
        "from 1/1440 (one a day) to 60000000 connections per minute",
    ),
}

_E = TypeVar("_E", TransportKind, TlsPolicy)


class _Errors:
    def __init__(self) -> None:
        self.items: list[FieldError] = []

    def add(self, field: str, code: str, message: str) -> None:
        self.items.append(FieldError(field, code, message))

    def raise_if_any(self) -> None:
        if self.items:
            raise ValidationError(self.items)


def parse_description(value: object, field: str = "description") -> str:
    errors = _Errors()
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION:
        errors.add(
            field,
            "invalid_description",
            f"expected a string of at most {MAX_DESCRIPTION} characters",
        )
    errors.raise_if_any()
    return str(value)


def parse_match(value: object, field: str = "match") -> RouteMatch:
    """Return the conditions of a ``match`` document (``None`` matches all)."""
    errors = _Errors()
    document = _object(value, field, _MATCH_FIELDS, errors)
    lists = {
        name: _string_list(document.get(name), f"{field}.{name}", errors)
        for name in _MATCH_FIELDS
    }
    domains = {
        name: tuple(
            _domain_pattern(item, f"{field}.{name}.{index}", errors)
            for index, item in enumerate(lists[name])
        )
        for name in ("recipient_domains", "mx_hosts", "sender_domains")
    }
    tags = _tags(lists["tags"], f"{field}.tags", errors)
    priorities = _priorities(lists["priorities"], f"{field}.priorities", errors)
    errors.raise_if_any()
    return RouteMatch(
        recipient_domains=domains["recipient_domains"],
        mx_hosts=domains["mx_hosts"],
        sender_domains=domains["sender_domains"],
        tags=tags,
        priorities=priorities,
    )


def parse_action(
    value: object, field: str = "action", *, bounded: bool = True
) -> RouteAction:
    """Return the decisions of an ``action`` document; absent fields keep
    their defaults (direct MX delivery, opportunistic TLS, no limits).

    ``bounded`` False skips the ``PACING_RANGES`` check, for rules stored
    before the ranges existed: they keep working as saved.
    """
    errors = _Errors()
    document = _object(value, field, _ACTION_FIELDS, errors)
    transport = _enum(
        TransportKind, document.get("transport"), f"{field}.transport", errors
    )
    smarthost = _smarthost(document.get("smarthost"), f"{field}.smarthost", errors)
    if transport is TransportKind.SMARTHOST and document.get("smarthost") is None:
        errors.add(
            f"{field}.smarthost",
            "missing_smarthost",
            "the smarthost transport needs a URL such as smtp://user:pass@host:587",
        )
    given = document.get("smarthost") is not None
    if transport is not TransportKind.SMARTHOST and given:
        errors.add(
            f"{field}.smarthost",
            "unexpected_smarthost",
            f"a smarthost URL is only used with the smarthost transport, "
            f"not with {transport or TransportKind.MX}",
        )
    source_address = _ip_address(
        document.get("source_address"), f"{field}.source_address", errors
    )
    tls = _enum(TlsPolicy, document.get("tls"), f"{field}.tls", errors)
    pacing = _pacing(document.get("pacing"), f"{field}.pacing", errors, bounded)
    retry = _retry(document.get("retry"), f"{field}.retry", errors)
    errors.raise_if_any()
    return RouteAction(
        transport=transport or TransportKind.MX,
        smarthost=smarthost,
        source_address=source_address,
        tls=tls or TlsPolicy.OPPORTUNISTIC,
        pacing=pacing,
        retry=retry,
    )


def match_to_document(match: RouteMatch) -> dict[str, Any]:
    return {
        "recipient_domains": list(match.recipient_domains),
        "mx_hosts": list(match.mx_hosts),
        "sender_domains": list(match.sender_domains),
        "tags": list(match.tags),
        "priorities": [str(priority) for priority in match.priorities],
    }


def action_to_document(action: RouteAction, *, reveal_password: bool) -> dict[str, Any]:
    """Return the stored form (``reveal_password``) or the API form, whose
    smarthost URL has the password replaced by ``***``."""
    smarthost = None
    if action.smarthost is not None:
        smarthost = (
            action.smarthost.url() if reveal_password else action.smarthost.masked()
        )
    pacing = action.pacing
    retry = None
    if action.retry is not None:
        intervals = action.retry.intervals
        max_age = action.retry.max_age
        retry = {
            "intervals": None
            if intervals is None
            else [int(delay.total_seconds()) for delay in intervals],
            "max_attempts": action.retry.max_attempts,
            "max_age": None if max_age is None else int(max_age.total_seconds()),
        }
    return {
        "transport": str(action.transport),
        "smarthost": smarthost,
        "source_address": action.source_address,
        "tls": str(action.tls),
        "pacing": {
            "max_connections": pacing.max_connections,
            "messages_per_connection": pacing.messages_per_connection,
            "messages_per_second": pacing.messages_per_second,
            "messages_per_minute": pacing.messages_per_minute,
            "connections_per_minute": pacing.connections_per_minute,
        },
        "retry": retry,
    }


def _object(
    value: object, field: str, known: tuple[str, ...], errors: _Errors
) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        errors.add(field, "invalid_type", f"expected an object, not {_kind(value)}")
        return {}
    for name in value:
        if name not in known:
            errors.add(
                f"{field}.{name}",
                "unknown_field",
                f"unknown field {name!r}; expected one of {', '.join(known)}",
            )
    return value


def _string_list(value: object, field: str, errors: _Errors) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or len(value) > MAX_PATTERNS:
        errors.add(
            field,
            "invalid_type",
            f"expected a list of at most {MAX_PATTERNS} strings",
        )
        return []
    strings = []
    for index, item in enumerate(value):
        if not isinstance(item, str):
            errors.add(
                f"{field}.{index}",
                "invalid_type",
                f"expected a string, not {_kind(item)}",
            )
            continue
        strings.append(item)
    return strings


def _domain_pattern(value: str, field: str, errors: _Errors) -> str:
    """Return the pattern lower-cased, with IDN labels as A-labels."""
    text = value.strip().lower().rstrip(".")
    wildcard = text.startswith("*.")
    name = text[2:] if wildcard else text
    try:
        ascii_name = idna.encode(name, uts46=True).decode("ascii")
    except idna.IDNAError:
        ascii_name = ""
    labels = ascii_name.split(".")
    if not ascii_name or len(ascii_name) > 253 or any(not label for label in labels):
        errors.add(
            field,
            "invalid_domain_pattern",
            f"{value!r} is not a domain name or a wildcard such as *.example.com",
        )
        return text
    return f"*.{ascii_name}" if wildcard else ascii_name


def _tags(values: list[str], field: str, errors: _Errors) -> tuple[str, ...]:
    for index, tag in enumerate(values):
        if not TAG_PATTERN.fullmatch(tag) or len(tag) > 128:
            errors.add(
                f"{field}.{index}",
                "invalid_tag",
                f"{tag!r} is not a tag; use up to 128 letters, digits and _ . : -",
            )
    return tuple(values)


def _priorities(values: list[str], field: str, errors: _Errors) -> tuple[Priority, ...]:
    priorities = []
    for index, value in enumerate(values):
        try:
            priorities.append(Priority(value))
        except ValueError:
            errors.add(
                f"{field}.{index}",
                "invalid_priority",
                f"{value!r} is not a priority; expected high, normal or low",
            )
    return tuple(priorities)


def _enum(kind: type[_E], value: object, field: str, errors: _Errors) -> _E | None:
    if value is None:
        return None
    allowed = [member.value for member in kind]
    if value not in allowed:
        listed = ", ".join(allowed)
        errors.add(field, "invalid_value", f"{value!r} is not one of {listed}")
        return None
    return kind(str(value))


def _smarthost(value: object, field: str, errors: _Errors) -> SmarthostUrl | None:
    if value is None:
        return None
    if not isinstance(value, str):
        errors.add(field, "invalid_type", f"expected a URL string, not {_kind(value)}")
        return None
    try:
        url = SmarthostUrl.parse(value)
    except ValueError as exc:
        errors.add(field, "invalid_smarthost", f"invalid smarthost URL: {exc}")
        return None
    if url.password is not None and url.username is None:
        errors.add(
            field,
            "invalid_smarthost",
            "invalid smarthost URL: it has a password but no user name; use "
            "smtp://user:pass@host:port",
        )
        return None
    if url.password == MASKED_PASSWORD:
        # A change that sends the masked URL back for the same user and host
        # gets the stored password before this check; here none was stored.
        errors.add(
            field,
            "masked_password",
            f"the URL {url.masked()} has the password {MASKED_PASSWORD}, the "
            "mask the API shows, and no stored password of this user and host "
            "can take its place; send the password itself",
        )
        return None
    return url


def _ip_address(value: object, field: str, errors: _Errors) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        # ip_address() would take the number 0, or false, as 0.0.0.0.
        errors.add(
            field,
            "invalid_type",
            f"expected an IPv4 or IPv6 address as a string, not {_kind(value)}",
        )
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        errors.add(
            field,
            "invalid_ip_address",
            f"{value!r} is not an IPv4 or IPv6 address of this machine",
        )
        return None


def _pacing(value: object, field: str, errors: _Errors, bounded: bool) -> PacingLimits:
    document = _object(value, field, (*_INTEGER_PACING, *_RATE_PACING), errors)
    numbers: dict[str, Any] = {}
    for name in (*_INTEGER_PACING, *_RATE_PACING):
        numbers[name] = _pacing_value(document.get(name), name, field, errors, bounded)
    return PacingLimits(**numbers)


def _pacing_value(
    value: object, name: str, field: str, errors: _Errors, bounded: bool
) -> float | int | None:
    """Return one pacing limit, or record an error when it is out of range."""
    if value is None:
        return None
    low, high, accepted = PACING_RANGES[name]
    if not bounded:
        # Only the limits of PacingLimits apply: above 0, and finite.
        low, high = math.ulp(0.0), sys.float_info.max
    if isinstance(value, bool) or not isinstance(value, int | float):
        errors.add(
            f"{field}.{name}",
            "invalid_type",
            f"expected a number {accepted}, not {_kind(value)}",
        )
        return None
    integer = name in _INTEGER_PACING
    if integer and not float(value).is_integer():
        errors.add(
            f"{field}.{name}",
            "invalid_type",
            f"expected {accepted}, not {value!r}",
        )
        return None
    # NaN fails every comparison, so it is rejected here too.
    if not low <= value <= high:
        errors.add(
            f"{field}.{name}",
            "out_of_range",
            f"{value!r} is not accepted; expected {accepted}",
        )
        return None
    return int(value) if integer else float(value)


def _retry(value: object, field: str, errors: _Errors) -> RetryOverride | None:
    if value is None:
        return None
    document = _object(value, field, ("intervals", "max_attempts", "max_age"), errors)
    intervals = _intervals(document.get("intervals"), f"{field}.intervals", errors)
    attempts = _positive(
        document.get("max_attempts"), f"{field}.max_attempts", errors, integer=True
    )
    if attempts is not None and attempts > MAX_ATTEMPTS:
        errors.add(
            f"{field}.max_attempts",
            "out_of_range",
            f"{attempts} is more than the maximum of {MAX_ATTEMPTS} attempts",
        )
    max_age = _seconds(document.get("max_age"), f"{field}.max_age", errors)
    return RetryOverride(
        intervals=intervals,
        max_attempts=None if attempts is None else int(attempts),
        max_age=max_age,
    )


def _intervals(
    value: object, field: str, errors: _Errors
) -> tuple[timedelta, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or len(value) > MAX_ATTEMPTS:
        errors.add(
            field,
            "invalid_type",
            f"expected a list of 1 to {MAX_ATTEMPTS} waits in seconds",
        )
        return None
    delays = [
        _seconds(item, f"{field}.{index}", errors) for index, item in enumerate(value)
    ]
    return tuple(delay for delay in delays if delay is not None)


def _seconds(value: object, field: str, errors: _Errors) -> timedelta | None:
    number = _positive(value, field, errors, integer=True)
    if number is None:
        return None
    if number > MAX_SECONDS:
        errors.add(
            field,
            "out_of_range",
            f"{number} seconds is more than 30 days ({MAX_SECONDS} seconds)",
        )
        return None
    return timedelta(seconds=number)


def _positive(
    value: object, field: str, errors: _Errors, *, integer: bool
) -> float | int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        errors.add(field, "invalid_type", f"expected a number, not {_kind(value)}")
        return None
    if integer and not float(value).is_integer():
        errors.add(field, "invalid_type", f"expected a whole number, not {value}")
        return None
    if value <= 0:
        errors.add(field, "out_of_range", f"expected a number above 0, not {value}")
        return None
    return int(value) if integer else float(value)


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__
