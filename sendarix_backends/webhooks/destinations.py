"""Address checks of webhook URLs, made at creation and before each post.

Without ``SENDARIX_WEBHOOK_ALLOW_PRIVATE`` a URL is rejected when its host
is, or resolves to, a loopback, private (RFC 1918, unique local), link-local,
shared (100.64/10), multicast, reserved or unspecified address. Cloud
metadata addresses are rejected even when private addresses are allowed.
Every address a name resolves to must pass, and the post then connects to
one of the checked addresses, so a DNS answer that changes between the check
and the connection (DNS rebinding) can't redirect it.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import urlsplit

import anyio
import attrs
import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver
import idna

from sendarix_backends.ip_addresses import (
    METADATA_ADDRESSES,
    IpAddress,
    carried_ipv4,
)

__all__ = [
    "AddressResolver",
    "Destination",
    "DestinationError",
    "check_address",
    "parse_url",
]

_SHARED = ipaddress.ip_network("100.64.0.0/10")
_BROADCAST = ipaddress.ip_address("255.255.255.255")


# IPv6 ranges whose last 32 bits are an IPv4 address: IPv4-compatible
# addresses and the NAT64 prefixes.
class DestinationError(ValueError):
    """A webhook URL is malformed or points where webhooks may not go."""


@attrs.frozen
class Destination:
    """A parsed webhook URL: scheme, host (without brackets), port, path.

    ``host`` is in its ASCII form: an internationalized name is converted to
    its IDNA A-labels (``bücher.test`` becomes ``xn--bcher-kva.test``), which
    DNS, ``Host`` and TLS SNI need.
    """

    scheme: str
    host: str
    port: int
    target: str

    @property
    def literal(self) -> IpAddress | None:
        try:
            return ipaddress.ip_address(self.host)
        except ValueError:
            return None


def parse_url(url: str) -> Destination:
    """Parse an http or https URL; raise DestinationError naming the problem."""
    if len(url) > 2048:
        raise DestinationError("the URL is longer than 2048 characters")
    # urlsplit drops tabs and line breaks silently (CPython 3.11), so a URL
    # with them would be stored as given but posted to another path.
    unsafe = next((c for c in url if c <= " " or c == "\x7f"), None)
    if unsafe is not None:
        raise DestinationError(
            f"{url[:100]!r} contains the character U+{ord(unsafe):04X}; "
            "percent-encode spaces and control characters"
        )
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise DestinationError(f"{url!r} is not a valid URL: {exc}") from None
    if parts.scheme not in {"http", "https"}:
        raise DestinationError(f"{url!r} must start with https:// or http://")
    if not parts.hostname:
        raise DestinationError(f"{url!r} has no host")
    if parts.username is not None or parts.password is not None:
        raise DestinationError(
            f"{url!r} contains credentials; verify signatures instead"
        )
    if parts.fragment:
        raise DestinationError(f"{url!r} has a fragment (#…), which is never sent")
    if port == 0:
        raise DestinationError(f"{url!r} names port 0, which no server listens on")
    default_port = 443 if parts.scheme == "https" else 80
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    host = _ascii_host(parts.hostname, url)
    return Destination(parts.scheme, host, port or default_port, target)


def _ascii_host(host: str, url: str) -> str:
    """Return ``host`` with its non-ASCII labels converted to IDNA A-labels."""
    if host.isascii():
        # ASCII names are sent as given, because IDNA would reject names such
        # as _acme.example.com, which DNS and HTTP accept.
        return host
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except UnicodeError as exc:  # idna.IDNAError and its subclasses
        raise DestinationError(
            f"{url!r} has the host {host!r}, which is not a valid "
            f"internationalized domain name ({exc}); correct the host name"
        ) from None


def check_address(address: IpAddress, *, allow_private: bool) -> str | None:
    """Return why webhooks may not go to ``address``, or ``None`` if they may.

    An IPv6 address that carries an IPv4 address is checked as that IPv4
    address too, so ``[64:ff9b::a9fe:a9fe]`` is a metadata address.
    """
    carried = carried_ipv4(address)
    if carried is not None:
        reason = _check_one(carried, allow_private=allow_private)
        if reason is not None:
            return f"{address} carries {carried}, which {reason}"
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            # ::ffff:0:0/96 only names an IPv4 address, and Python counts the
            # range as private, which would reject every mapped address.
            return None
    reason = _check_one(address, allow_private=allow_private)
    return None if reason is None else f"{address} {reason}"


def _check_one(address: IpAddress, *, allow_private: bool) -> str | None:
    if address in METADATA_ADDRESSES:
        return "is a cloud metadata address"
    # No HTTP server listens on these, private network or not.
    if address.is_multicast or address.is_unspecified or address == _BROADCAST:
        return "is not a unicast address"
    if allow_private:
        return None
    if address.is_loopback:
        return "is a loopback address"
    if address.is_link_local:
        return "is a link-local address"
    if address.is_reserved:
        return "is not a unicast internet address"
    if address.is_private or address in _SHARED:
        return "is a private address"
    return None


def _is_unicast(address: IpAddress) -> bool:
    return check_address(address, allow_private=True) is None


def _is_metadata(address: IpAddress) -> bool:
    return address in METADATA_ADDRESSES or carried_ipv4(address) in METADATA_ADDRESSES


class AddressResolver:
    """Resolves webhook hosts to addresses and checks every one.

    ``nameservers`` are ``(address, port)`` pairs to ask, as for MX lookups;
    with ``None`` the system resolver (``getaddrinfo``, so also
    ``/etc/hosts``) resolves names.
    """

    def __init__(
        self,
        nameservers: Sequence[tuple[str, int]] | None,
        *,
        allow_private: bool,
        timeout: float = 5.0,
    ) -> None:
        self.allow_private = allow_private
        self._timeout = timeout
        self._dns: dns.asyncresolver.Resolver | None = None
        if nameservers:
            resolver = dns.asyncresolver.Resolver(configure=False)
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(address, port)
                for address, port in nameservers
            ]
            resolver.lifetime = timeout
            resolver.cache = None
            self._dns = resolver

    async def checked_addresses(self, destination: Destination) -> list[IpAddress]:
        """Return the addresses of ``destination``, all of them allowed.

        Raises DestinationError when the name does not resolve or when any
        address is not allowed.
        """
        literal = destination.literal
        found = [literal] if literal is not None else await self._resolve(destination)
        for address in found:
            reason = check_address(address, allow_private=self.allow_private)
            if reason is None:
                continue
            if _is_metadata(address):
                # No setting allows these, so the only way out is another host.
                advice = "use another host; no setting allows metadata addresses"
            elif self.allow_private or not _is_unicast(address):
                # The setting is on already, or would not allow this address.
                advice = "use the address of a host that receives webhooks"
            else:
                advice = (
                    "use a public address, or set "
                    "SENDARIX_WEBHOOK_ALLOW_PRIVATE=true for internal receivers"
                )
            raise DestinationError(
                f"webhook host {destination.host!r} is not allowed: {reason}; {advice}"
            )
        return found

    async def _resolve(self, destination: Destination) -> list[IpAddress]:
        host = destination.host
        try:
            with anyio.fail_after(self._timeout):
                if self._dns is not None:
                    answers = await _resolve_dns(self._dns, host)
                else:
                    answers = await self._resolve_system(host, destination.port)
        except TimeoutError:
            raise DestinationError(f"resolving {host!r} timed out") from None
        if not answers:
            raise DestinationError(f"{host!r} has no address")
        return list(dict.fromkeys(answers))

    async def _resolve_system(self, host: str, port: int) -> list[IpAddress]:
        try:
            infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise DestinationError(f"{host!r} does not resolve: {exc}") from None
        return [ipaddress.ip_address(info[4][0]) for info in infos]


async def _resolve_dns(
    resolver: dns.asyncresolver.Resolver, host: str
) -> list[IpAddress]:
    found: list[IpAddress] = []
    for rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA):
        try:
            answer = await resolver.resolve(host, rdtype, search=False)
        except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
            continue
        except dns.exception.DNSException as exc:
            raise DestinationError(f"resolving {host!r} failed: {exc}") from None
        found.extend(ipaddress.ip_address(record.address) for record in answer)
    return found
