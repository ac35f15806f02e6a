"""IP address checks shared by MX delivery and webhooks."""

from __future__ import annotations

import ipaddress

__all__ = ["METADATA_ADDRESSES", "IpAddress", "carried_ipv4"]

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Instance metadata services of AWS, GCP, Azure (IPv4) and AWS (IPv6).
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)

_CARRYING_LOW_BITS = (
    ipaddress.ip_network("::/96"),
    ipaddress.ip_network("64:ff9b::/96"),
    ipaddress.ip_network("64:ff9b:1::/48"),
)


def carried_ipv4(address: IpAddress) -> ipaddress.IPv4Address | None:
    """Return the IPv4 address that an IPv6 address carries, if any.

    These are IPv4-mapped (``::ffff:a.b.c.d``), IPv4-compatible
    (``::a.b.c.d``), 6to4 (``2002::/16``, RFC 3056) and NAT64 addresses
    (``64:ff9b::/96`` of RFC 6052, and ``64:ff9b:1::/48`` of RFC 8215 read
    as a /96 prefix).
    """
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    low = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    # :: and ::1, the unspecified and loopback addresses, carry none.
    if any(address in network for network in _CARRYING_LOW_BITS) and int(low) > 1:
        return low
    return None
