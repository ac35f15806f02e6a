"""Where sending domains are kept: the interface and an in-memory version."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

import attrs

from sendarix_backends.domains.model import DomainStatus, RecordProblem, SendingDomain

__all__ = ["DomainStore", "MemoryDomainStore"]


class DomainStore(Protocol):
    async def add_domain(self, domain: SendingDomain) -> bool:
        """Store a new domain; return False when the name exists already."""
        ...

    async def get_domain(self, name: str) -> SendingDomain | None: ...

    async def list_domains(self) -> list[SendingDomain]:
        """Return every domain, ordered by name."""
        ...

    async def delete_domain(self, name: str) -> bool:
        """Delete a domain and its keys; return whether it existed."""
        ...

    async def record_check(
        self,
        name: str,
        *,
        status: DomainStatus,
        checked_at: datetime,
        missing: Sequence[RecordProblem],
    ) -> SendingDomain | None:
        """Store the outcome of a verification; None when the domain is gone.

        ``verified_at`` is set to ``checked_at`` when the status is verified.
        """
        ...


class MemoryDomainStore:
    """Domains in a dictionary, for tests and the in-memory message store."""

    def __init__(self) -> None:
        self._domains: dict[str, SendingDomain] = {}

    async def add_domain(self, domain: SendingDomain) -> bool:
        if domain.name in self._domains:
            return False
        self._domains[domain.name] = domain
        return True

    async def get_domain(self, name: str) -> SendingDomain | None:
        return self._domains.get(name)

    async def list_domains(self) -> list[SendingDomain]:
        return [self._domains[name] for name in sorted(self._domains)]

    async def delete_domain(self, name: str) -> bool:
        return self._domains.pop(name, None) is not None

    async def record_check(
        self,
        name: str,
        *,
        status: DomainStatus,
        checked_at: datetime,
        missing: Sequence[RecordProblem],
    ) -> SendingDomain | None:
        domain = self._domains.get(name)
        if domain is None:
            return None
        verified_at = checked_at if status == DomainStatus.VERIFIED else None
        updated = attrs.evolve(
            domain,
            status=status,
            checked_at=checked_at,
            verified_at=verified_at or domain.verified_at,
            missing=tuple(missing),
        )
        self._domains[name] = updated
        return updated
