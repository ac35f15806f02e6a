"""Managing webhook endpoints: create, update, rotate, inspect and replay."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timedelta

import attrs

from sendarix_backends.events.storage import SqlEventStorage
from sendarix_backends.webhooks.destinations import (
    AddressResolver,
    DestinationError,
    parse_url,
)
from sendarix_backends.webhooks.model import (
    DeliveryStatus,
    EndpointChanges,
    WebhookAttempt,
    WebhookEndpoint,
)
from sendarix_backends.webhooks.schedule import WebhookPolicy
from sendarix_backends.webhooks.signing import format_secret
from sendarix_core.checks import json_excerpt
from sendarix_core.clock import Clock
from sendarix_core.errors import FieldError, NotFoundError, ValidationError
from sendarix_core.ports import Page
from sendarix_core.representation import format_time
from sendarix_core.route_requests import MAX_DESCRIPTION
from sendarix_core.states import EventType

__all__ = ["SECRET_GRACE", "WebhookService"]

# How long the previous secret keeps signing after a rotation.
SECRET_GRACE = timedelta(hours=24)


class WebhookService:
    def __init__(
        self,
        *,
        storage: SqlEventStorage,
        resolver: AddressResolver,
        clock: Clock,
        policy: WebhookPolicy,
        new_id: Callable[[str], str],
        on_replay: Callable[[], None],
    ) -> None:
        self._storage = storage
        self._resolver = resolver
        self._clock = clock
        self._policy = policy
        self._new_id = new_id
        self._on_replay = on_replay

    async def create(
        self,
        url: str,
        *,
        event_types: Sequence[object] | None = None,
        description: str = "",
    ) -> WebhookEndpoint:
        """Create an enabled endpoint with a new secret and return it."""
        errors = await self.field_errors(
            url=url, event_types=event_types, description=description
        )
        if errors:
            raise ValidationError(errors)
        checked_types = check_event_types(event_types)
        now = self._clock.now()
        endpoint = WebhookEndpoint(
            id=self._new_id("wh"),
            url=url,
            description=description,
            event_types=checked_types,
            enabled=True,
            secret=format_secret(os.urandom(32)),
            created_at=now,
            updated_at=now,
        )
        await self._storage.create_endpoint(endpoint)
        return endpoint

    async def field_errors(
        self,
        *,
        url: str | None,
        event_types: Sequence[object] | None,
        description: str | None,
    ) -> list[FieldError]:
        """Check every given field and return the errors of all invalid ones.

        ``None`` skips a field. The URL is resolved and its addresses
        checked, as at creation.
        """
        errors: list[FieldError] = []
        if url is not None:
            errors.extend(await _errors_of(self.check_url(url)))
        try:
            check_event_types(event_types)
        except ValidationError as exc:
            errors.extend(exc.errors)
        if description is not None:
            try:
                check_description(description)
            except ValidationError as exc:
                errors.extend(exc.errors)
        return errors

    async def check_url(self, url: str) -> None:
        """Raise ValidationError unless webhooks may be posted to ``url``."""
        try:
            await self._resolver.checked_addresses(parse_url(url))
        except DestinationError as exc:
            raise ValidationError(
                [FieldError("url", "invalid_url", str(exc))]
            ) from None

    async def list(self) -> list[WebhookEndpoint]:
        return await self._storage.list_endpoints()

    async def get(self, endpoint_id: str) -> WebhookEndpoint:
        endpoint = await self._storage.get_endpoint(endpoint_id)
        if endpoint is None:
            raise NotFoundError("webhook", endpoint_id)
        return endpoint

    async def update(
        self, endpoint_id: str, changes: EndpointChanges
    ) -> WebhookEndpoint:
        await self.get(endpoint_id)
        errors = await self.field_errors(
            url=changes.url,
            event_types=changes.event_types,
            description=changes.description,
        )
        if errors:
            raise ValidationError(errors)
        checked = attrs.evolve(
            changes, event_types=check_event_types(changes.event_types)
        )
        updated = await self._storage.update_endpoint(
            endpoint_id, checked, self._clock.now()
        )
        if updated is None:
            raise NotFoundError("webhook", endpoint_id)
        if changes.enabled:
            self._on_replay()
        return updated

    async def delete(self, endpoint_id: str) -> None:
        if not await self._storage.delete_endpoint(endpoint_id):
            raise NotFoundError("webhook", endpoint_id)

    async def rotate_secret(self, endpoint_id: str) -> WebhookEndpoint:
        """Sign with a new secret; the old one also signs for ``SECRET_GRACE``."""
        rotated = await self._storage.rotate_secret(
            endpoint_id,
            format_secret(os.urandom(32)),
            self._clock.now(),
            SECRET_GRACE,
        )
        if rotated is None:
            raise NotFoundError("webhook", endpoint_id)
        return rotated

    async def attempts(
        self, endpoint_id: str, *, limit: int = 25, cursor: str | None = None
    ) -> Page[WebhookAttempt]:
        await self.get(endpoint_id)
        return await self._storage.list_attempts(endpoint_id, limit, cursor)

    async def replay(self, endpoint_id: str, delivery_id: str) -> bool:
        """Post a delivery now, under the same ``webhook-id``: a finished one
        again, a pending one without waiting for its next retry.

        Returns False, queuing nothing, when the delivery is being posted.
        """
        await self.get(endpoint_id)
        queued = await self._storage.replay_delivery(
            endpoint_id, delivery_id, self._clock.now(), self._policy.retry_window
        )
        if queued is None:
            raise NotFoundError("webhook_delivery", delivery_id)
        if queued:
            self._on_replay()
        return queued

    async def replay_range(
        self,
        endpoint_id: str,
        start: datetime,
        end: datetime,
        statuses: Sequence[DeliveryStatus] = (DeliveryStatus.FAILED,),
    ) -> int:
        """Post again the deliveries of events created in [start, end).

        ``statuses`` picks which finished deliveries: failed ones by
        default. Returns how many were queued.
        """
        await self.get(endpoint_id)
        if end <= start:
            message = (
                f"'to' ({format_time(end)}) must be later than 'from' "
                f"({format_time(start)})"
            )
            raise ValidationError([FieldError("to", "invalid_range", message)])
        count = await self._storage.replay_range(
            endpoint_id,
            start=start,
            end=end,
            statuses=statuses,
            now=self._clock.now(),
            retry_window=self._policy.retry_window,
        )
        if count:
            self._on_replay()
        return count


async def _errors_of(check: Awaitable[None]) -> list[FieldError]:
    try:
        await check
    except ValidationError as exc:
        return list(exc.errors)
    return []


def check_event_types(
    event_types: Sequence[object] | None,
) -> tuple[str, ...] | None:
    """Return the types as stored.

    Raises ValidationError naming each element (``events.1``) that is not a
    known event type.
    """
    if event_types is None:
        return None
    known = {str(event_type) for event_type in EventType}
    allowed = ", ".join(sorted(known))
    if isinstance(event_types, str):
        message = (
            f"expected a list of event types, not the string {event_types!r}; "
            f"write [{event_types!r}]"
        )
        raise ValidationError([FieldError("events", "invalid_type", message)])
    if not event_types:
        message = (
            "events is an empty list, which would subscribe to no event; leave "
            "events out or set it to null for every type, or name at least one "
            f"of {allowed}"
        )
        raise ValidationError([FieldError("events", "empty_list", message)])
    errors = []
    for index, value in enumerate(event_types):
        if not isinstance(value, str):
            message = (
                f"events.{index} must be an event type string, not "
                f"{json_excerpt(value)}; expected one of {allowed}"
            )
            errors.append(FieldError(f"events.{index}", "invalid_type", message))
        elif value not in known:
            message = f"{value!r} is not an event type; expected one of {allowed}"
            errors.append(FieldError(f"events.{index}", "invalid_event_type", message))
    if errors:
        raise ValidationError(errors)
    return tuple(dict.fromkeys(str(value) for value in event_types))


def check_description(description: str) -> None:
    """Raise ValidationError when ``description`` is too long to store."""
    if len(description) <= MAX_DESCRIPTION:
        return
    message = (
        f"the description {json_excerpt(description)} has {len(description)} "
        f"characters; the maximum is {MAX_DESCRIPTION}, so shorten it"
    )
    raise ValidationError([FieldError("description", "too_long", message)])
