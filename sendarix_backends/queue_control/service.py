"""``QueueControl``: the queue's state, pauses, retries and cancellations.

Cancelling by filter applies the normal lifecycle transition to each
message, so every cancelled message gets its ``message.cancelled`` event.
Only ``scheduled`` and ``queued`` messages can be cancelled. Retrying
makes ``deferred`` messages due now without an event: the next attempt
records ``message.accepted`` as usual.

Workers read the pauses through ``current_pauses``, which reloads them at
most every ``refresh_seconds``, so a pause takes effect on every node
within that time. Deliveries already in progress finish.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import attrs

from sendarix_backends.queue_control.model import (
    PauseKind,
    Pauses,
    QueueSummary,
    Release,
)
from sendarix_core import lifecycle
from sendarix_core.clock import Clock
from sendarix_core.errors import FieldError, NotFoundError, ValidationError
from sendarix_core.ports import MessageStore
from sendarix_core.queue_filter import QueueFilter, parse_queue_filter
from sendarix_core.states import CANCELLABLE_STATES, MessageStatus, Priority

if TYPE_CHECKING:
    from sendarix_backends.sql.queue_admin import SqlQueueAdmin

__all__ = ["CancelOutcome", "QueueControl", "QueueView", "SiteCount"]

_RETRYABLE = frozenset({MessageStatus.DEFERRED})
# Messages cancelled per transaction.
_CANCEL_BATCH = 500
DEFAULT_CANCEL_LIMIT = 10_000
MAX_CANCEL_LIMIT = 100_000
# Recipient domains read for the counts by site.
_DOMAIN_LIMIT = 1000
# Domain-to-site pairs this process remembers having stored.
_KNOWN_DOMAINS = 100_000


@attrs.frozen(kw_only=True)
class SiteCount:
    """Waiting messages of one site; ``site`` is None for domains not yet
    resolved by any worker."""

    site: str | None
    recipient_domains: tuple[str, ...]
    waiting: int
    parked: int
    paused: bool


@attrs.frozen(kw_only=True)
class QueueView:
    by_status: Mapping[str, int]
    by_priority: Mapping[str, int]
    sites: Sequence[SiteCount]
    oldest_created_at: datetime | None
    next_retries: Sequence[tuple[str, datetime]]
    pauses: Pauses


@attrs.frozen(kw_only=True)
class CancelOutcome:
    count: int
    dry_run: bool
    more: bool = False


class QueueControl:
    def __init__(
        self,
        admin: SqlQueueAdmin,
        store: MessageStore,
        *,
        clock: Clock,
        new_id: Callable[[str], str],
        refresh_seconds: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._admin = admin
        self._store = store
        self._clock = clock
        self._new_id = new_id
        self._refresh_seconds = refresh_seconds
        self._monotonic = monotonic
        self._pauses: Pauses | None = None
        self._pauses_at = 0.0
        self._known_domains: dict[str, str] = {}

    async def view(self, *, site_limit: int = 50) -> QueueView:
        """Return the counts of waiting messages and the pauses."""
        summary = await self._admin.summary(self._clock.now(), _DOMAIN_LIMIT)
        by_status: dict[str, int] = {}
        by_priority = {str(priority): 0 for priority in Priority}
        for (status, rank), count in summary.counts.items():
            by_status[status] = by_status.get(status, 0) + count
            priority = str(Priority.from_rank(rank))
            by_priority[priority] += count
        return QueueView(
            by_status=by_status,
            by_priority=by_priority,
            sites=_site_counts(summary)[:site_limit],
            oldest_created_at=summary.oldest_created_at,
            next_retries=summary.next_retries,
            pauses=summary.pauses,
        )

    async def pause(self, body: Mapping[str, Any]) -> tuple[PauseKind, str]:
        """Pause a priority tier or a site: ``{"priority": "low"}`` or
        ``{"site": "…"}``; pausing twice changes nothing."""
        kind, value = _pause_target(body)
        await self._admin.pause(kind, value, self._clock.now())
        self._pauses = None
        return kind, value

    async def resume(self, body: Mapping[str, Any]) -> tuple[PauseKind, str, int]:
        """Lift a pause; return it and how many parked messages became due.

        Raises ``NotFoundError`` when there is no such pause.
        """
        kind, value = _pause_target(body)
        unparked = await self._admin.resume(kind, value, self._clock.now())
        if unparked is None:
            raise NotFoundError("pause", f"{kind} {value}")
        self._pauses = None
        return kind, value, unparked

    async def retry(self, body: Mapping[str, Any]) -> CancelOutcome:
        """Make deferred messages matching ``body["filter"]`` due now."""
        _check_fields(body, ("filter", "dry_run"))
        queue_filter = parse_queue_filter(
            body.get("filter"), allowed_statuses=_RETRYABLE
        )
        if _dry_run(body):
            return CancelOutcome(
                count=await self._admin.count(queue_filter), dry_run=True
            )
        count = await self._admin.retry_deferred(queue_filter, self._clock.now())
        return CancelOutcome(count=count, dry_run=False)

    async def cancel(self, body: Mapping[str, Any]) -> CancelOutcome:
        """Cancel scheduled and queued messages matching ``body["filter"]``.

        The filter is required, and ``{}`` matches every such message. With
        ``"dry_run": true`` only counts them. At most ``limit`` (default
        10,000) are cancelled per call, and ``more`` is true when some remain.
        """
        _check_fields(body, ("filter", "dry_run", "limit"))
        if body.get("filter") is None:
            # Without this check, a body that lost its filter would cancel
            # the whole queue. An empty filter requests that explicitly.
            raise ValidationError(
                [
                    FieldError(
                        "filter",
                        "missing_field",
                        "give a filter of the messages to cancel; "
                        "{} matches every scheduled and queued message",
                    )
                ]
            )
        queue_filter = parse_queue_filter(
            body["filter"], allowed_statuses=frozenset(CANCELLABLE_STATES)
        )
        limit = _limit(body.get("limit"))
        if _dry_run(body):
            return CancelOutcome(
                count=await self._admin.count(queue_filter), dry_run=True
            )
        return await self._cancel(queue_filter, limit)

    async def current_pauses(self) -> Pauses:
        """Return the pauses, reloaded when the copy is older than the refresh."""
        stale = self._monotonic() - self._pauses_at >= self._refresh_seconds
        if self._pauses is None or stale:
            self._pauses = await self._admin.pauses()
            self._pauses_at = self._monotonic()
        return self._pauses

    async def release(self, releases: Sequence[Release]) -> None:
        await self._admin.release(releases)

    async def park(self, site: str, releases: Sequence[Release]) -> None:
        if not await self._admin.park(site, releases, self._clock.now()):
            # The pause was lifted meanwhile; the messages are due now.
            self._pauses = None

    async def record_sites(self, domain_sites: Mapping[str, str]) -> None:
        """Store which site each domain resolved to, when it is news."""
        changed = {
            domain: site
            for domain, site in domain_sites.items()
            if self._known_domains.get(domain) != site
        }
        if not changed:
            return
        await self._admin.record_site_domains(changed, self._clock.now())
        if len(self._known_domains) > _KNOWN_DOMAINS:
            self._known_domains.clear()
        self._known_domains.update(changed)

    async def _cancel(self, queue_filter: QueueFilter, limit: int) -> CancelOutcome:
        cancelled = 0
        rounds = limit // _CANCEL_BATCH + 10
        more = False
        for _ in range(rounds):
            wanted = min(_CANCEL_BATCH, limit - cancelled)
            if wanted <= 0:
                more = await self._admin.count(queue_filter) > 0
                break
            found = await self._admin.select(queue_filter, wanted)
            if not found:
                break
            now = self._clock.now()
            transitions = [
                lifecycle.cancel(message, now=now, event_id=self._new_id("evt"))
                for message in found
            ]
            stale = set(await self._store.save_transitions(transitions))
            cancelled += len(found) - len(stale)
        else:
            # Workers claimed the messages of every round before they were
            # cancelled, so matching messages may still wait.
            more = await self._admin.count(queue_filter) > 0
        return CancelOutcome(count=cancelled, dry_run=False, more=more)


def _site_counts(summary: QueueSummary) -> list[SiteCount]:
    """Group the waiting messages of each recipient domain by site."""
    grouped: dict[str | None, list[tuple[str, int]]] = {}
    for domain, count in summary.by_domain:
        site = summary.domain_sites.get(domain)
        grouped.setdefault(site, []).append((domain, count))
    counts: list[SiteCount] = []
    for site, domains in grouped.items():
        if site is None:
            counts.extend(
                SiteCount(
                    site=None,
                    recipient_domains=(domain,),
                    waiting=count,
                    parked=0,
                    paused=False,
                )
                for domain, count in domains
            )
            continue
        counts.append(
            SiteCount(
                site=site,
                recipient_domains=tuple(domain for domain, _ in domains),
                waiting=sum(count for _, count in domains),
                parked=summary.parked.get(site, 0),
                paused=site in summary.pauses.sites,
            )
        )
    counts.sort(key=lambda item: item.waiting, reverse=True)
    return counts


def _pause_target(body: Mapping[str, Any]) -> tuple[PauseKind, str]:
    given = [name for name in ("priority", "site") if body.get(name) is not None]
    unknown = [name for name in body if name not in ("priority", "site")]
    errors = [
        FieldError(name, "unknown_field", "expected only priority or site")
        for name in unknown
    ]
    if len(given) != 1:
        errors.append(
            FieldError(
                "priority",
                "missing_target",
                'send exactly one of {"priority": "low"} or {"site": "<site key>"}',
            )
        )
    if errors:
        raise ValidationError(errors)
    name = given[0]
    value = body[name]
    if name == "priority":
        if not isinstance(value, str) or value not in {p.value for p in Priority}:
            raise ValidationError(
                [
                    FieldError(
                        "priority",
                        "invalid_priority",
                        f"{value!r} is not a priority; expected high, normal or low",
                    )
                ]
            )
        return PauseKind.PRIORITY, str(value)
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(
            [
                FieldError(
                    "site",
                    "invalid_site",
                    "expected a site key as GET /v1/queue lists it",
                )
            ]
        )
    return PauseKind.SITE, value.strip().lower()


def _check_fields(body: Mapping[str, Any], known: tuple[str, ...]) -> None:
    unknown = [name for name in body if name not in known]
    if unknown:
        raise ValidationError(
            [
                FieldError(
                    name,
                    "unknown_field",
                    f"unknown field {name!r}; expected one of {', '.join(known)}",
                )
                for name in unknown
            ]
        )


def _dry_run(body: Mapping[str, Any]) -> bool:
    value = body.get("dry_run", False)
    if not isinstance(value, bool):
        raise ValidationError(
            [FieldError("dry_run", "invalid_type", "expected true or false")]
        )
    return value


def _limit(value: object) -> int:
    if value is None:
        return DEFAULT_CANCEL_LIMIT
    if isinstance(value, bool) or not isinstance(value, int):
        value = 0
    if not 1 <= value <= MAX_CANCEL_LIMIT:
        raise ValidationError(
            [
                FieldError(
                    "limit",
                    "out_of_range",
                    f"expected a whole number from 1 to {MAX_CANCEL_LIMIT}",
                )
            ]
        )
    return value
