"""Value objects of webhook endpoints, deliveries and attempts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from enum import StrEnum

import attrs

__all__ = [
    "AttemptOutcome",
    "AttemptRecord",
    "ClaimedDelivery",
    "DeliveryStatus",
    "EndpointChanges",
    "EndpointShare",
    "PreviousSecret",
    "SavedAttempts",
    "SubscriptionPeriod",
    "WebhookAttempt",
    "WebhookEndpoint",
    "still_signing",
]


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class AttemptOutcome(StrEnum):
    """What one attempt meant for its delivery."""

    SUCCEEDED = "succeeded"
    RETRYING = "retrying"
    FAILED = "failed"


@attrs.frozen
class PreviousSecret:
    """A secret replaced by a rotation, which signs until ``expires_at``."""

    secret: str = attrs.field(repr=False)
    expires_at: datetime


@attrs.frozen
class SubscriptionPeriod:
    """The event types and ``enabled`` of an endpoint until a change at ``until``."""

    until: datetime
    event_types: tuple[str, ...] | None
    enabled: bool


@attrs.frozen(kw_only=True)
class WebhookEndpoint:
    """A subscriber URL and the event types it receives.

    ``event_types`` is ``None`` for every type. ``secret`` signs deliveries.
    Each secret replaced by a rotation still signs them until its expiry, so
    receivers can switch keys without losing events; ``previous_secrets``
    lists them newest first. ``failing_since`` is the first failed attempt
    since the last success. ``earlier_subscriptions`` are the event types and
    ``enabled`` before their changes, oldest first, so that an event is
    delivered by the subscription in effect when it was created.
    """

    id: str
    url: str
    description: str
    event_types: tuple[str, ...] | None
    enabled: bool
    secret: str = attrs.field(repr=False)
    created_at: datetime
    updated_at: datetime
    previous_secrets: tuple[PreviousSecret, ...] = ()
    failing_since: datetime | None = None
    disabled_at: datetime | None = None
    disabled_reason: str | None = None
    earlier_subscriptions: tuple[SubscriptionPeriod, ...] = ()

    @property
    def previous_secret_expires_at(self) -> datetime | None:
        """When the last of the previous secrets stops signing."""
        return max((p.expires_at for p in self.previous_secrets), default=None)

    def signing_secrets(self, now: datetime) -> tuple[str, ...]:
        """Return the secrets that sign a delivery made at ``now``, newest first."""
        return (self.secret, *still_signing(self.previous_secrets, now))

    def wants(self, event_type: str) -> bool:
        return self.event_types is None or event_type in self.event_types

    def receives(self, event_type: str, created_at: datetime) -> bool:
        """Return whether an event created at ``created_at`` gets a delivery.

        The endpoint must have existed, been enabled and subscribed to the
        type at that time, whatever its state when the event is processed.
        """
        if created_at < self.created_at:
            return False
        for period in self.earlier_subscriptions:
            if created_at < period.until:
                types = period.event_types
                return period.enabled and (types is None or event_type in types)
        return self.enabled and self.wants(event_type)

    def receives_any(self) -> bool:
        """Return whether some event may still get a delivery to the endpoint."""
        return self.enabled or any(p.enabled for p in self.earlier_subscriptions)


def still_signing(previous: Sequence[PreviousSecret], now: datetime) -> list[str]:
    """Return the previous secrets that have not expired at ``now``."""
    return [p.secret for p in previous if now < p.expires_at]


@attrs.frozen(kw_only=True)
class EndpointChanges:
    """Fields of an endpoint to update; ``None`` leaves a field unchanged."""

    url: str | None = None
    description: str | None = None
    event_types: tuple[str, ...] | None = None
    all_event_types: bool = False
    enabled: bool | None = None


@attrs.frozen(kw_only=True)
class ClaimedDelivery:
    """A delivery leased to one dispatcher, with what it needs to post it.

    ``id`` is the ``webhook-id`` header: one per event and endpoint, the same
    on every attempt and replay, so receivers can drop duplicates.
    """

    id: str
    endpoint_id: str
    url: str
    secrets: tuple[str, ...] = attrs.field(repr=False)
    event_id: str
    event_type: str
    message_id: str | None
    payload: bytes = attrs.field(repr=lambda value: f"<{len(value)} bytes>")
    attempts: int
    attempts_before_replay: int
    """The attempts made before the last replay, which the retry schedule skips."""
    retry_until: datetime


@attrs.frozen(kw_only=True)
class EndpointShare:
    """The maximum number of posts one endpoint may have in flight in a
    dispatcher, and how many each endpoint has now.

    ``per_endpoint`` applies to every endpoint not in ``limits``, which
    gives some endpoints a lower maximum of their own.
    """

    per_endpoint: int
    in_flight: Mapping[str, int]
    limits: Mapping[str, int] = attrs.field(factory=dict)

    def limit_of(self, endpoint: str) -> int:
        return self.limits.get(endpoint, self.per_endpoint)

    @property
    def full(self) -> list[str]:
        """Endpoints with their whole share in flight."""
        return sorted(
            endpoint
            for endpoint, count in self.in_flight.items()
            if count >= self.limit_of(endpoint)
        )


@attrs.frozen(kw_only=True)
class SavedAttempts:
    """The outcome of saving a batch of attempts: the endpoints it disabled,
    and the deliveries whose attempts were dropped because their endpoint
    was deleted while they were posted."""

    disabled: list[str]
    dropped: frozenset[str]


@attrs.frozen(kw_only=True)
class AttemptRecord:
    """The result of posting one delivery, as the dispatcher stores it."""

    delivery_id: str
    endpoint_id: str
    attempt: int
    attempted_at: datetime
    status_code: int | None
    latency: timedelta
    response: str
    error: str | None
    outcome: AttemptOutcome
    next_attempt_at: datetime | None = None


@attrs.frozen(kw_only=True)
class WebhookAttempt:
    """One stored attempt, as ``GET /v1/webhooks/{id}/deliveries`` lists it."""

    sequence: int
    delivery_id: str
    event_id: str
    event_type: str
    message_id: str | None
    attempt: int
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    response: str
    error: str | None
    outcome: AttemptOutcome
    delivery_status: DeliveryStatus
