"""MX resolution for direct delivery (RFC 5321, section 5.1).

``MxResolver.resolve`` turns a recipient domain into the hosts to try, in
order, each with its addresses. DNS outcomes become delivery errors here:
NXDOMAIN, a null MX (RFC 7505) and a domain without any route are permanent;
SERVFAIL and timeouts are temporary.
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import logging
import random
import time
from collections.abc import Callable, Sequence

import attrs
import dns.asyncresolver
import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver
from dns.rdtypes.ANY.MX import MX

from sendarix_backends.ip_addresses import METADATA_ADDRESSES, carried_ipv4
from sendarix_backends.smtp.cache import TtlCache
from sendarix_core.errors import (
    ConfigurationError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
)

__all__ = ["MxHost", "MxResolver"]

logger = logging.getLogger("sendarix.smtp")

_ADDRESS_TYPES = (dns.rdatatype.A, dns.rdatatype.AAAA)


@attrs.frozen
class MxHost:
    """One mail exchanger of a domain and its addresses, IPv4 first."""

    host: str
    preference: int
    addresses: tuple[str, ...]


@attrs.frozen
class _Route:
    """The hosts of one domain sorted by preference, before shuffling ties."""

    hosts: tuple[MxHost, ...]
    ttl: float


@attrs.frozen
class _Addresses:
    addresses: tuple[str, ...]
    ttl: float | None
    failure: TemporaryDeliveryError | None = None


class MxResolver:
    """Resolves recipient domains to the MX hosts to deliver to.

    ``nameservers`` are ``(address, port)`` pairs to ask; ``None`` uses the
    system configuration (``/etc/resolv.conf``). ``timeout`` bounds one whole
    lookup in seconds. DNS responses are cached for their TTL, so a burst of
    messages to one domain costs one set of queries. Failures are not cached.
    """

    def __init__(
        self,
        nameservers: Sequence[tuple[str, int]] | None,
        timeout: float = 5.0,
        *,
        rng: random.Random | None = None,
        cache_size: int = 1024,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._resolver = _make_resolver(nameservers, timeout)
        self._rng = rng or random.Random()  # noqa: S311 - load spreading, not security
        self._cache: TtlCache[dns.name.Name, _Route] = TtlCache(cache_size, clock)
        self._locks: dict[dns.name.Name, asyncio.Lock] = {}

    async def resolve(self, domain: str) -> list[MxHost]:
        """Return the hosts to try for ``domain``, most preferred first.

        Hosts of equal preference come in random order (RFC 5321, section
        5.1). Raises ``PermanentDeliveryError`` or ``TemporaryDeliveryError``.
        """
        name = _parse_domain(domain)
        route = self._cache.get(name)
        if route is None:
            route = await self._resolve_once(domain, name)
        return self._order(route.hosts)

    async def _resolve_once(self, domain: str, name: dns.name.Name) -> _Route:
        # Concurrent deliveries to one domain wait for the first lookup
        # instead of each sending their own queries.
        lock = self._locks.setdefault(name, asyncio.Lock())
        try:
            async with lock:
                route = self._cache.get(name)
                if route is None:
                    route = await self._lookup(domain, name)
                    self._cache.put(name, route, route.ttl)
                return route
        finally:
            if not lock.locked():
                self._locks.pop(name, None)

    async def _lookup(self, domain: str, name: dns.name.Name) -> _Route:
        answer = await self._query(name, dns.rdatatype.MX)
        if answer is None:
            raise PermanentDeliveryError(
                f"the domain {domain} does not exist (NXDOMAIN)",
                reply_code=550,
                enhanced_code="5.1.2",
            )
        if answer.rrset is None:
            return await self._implicit_route(domain, name)

        records = [rdata for rdata in answer.rrset if isinstance(rdata, MX)]
        exchanges = [record for record in records if record.exchange != dns.name.root]
        if not exchanges:
            raise PermanentDeliveryError(
                f"the domain {domain} accepts no mail: it publishes a null MX record",
                reply_code=556,
                enhanced_code="5.1.10",
            )
        return await self._explicit_route(domain, exchanges, answer.rrset.ttl)

    async def _explicit_route(
        self, domain: str, records: list[MX], mx_ttl: float
    ) -> _Route:
        # Servers return records in any order; sorting ties by name makes the
        # later shuffle depend on the random generator alone.
        records = sorted(
            records, key=lambda record: (record.preference, record.exchange)
        )
        lookups = await asyncio.gather(
            *(self._addresses(record.exchange) for record in records)
        )

        hosts = []
        ttls = [mx_ttl]
        failures = []
        for record, found in zip(records, lookups, strict=True):
            host = record.exchange.to_text(omit_final_dot=True)
            if found.failure is not None:
                failures.append(found.failure)
            if found.ttl is not None:
                ttls.append(found.ttl)
            if found.addresses:
                hosts.append(MxHost(host, record.preference, found.addresses))
            else:
                logger.info(
                    "MX host %s of %s has no address, skipped",
                    host,
                    domain,
                    extra={"action": "mx_host_skipped", "mx_host": host},
                )

        if not hosts:
            raise _no_route_error(domain, records, failures)
        # A route that lost a host to a temporary failure is not cached, so
        # the next delivery queries again.
        ttl = 0.0 if failures else min(ttls)
        return _Route(tuple(hosts), ttl)

    async def _implicit_route(self, domain: str, name: dns.name.Name) -> _Route:
        # Without MX records, the domain itself is the only host, with
        # preference 0 (RFC 5321, section 5.1).
        found = await self._addresses(name)
        if found.failure is not None and not found.addresses:
            raise found.failure
        if not found.addresses:
            raise PermanentDeliveryError(
                f"the domain {domain} has no MX record and no A or AAAA record",
                reply_code=550,
                enhanced_code="5.1.2",
            )
        ttl = 0.0 if found.failure is not None else (found.ttl or 0.0)
        host = MxHost(name.to_text(omit_final_dot=True), 0, found.addresses)
        return _Route((host,), ttl)

    async def _addresses(self, name: dns.name.Name) -> _Addresses:
        results = await asyncio.gather(
            *(self._query(name, rdtype) for rdtype in _ADDRESS_TYPES),
            return_exceptions=True,
        )

        addresses: list[str] = []
        ttls: list[float] = []
        failure = None
        for result in results:
            if isinstance(result, TemporaryDeliveryError):
                failure = result
            elif isinstance(result, BaseException):
                raise result
            elif result is not None and result.rrset is not None:
                addresses.extend(
                    text
                    for text in (rdata.to_text() for rdata in result.rrset)
                    if is_deliverable_address(text)
                )
                ttls.append(result.rrset.ttl)
        return _Addresses(tuple(addresses), min(ttls, default=None), failure)

    async def _query(
        self, name: dns.name.Name, rdtype: dns.rdatatype.RdataType
    ) -> dns.resolver.Answer | None:
        """Ask for one record type; ``None`` means the name does not exist."""
        try:
            return await self._resolver.resolve(
                name, rdtype, raise_on_no_answer=False, search=False
            )
        except (dns.resolver.NXDOMAIN, dns.resolver.YXDOMAIN):
            return None
        except dns.resolver.NoNameservers as exc:
            reason = "every nameserver failed to answer (SERVFAIL or REFUSED)"
            raise _dns_failure(name, rdtype, reason) from exc
        except dns.exception.Timeout as exc:
            raise _dns_failure(name, rdtype, "timed out") from exc
        except (dns.exception.DNSException, OSError) as exc:
            raise _dns_failure(name, rdtype, str(exc)) from exc

    def _order(self, hosts: tuple[MxHost, ...]) -> list[MxHost]:
        ordered: list[MxHost] = []
        for _, group in itertools.groupby(hosts, key=lambda host: host.preference):
            tied = list(group)
            self._rng.shuffle(tied)
            ordered.extend(tied)
        return ordered


def is_deliverable_address(text: str) -> bool:
    """Return whether an MX host's address may be connected to.

    Unspecified, link-local (which includes cloud metadata services at
    169.254.169.254), multicast and metadata addresses (AWS's
    ``fd00:ec2::254``) never run a mail server, so an
    MX record pointing there is a mistake or an attack and is skipped.
    Loopback and private addresses are allowed: staging systems and the
    tests run their SMTP servers there. An IPv6 address that carries an
    IPv4 address (``::ffff:169.254.169.254``) is checked as that address
    too, because connecting to it reaches the IPv4 host.
    """
    address = ipaddress.ip_address(text)
    carried = carried_ipv4(address)
    return all(
        not (one.is_unspecified or one.is_link_local or one.is_multicast)
        and one not in METADATA_ADDRESSES
        for one in (address, carried)
        if one is not None
    )


def _make_resolver(
    nameservers: Sequence[tuple[str, int]] | None, timeout: float
) -> dns.asyncresolver.Resolver:
    if nameservers is None:
        try:
            resolver = dns.asyncresolver.Resolver()
        except dns.resolver.NoResolverConfiguration as exc:
            raise ConfigurationError(
                "the system has no DNS resolver configuration (/etc/resolv.conf); "
                "pass the nameservers to ask (SENDARIX_DNS_NAMESERVERS)"
            ) from exc
    else:
        if not nameservers:
            raise ConfigurationError(
                "nameservers is empty; pass at least one (address, port) pair, "
                "or None to use the system configuration"
            )
        resolver = dns.asyncresolver.Resolver(configure=False)
        resolver.nameservers = [
            dns.nameserver.Do53Nameserver(address, port)
            for address, port in nameservers
        ]

    resolver.lifetime = timeout
    resolver.timeout = min(resolver.timeout, timeout)
    resolver.cache = None
    return resolver


def _parse_domain(domain: str) -> dns.name.Name:
    try:
        return dns.name.from_text(domain)
    except dns.exception.DNSException as exc:
        raise PermanentDeliveryError(
            f"the domain {domain!r} is not a valid DNS name: {exc}",
            reply_code=550,
            enhanced_code="5.1.2",
        ) from exc


def _dns_failure(
    name: dns.name.Name, rdtype: dns.rdatatype.RdataType, reason: str
) -> TemporaryDeliveryError:
    host = name.to_text(omit_final_dot=True)
    return TemporaryDeliveryError(
        f"DNS lookup of the {rdtype.name} records of {host} failed: {reason}",
        reply_code=451,
        enhanced_code="4.4.3",
    )


def _no_route_error(
    domain: str, records: list[MX], failures: list[TemporaryDeliveryError]
) -> TemporaryDeliveryError | PermanentDeliveryError:
    names = ", ".join(
        record.exchange.to_text(omit_final_dot=True) for record in records
    )
    if failures:
        return TemporaryDeliveryError(
            f"no MX host of {domain} ({names}) could be resolved: "
            f"{failures[0].reply_text}",
            reply_code=451,
            enhanced_code="4.4.3",
        )
    return PermanentDeliveryError(
        f"no MX host of {domain} ({names}) has an A or AAAA record with an "
        "address that may run a mail server (unspecified, link-local and "
        "multicast addresses are skipped)",
        reply_code=550,
        enhanced_code="5.4.4",
    )
