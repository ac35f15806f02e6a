"""``EventServices``: what the engine adds on top of the event log.

Search and analytics, webhook endpoints and their dispatcher, bounce and
complaint intake, unsubscribes, and the background tasks that process and
expire events. They need the SQL backend; ``build_event_services`` returns
``None`` for other stores.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import anyio
import anyio.abc

from sendarix_backends.events.analytics import AnalyticsQuery, align_query, build_report
from sendarix_backends.events.processor import EventProcessor, RetentionCleaner
from sendarix_backends.events.query import EventQuery
from sendarix_backends.events.storage import SqlEventStorage
from sendarix_backends.inbound.intake import ReportIntake
from sendarix_backends.settings import Settings
from sendarix_backends.webhooks.destinations import AddressResolver
from sendarix_backends.webhooks.dispatcher import WebhookDispatcher
from sendarix_backends.webhooks.schedule import DEFAULT_WEBHOOK_POLICY, WebhookPolicy
from sendarix_backends.webhooks.sender import HttpxWebhookSender
from sendarix_backends.webhooks.service import WebhookService
from sendarix_core.clock import Clock
from sendarix_core.model import Event
from sendarix_core.ports import MessageStore, Page, WebhookSender
from sendarix_core.states import EventType
from sendarix_core.suppression import (
    Suppression,
    SuppressionReason,
    normalize_recipient,
)

__all__ = ["EventServices", "build_event_services", "default_webhook_sender"]


def default_webhook_sender(settings: Settings) -> HttpxWebhookSender:
    """Return the built-in sender, with the address checks ``settings`` configure."""
    resolver = AddressResolver(
        settings.dns_nameservers or None,
        allow_private=settings.webhook_allow_private,
    )
    return HttpxWebhookSender(resolver, timeout=settings.webhook_timeout)


def build_event_services(
    *,
    store: MessageStore,
    settings: Settings,
    clock: Clock,
    new_id: Callable[[str], str],
    sender: WebhookSender | None = None,
    policy: WebhookPolicy = DEFAULT_WEBHOOK_POLICY,
) -> EventServices | None:
    """Return the services over ``store``, or ``None`` if it is not SQL."""
    from sendarix_backends.sql import SqlStore

    if not isinstance(store, SqlStore):
        return None
    return EventServices(
        storage=SqlEventStorage(store),
        settings=settings,
        clock=clock,
        new_id=new_id,
        sender=sender or default_webhook_sender(settings),
        policy=policy,
    )


class EventServices:
    def __init__(
        self,
        *,
        storage: SqlEventStorage,
        settings: Settings,
        clock: Clock,
        new_id: Callable[[str], str],
        sender: WebhookSender,
        policy: WebhookPolicy,
    ) -> None:
        self.storage = storage
        self.sender = sender
        self._clock = clock
        self._new_id = new_id

        # A lease outlives the longest post, so no second dispatcher takes
        # over a delivery whose post is still running.
        lease = timedelta(
            seconds=max(settings.lease_seconds, settings.webhook_timeout * 1.5)
        )
        self.dispatcher = WebhookDispatcher(
            storage=storage,
            sender=sender,
            clock=clock,
            policy=policy,
            lease=lease,
            poll_interval=settings.poll_interval,
        )

        self.processor = EventProcessor(
            storage=storage,
            clock=clock,
            retry_window=policy.retry_window,
            poll_interval=settings.poll_interval,
            on_deliveries=self.dispatcher.wake,
        )

        self.cleaner = RetentionCleaner(
            storage=storage,
            clock=clock,
            retention=timedelta(days=settings.event_retention_days),
        )

        self.webhooks = WebhookService(
            storage=storage,
            resolver=AddressResolver(
                settings.dns_nameservers or None,
                allow_private=settings.webhook_allow_private,
            ),
            clock=clock,
            policy=policy,
            new_id=new_id,
            on_replay=self.dispatcher.wake,
        )

        self.reports = ReportIntake(storage=storage, clock=clock, new_id=new_id)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the processor, the dispatcher and the cleaner until cancelled."""
        async with anyio.create_task_group() as task_group:
            await task_group.start(self.processor.run)
            await task_group.start(self.dispatcher.run)
            await task_group.start(self.cleaner.run)
            task_status.started()

    async def search(self, query: EventQuery) -> Page[Event]:
        return await self.storage.search_events(query)

    async def analytics(self, query: AnalyticsQuery) -> dict[str, Any]:
        """Return the analytics report of ``query`` (bounds aligned to buckets)."""
        aligned = align_query(query)
        counts, latencies = await self.storage.read_rollups(aligned)
        return build_report(aligned, counts, latencies)

    async def unsubscribe(
        self, recipient: str, *, message_id: str | None = None
    ) -> Suppression:
        """Suppress ``recipient`` as unsubscribed and record the event."""
        now = self._clock.now()
        normalized = normalize_recipient(recipient)
        suppression = Suppression(
            recipient=normalized,
            reason=SuppressionReason.USER_UNSUBSCRIBED,
            created_at=now,
            message_id=message_id,
        )
        event = Event(
            event_id=self._new_id("evt"),
            type=EventType.UNSUBSCRIBED,
            created_at=now,
            message_id=message_id,
            recipient=normalized,
            data={"reason": str(SuppressionReason.USER_UNSUBSCRIBED)},
        )
        stored, _ = await self.storage.record_unsubscribe(suppression, event)
        return stored

    async def aclose(self) -> None:
        await self.sender.aclose()
