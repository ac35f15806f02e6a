"""MxResolver against a real DNS server on loopback."""

from __future__ import annotations

import asyncio
import random

import pytest

from sendarix_backends.smtp import MxHost, MxResolver
from sendarix_core.errors import (
    ConfigurationError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
)
from tests.support.dns_server import DnsServer
from tests.transport.conftest import FakeClock

pytestmark = pytest.mark.anyio


def make_resolver(
    dns_server: DnsServer,
    *,
    seed: int = 1,
    clock: FakeClock | None = None,
    timeout: float = 2.0,
) -> MxResolver:
    return MxResolver(
        [("127.0.0.1", dns_server.port)],
        timeout=timeout,
        rng=random.Random(seed),
        clock=clock or FakeClock(),
    )


async def test_resolve_sorts_by_preference(dns_server: DnsServer) -> None:
    dns_server.add_mx("example.test", 30, "mx3.example.test")
    dns_server.add_mx("example.test", 10, "mx1.example.test")
    dns_server.add_mx("example.test", 20, "mx2.example.test")
    for number in (1, 2, 3):
        dns_server.add_a(f"mx{number}.example.test", f"127.0.0.{number}")

    hosts = await make_resolver(dns_server).resolve("example.test")

    assert [host.host for host in hosts] == [
        "mx1.example.test",
        "mx2.example.test",
        "mx3.example.test",
    ]
    assert [host.preference for host in hosts] == [10, 20, 30]


async def test_resolve_shuffles_equal_preferences(dns_server: DnsServer) -> None:
    dns_server.add_mx("example.test", 5, "backup.example.test")
    for number in range(1, 7):
        dns_server.add_mx("example.test", 10, f"mx{number}.example.test")
        dns_server.add_a(f"mx{number}.example.test", f"127.0.0.{number}")
    dns_server.add_a("backup.example.test", "127.0.0.9")
    resolver = make_resolver(dns_server)

    orders = set()
    for _ in range(10):
        hosts = await resolver.resolve("example.test")
        assert hosts[0].host == "backup.example.test"
        orders.add(tuple(host.host for host in hosts[1:]))

    assert len(orders) > 1


async def test_resolve_shuffle_follows_seed(dns_server: DnsServer) -> None:
    for number in range(1, 7):
        dns_server.add_mx("example.test", 10, f"mx{number}.example.test")
        dns_server.add_a(f"mx{number}.example.test", f"127.0.0.{number}")

    first = await make_resolver(dns_server, seed=3).resolve("example.test")
    second = await make_resolver(dns_server, seed=3).resolve("example.test")

    assert first == second


async def test_resolve_lists_ipv4_before_ipv6(dns_server: DnsServer) -> None:
    dns_server.add_mx("example.test", 10, "mx1.example.test")
    dns_server.add_aaaa("mx1.example.test", "::1")
    dns_server.add_a("mx1.example.test", "127.0.0.1")

    hosts = await make_resolver(dns_server).resolve("example.test")

    assert hosts == [MxHost("mx1.example.test", 10, ("127.0.0.1", "::1"))]


async def test_resolve_skips_host_without_address(dns_server: DnsServer) -> None:
    dns_server.add_mx("example.test", 10, "gone.example.test")
    dns_server.add_mx("example.test", 20, "mx2.example.test")
    dns_server.add_a("mx2.example.test", "127.0.0.2")

    hosts = await make_resolver(dns_server).resolve("example.test")

    assert [host.host for host in hosts] == ["mx2.example.test"]


async def test_resolve_skips_host_with_servfail(dns_server: DnsServer) -> None:
    dns_server.add_mx("example.test", 10, "broken.example.test")
    dns_server.add_mx("example.test", 20, "mx2.example.test")
    dns_server.set_servfail("broken.example.test")
    dns_server.add_a("mx2.example.test", "127.0.0.2")

    hosts = await make_resolver(dns_server).resolve("example.test")

    assert [host.host for host in hosts] == ["mx2.example.test"]


async def test_resolve_implicit_mx(dns_server: DnsServer) -> None:
    dns_server.add_a("example.test", "127.0.0.1")
    dns_server.add_aaaa("example.test", "::1")

    hosts = await make_resolver(dns_server).resolve("example.test")

    assert hosts == [MxHost("example.test", 0, ("127.0.0.1", "::1"))]


async def test_resolve_no_mx_no_address(dns_server: DnsServer) -> None:
    dns_server.add_txt("example.test", "v=spf1 -all")

    with pytest.raises(PermanentDeliveryError) as caught:
        await make_resolver(dns_server).resolve("example.test")

    assert caught.value.reply_code == 550
    assert caught.value.enhanced_code == "5.1.2"
    assert "example.test" in caught.value.reply_text


async def test_resolve_null_mx(dns_server: DnsServer) -> None:
    dns_server.add_null_mx("example.test")
    dns_server.add_a("example.test", "127.0.0.1")

    with pytest.raises(PermanentDeliveryError) as caught:
        await make_resolver(dns_server).resolve("example.test")

    assert caught.value.reply_code == 556
    assert caught.value.enhanced_code == "5.1.10"


async def test_resolve_nxdomain(dns_server: DnsServer) -> None:
    with pytest.raises(PermanentDeliveryError) as caught:
        await make_resolver(dns_server).resolve("missing.test")

    assert caught.value.reply_code == 550
    assert caught.value.enhanced_code == "5.1.2"
    assert "missing.test" in caught.value.reply_text


async def test_resolve_servfail(dns_server: DnsServer) -> None:
    dns_server.set_servfail("example.test")

    with pytest.raises(TemporaryDeliveryError) as caught:
        await make_resolver(dns_server).resolve("example.test")

    assert caught.value.reply_code == 451
    assert caught.value.enhanced_code == "4.4.3"
    assert "SERVFAIL" in caught.value.reply_text


async def test_resolve_timeout(dns_server: DnsServer) -> None:
    dns_server.set_unresponsive("example.test")
    resolver = make_resolver(dns_server, timeout=0.3)

    with pytest.raises(TemporaryDeliveryError) as caught:
        await resolver.resolve("example.test")

    assert caught.value.enhanced_code == "4.4.3"
    assert "timed out" in caught.value.reply_text


async def test_resolve_every_host_without_address(dns_server: DnsServer) -> None:
    dns_server.add_mx("example.test", 10, "gone1.example.test")
    dns_server.add_mx("example.test", 20, "gone2.example.test")

    with pytest.raises(PermanentDeliveryError) as caught:
        await make_resolver(dns_server).resolve("example.test")

    assert caught.value.enhanced_code == "5.4.4"
    assert "gone1.example.test" in caught.value.reply_text


async def test_resolve_every_host_servfail(dns_server: DnsServer) -> None:
    dns_server.add_mx("example.test", 10, "broken.example.test")
    dns_server.set_servfail("broken.example.test")

    with pytest.raises(TemporaryDeliveryError) as caught:
        await make_resolver(dns_server).resolve("example.test")

    assert caught.value.enhanced_code == "4.4.3"


async def test_resolve_invalid_domain(dns_server: DnsServer) -> None:
    with pytest.raises(PermanentDeliveryError) as caught:
        await make_resolver(dns_server).resolve("a..b")

    assert caught.value.enhanced_code == "5.1.2"


async def test_resolve_caches_answer(dns_server: DnsServer) -> None:
    dns_server.add_mx("example.test", 10, "mx1.example.test")
    dns_server.add_a("mx1.example.test", "127.0.0.1")
    resolver = make_resolver(dns_server)

    for _ in range(5):
        await resolver.resolve("example.test")

    assert dns_server.query_count("example.test", "MX") == 1
    assert dns_server.query_count("mx1.example.test", "A") == 1


async def test_resolve_cache_expires(dns_server: DnsServer) -> None:
    dns_server.add_mx("example.test", 10, "mx1.example.test", ttl=60)
    dns_server.add_a("mx1.example.test", "127.0.0.1", ttl=30)
    clock = FakeClock()
    resolver = make_resolver(dns_server, clock=clock)
    await resolver.resolve("example.test")

    clock.now += 29
    await resolver.resolve("example.test")
    assert dns_server.query_count("example.test", "MX") == 1

    clock.now += 2
    await resolver.resolve("example.test")
    assert dns_server.query_count("example.test", "MX") == 2


async def test_resolve_failure_not_cached(dns_server: DnsServer) -> None:
    dns_server.set_servfail("example.test")
    resolver = make_resolver(dns_server)
    with pytest.raises(TemporaryDeliveryError):
        await resolver.resolve("example.test")

    dns_server.remove("example.test")
    dns_server.add_mx("example.test", 10, "mx1.example.test")
    dns_server.add_a("mx1.example.test", "127.0.0.1")

    hosts = await resolver.resolve("example.test")
    assert [host.host for host in hosts] == ["mx1.example.test"]


async def test_resolve_concurrent_lookups_share_queries(
    dns_server: DnsServer,
) -> None:
    dns_server.add_mx("example.test", 10, "mx1.example.test")
    dns_server.add_a("mx1.example.test", "127.0.0.1")
    resolver = make_resolver(dns_server)

    results = await asyncio.gather(
        *(resolver.resolve("example.test") for _ in range(20))
    )

    assert all(hosts == results[0] for hosts in results)
    assert dns_server.query_count("example.test", "MX") == 1


def test_resolver_empty_nameservers() -> None:
    with pytest.raises(ConfigurationError, match="nameservers is empty"):
        MxResolver([])


@pytest.mark.parametrize("address", ["169.254.169.254", "0.0.0.0", "224.0.0.1"])
async def test_unusable_mx_address_skipped(
    dns_server: DnsServer, resolver: MxResolver, address: str
) -> None:
    dns_server.add_mx("metadata.test", 10, "mx.metadata.test")
    dns_server.add_a("mx.metadata.test", address)

    with pytest.raises(PermanentDeliveryError):
        await resolver.resolve("metadata.test")


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:169.254.169.254",
        "::ffff:0.0.0.0",
        "::ffff:224.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "2002:a9fe:a9fe::1",
        "fd00:ec2::254",
    ],
)
async def test_unusable_ipv6_mx_address_skipped(
    dns_server: DnsServer, resolver: MxResolver, address: str
) -> None:
    dns_server.add_mx("metadata.test", 10, "mx.metadata.test")
    dns_server.add_aaaa("mx.metadata.test", address)

    with pytest.raises(PermanentDeliveryError):
        await resolver.resolve("metadata.test")


async def test_ipv6_carrying_loopback_kept(
    dns_server: DnsServer, resolver: MxResolver
) -> None:
    dns_server.add_mx("mapped.test", 10, "mx.mapped.test")
    dns_server.add_aaaa("mx.mapped.test", "::ffff:127.0.0.1")

    [host] = await resolver.resolve("mapped.test")

    assert host.addresses == ("::ffff:127.0.0.1",)
