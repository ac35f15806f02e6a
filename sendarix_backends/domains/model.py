"""Sending domains, their DKIM keys and the DNS records they need."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

import attrs

from sendarix_backends.dkim import DkimAlgorithm

__all__ = ["DkimKey", "DnsRecord", "DomainStatus", "RecordProblem", "SendingDomain"]


class DomainStatus(StrEnum):
    PENDING = "pending"
    VERIFIED = "verified"
    FAILED = "failed"


@attrs.frozen(kw_only=True)
class DnsRecord:
    """A record to publish: ``type`` is TXT, CNAME or MX; ``name`` is absolute."""

    type: str
    name: str
    value: str
    purpose: str
    """What the record is for: dkim, spf, dmarc or return_path."""

    def to_dict(self) -> dict[str, str]:
        return {
            "type": self.type,
            "name": self.name,
            "value": self.value,
            "purpose": self.purpose,
        }


@attrs.frozen(kw_only=True)
class RecordProblem:
    """A record that verification did not find, and what it found instead."""

    record: DnsRecord
    problem: str

    def to_dict(self) -> dict[str, str]:
        return {**self.record.to_dict(), "problem": self.problem}


@attrs.frozen(kw_only=True)
class DkimKey:
    """A DKIM key pair; ``public_key`` is the base64 ``p=`` value of its record."""

    selector: str
    algorithm: DkimAlgorithm
    private_key_pem: str = attrs.field(repr=False)
    public_key: str


@attrs.frozen(kw_only=True)
class SendingDomain:
    """A domain Sendarix signs for, once its records are found in DNS.

    ``missing`` holds the records the last verification did not find.
    """

    name: str
    status: DomainStatus
    keys: tuple[DkimKey, ...]
    created_at: datetime
    checked_at: datetime | None = None
    verified_at: datetime | None = None
    missing: tuple[RecordProblem, ...] = ()
