"""Sending domains: DKIM keys, the DNS records to publish, verification."""

from sendarix_backends.domains.model import (
    DkimKey,
    DnsRecord,
    DomainStatus,
    RecordProblem,
    SendingDomain,
)
from sendarix_backends.domains.service import Domains
from sendarix_backends.domains.store import DomainStore, MemoryDomainStore

__all__ = [
    "DkimKey",
    "DnsRecord",
    "DomainStatus",
    "DomainStore",
    "Domains",
    "MemoryDomainStore",
    "RecordProblem",
    "SendingDomain",
]
