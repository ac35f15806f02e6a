"""Destination pacing: per-site limits shared by every worker."""

from sendarix_backends.pacing.pacer import Admission, Pacer
from sendarix_backends.pacing.store import (
    MemoryPacingStore,
    PacingStore,
    SiteRequest,
    SiteState,
)

__all__ = [
    "Admission",
    "MemoryPacingStore",
    "Pacer",
    "PacingStore",
    "SiteRequest",
    "SiteState",
]
