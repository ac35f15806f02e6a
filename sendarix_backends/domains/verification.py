"""Checking a domain's records in DNS with dnspython."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver

from sendarix_backends.domains.model import DnsRecord, RecordProblem
from sendarix_backends.domains.records import matches_txt
from sendarix_core.errors import ConfigurationError

__all__ = ["RecordChecker"]

logger = logging.getLogger("sendarix.domains")


class RecordChecker:
    """Looks records up through the configured nameservers.

    ``nameservers`` are ``(address, port)`` pairs; ``None`` uses the system
    configuration. Nothing is cached, so a verification sees DNS as it is.
    """

    def __init__(
        self, nameservers: Sequence[tuple[str, int]] | None, timeout: float = 5.0
    ) -> None:
        self._nameservers = nameservers
        self._timeout = timeout

    async def check(self, records: Sequence[DnsRecord]) -> list[RecordProblem]:
        """Return a problem for each record not found as expected."""
        resolver = self._resolver()
        problems = []
        for record in records:
            problem = await self._check_one(resolver, record)
            if problem is not None:
                problems.append(RecordProblem(record=record, problem=problem))
        return problems

    async def _check_one(
        self, resolver: dns.asyncresolver.Resolver, record: DnsRecord
    ) -> str | None:
        try:
            answer = await resolver.resolve(record.name, record.type)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return f"no {record.type} record was found at {record.name}"
        except (dns.exception.DNSException, OSError) as exc:
            # A nameserver that refuses the connection surfaces as OSError.
            logger.warning(
                "dns lookup failed",
                extra={
                    "action": "domain_lookup_failed",
                    "record": record.name,
                    "error": repr(exc),
                },
            )
            return f"the DNS lookup failed ({_describe(exc)}); try again later"

        if record.type == "TXT":
            found = [
                b"".join(rdata.strings).decode("utf-8", "replace") for rdata in answer
            ]
            return matches_txt(record, found)
        if record.type == "CNAME":
            targets = [_host(rdata.target.to_text()) for rdata in answer]
            if _host(record.value) in targets:
                return None
            return f"the CNAME points at {', '.join(targets)}, not {record.value}"

        expected_host = _host(record.value.split()[1])
        hosts = [_host(rdata.exchange.to_text()) for rdata in answer]
        if expected_host in hosts:
            return None
        return f"the MX hosts are {', '.join(hosts)}, not {expected_host}"

    def _resolver(self) -> dns.asyncresolver.Resolver:
        if self._nameservers is None:
            try:
                resolver = dns.asyncresolver.Resolver()
            except dns.resolver.NoResolverConfiguration as exc:
                raise ConfigurationError(
                    "the system has no DNS resolver configuration; set "
                    "SENDARIX_DNS_NAMESERVERS"
                ) from exc
        else:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(address, port)
                for address, port in self._nameservers
            ]
        resolver.lifetime = self._timeout
        resolver.cache = None
        return resolver


def _host(name: str) -> str:
    return name.rstrip(".").lower()


def _describe(error: Exception) -> str:
    """Say why a lookup failed in words, not dnspython's class names."""
    if isinstance(error, dns.resolver.NoNameservers):
        # dnspython's name for "every nameserver answered SERVFAIL or
        # refused", which reads like a missing configuration.
        return "the nameservers answered SERVFAIL or refused the query"
    if isinstance(error, dns.exception.Timeout):
        return "no nameserver answered in time"
    if isinstance(error, OSError):
        return f"the nameserver could not be reached: {error.strerror or error}"
    return type(error).__name__
