"""Webhook endpoints, Standard Webhooks signatures and the dispatcher.

``service.WebhookService`` manages endpoints, ``dispatcher.WebhookDispatcher``
posts deliveries with ``sender.HttpxWebhookSender``. Only the value types
and pure helpers are exported here, so the SQL modules can import them
without a cycle.
"""

from sendarix_backends.webhooks.model import (
    AttemptOutcome,
    DeliveryStatus,
    EndpointChanges,
    WebhookAttempt,
    WebhookEndpoint,
)
from sendarix_backends.webhooks.schedule import DEFAULT_WEBHOOK_POLICY, WebhookPolicy
from sendarix_backends.webhooks.signing import delivery_headers, sign

__all__ = [
    "DEFAULT_WEBHOOK_POLICY",
    "AttemptOutcome",
    "DeliveryStatus",
    "EndpointChanges",
    "WebhookAttempt",
    "WebhookEndpoint",
    "WebhookPolicy",
    "delivery_headers",
    "sign",
]
