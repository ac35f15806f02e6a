"""The built-in backends, registered like any third-party plugin."""

from __future__ import annotations

from sendarix_backends.hookspecs import hookimpl
from sendarix_backends.settings import DeliveryMode, Settings
from sendarix_core.ports import MessageQueue, MessageStore, Transport, WebhookSender

SQL_SCHEMES = ("sqlite://", "postgresql://", "postgresql+psycopg://", "postgres://")


@hookimpl(trylast=True)
def sendarix_storage(settings: Settings) -> MessageStore | None:
    if not settings.database_url.startswith(SQL_SCHEMES):
        return None
    from sendarix_backends.sql import SqlStore

    return SqlStore(settings.database_url)


@hookimpl(trylast=True)
def sendarix_queue(settings: Settings, storage: MessageStore) -> MessageQueue | None:
    from sendarix_backends.sql import SqlStore

    return storage if isinstance(storage, SqlStore) else None


@hookimpl(trylast=True)
def sendarix_transport(settings: Settings) -> Transport | None:
    from sendarix_backends import smtp

    if settings.delivery_mode == DeliveryMode.SINK:
        return smtp.SinkTransport()
    if settings.delivery_mode == DeliveryMode.SMARTHOST and settings.smarthost:
        return smtp.SmarthostTransport.from_url(
            settings.smarthost,
            helo_name=settings.helo_name,
            timeout=settings.smtp_timeout,
            data_timeout=settings.smtp_data_timeout,
        )
    resolver = smtp.MxResolver(settings.dns_nameservers or None)
    return smtp.MxTransport(
        resolver,
        port=settings.destination_port,
        helo_name=settings.helo_name,
        timeout=settings.smtp_timeout,
        data_timeout=settings.smtp_data_timeout,
    )


@hookimpl(trylast=True)
def sendarix_webhook_sender(settings: Settings) -> WebhookSender | None:
    from sendarix_backends.events.services import default_webhook_sender

    return default_webhook_sender(settings)
