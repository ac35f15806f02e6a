"""Which waiting messages a queue operation (retry, cancel) applies to.

A filter is a JSON object; every field given must hold (and), and a list
matches any of its items (or)::

    {"status": ["queued"], "priority": ["low"], "recipient_domain": ["x.com"],
     "site": ["mx1.x.com,mx2.x.com"], "sender_domain": ["acme.example"],
     "tag": ["newsletter"], "created_before": "2026-04-19T00:00:00Z",
     "created_after": "…"}

An empty filter matches every waiting message the operation can act on.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

import attrs

from sendarix_core.errors import FieldError, ValidationError
from sendarix_core.states import MessageStatus, Priority

__all__ = ["QueueFilter", "parse_queue_filter"]

_LIST_FIELDS = (
    "status",
    "priority",
    "recipient_domain",
    "site",
    "sender_domain",
    "tag",
)
_TIME_FIELDS = ("created_before", "created_after")
MAX_ITEMS = 100


@attrs.frozen(kw_only=True)
class QueueFilter:
    """Conditions on waiting messages; an empty tuple matches everything."""

    statuses: tuple[MessageStatus, ...] = ()
    priorities: tuple[Priority, ...] = ()
    recipient_domains: tuple[str, ...] = ()
    sites: tuple[str, ...] = ()
    sender_domains: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    created_before: datetime | None = None
    created_after: datetime | None = None

    def restricted_to(self, allowed: frozenset[MessageStatus]) -> QueueFilter:
        """Return the filter limited to the states an operation acts on."""
        statuses = [status for status in self.statuses if status in allowed]
        if not self.statuses:
            statuses = sorted(allowed)
        return attrs.evolve(self, statuses=tuple(statuses))


def parse_queue_filter(
    value: object,
    *,
    allowed_statuses: frozenset[MessageStatus],
    field: str = "filter",
) -> QueueFilter:
    """Validate a filter object; ``status`` must name ``allowed_statuses``.

    Raises ``ValidationError`` listing every invalid field.
    """
    if value is None:
        return QueueFilter().restricted_to(allowed_statuses)
    errors: list[FieldError] = []
    if not isinstance(value, Mapping):
        raise ValidationError(
            [FieldError(field, "invalid_type", "expected a JSON object")]
        )
    for name in value:
        if name not in (*_LIST_FIELDS, *_TIME_FIELDS):
            errors.append(
                FieldError(
                    f"{field}.{name}",
                    "unknown_field",
                    f"unknown filter {name!r}; expected one of "
                    f"{', '.join((*_LIST_FIELDS, *_TIME_FIELDS))}",
                )
            )
    lists = {
        name: _strings(value.get(name), f"{field}.{name}", errors)
        for name in _LIST_FIELDS
    }
    statuses = _statuses(lists["status"], allowed_statuses, f"{field}.status", errors)
    priorities = _priorities(lists["priority"], f"{field}.priority", errors)
    times = {
        name: _time(value.get(name), f"{field}.{name}", errors) for name in _TIME_FIELDS
    }
    after, before = times["created_after"], times["created_before"]
    if after is not None and before is not None and before <= after:
        # A 422 as from GET /v1/messages, rather than a filter matching nothing.
        errors.append(
            FieldError(
                f"{field}.created_before",
                "invalid_range",
                f"created_before ({value['created_before']}) must be later than "
                f"created_after ({value['created_after']}); swap them or widen "
                "the range",
            )
        )
    if errors:
        raise ValidationError(errors)

    parsed = QueueFilter(
        statuses=statuses,
        priorities=priorities,
        recipient_domains=tuple(item.lower() for item in lists["recipient_domain"]),
        # Site keys are lower case, as GET /v1/queue lists them and as a
        # pause stores them.
        sites=tuple(item.strip().lower() for item in lists["site"]),
        sender_domains=tuple(item.lower() for item in lists["sender_domain"]),
        tags=tuple(lists["tag"]),
        created_before=times["created_before"],
        created_after=times["created_after"],
    )
    return parsed.restricted_to(allowed_statuses)


def _strings(value: object, field: str, errors: list[FieldError]) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    valid = (
        isinstance(value, list)
        and 0 < len(value) <= MAX_ITEMS
        and all(isinstance(item, str) and item for item in value)
    )
    if not valid or not isinstance(value, list):
        errors.append(
            FieldError(
                field,
                "invalid_type",
                f"expected a string or a list of 1 to {MAX_ITEMS} strings",
            )
        )
        return []
    return [str(item) for item in value]


def _statuses(
    values: list[str],
    allowed: frozenset[MessageStatus],
    field: str,
    errors: list[FieldError],
) -> tuple[MessageStatus, ...]:
    statuses = []
    names = ", ".join(sorted(allowed))
    for value in values:
        if value not in {status.value for status in allowed}:
            errors.append(
                FieldError(
                    field,
                    "invalid_status",
                    f"{value!r} is not a status this operation acts on; "
                    f"expected {names}",
                )
            )
            continue
        statuses.append(MessageStatus(value))
    return tuple(statuses)


def _priorities(
    values: list[str], field: str, errors: list[FieldError]
) -> tuple[Priority, ...]:
    priorities = []
    for value in values:
        if value not in {priority.value for priority in Priority}:
            errors.append(
                FieldError(
                    field,
                    "invalid_priority",
                    f"{value!r} is not a priority; expected high, normal or low",
                )
            )
            continue
        priorities.append(Priority(value))
    return tuple(priorities)


def _time(value: object, field: str, errors: list[FieldError]) -> datetime | None:
    if value is None:
        return None
    parsed = None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            parsed = None
    if parsed is None or parsed.tzinfo is None:
        errors.append(
            FieldError(
                field,
                "invalid_time",
                f"{value!r} is not an ISO 8601 time with a timezone, such as "
                "2026-04-19T14:30:00Z",
            )
        )
        return None
    return parsed
