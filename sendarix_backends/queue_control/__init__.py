"""Queue control: counts, pauses, retries and cancellations by filter."""

from sendarix_backends.queue_control.model import PauseKind, Pauses, Release
from sendarix_backends.queue_control.service import (
    CancelOutcome,
    QueueControl,
    QueueView,
    SiteCount,
)

__all__ = [
    "CancelOutcome",
    "PauseKind",
    "Pauses",
    "QueueControl",
    "QueueView",
    "Release",
    "SiteCount",
]
