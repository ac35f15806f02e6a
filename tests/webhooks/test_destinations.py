"""Which webhook URLs are allowed, at creation and at each post."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest

from sendarix_backends.webhooks.destinations import (
    AddressResolver,
    DestinationError,
    check_address,
    parse_url,
)
from sendarix_backends.webhooks.sender import HttpxWebhookSender
from tests.support.dns_server import DnsServer
from tests.webhooks.receiver import Receiver

pytestmark = pytest.mark.anyio

# A public address that the tests only ever resolve to, never connect to.
PUBLIC = "93.184.216.34"


@pytest.fixture
def dns() -> Iterator[DnsServer]:
    with DnsServer() as server:
        yield server


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd12::1", "private"),
        ("100.64.0.1", "private"),
        ("169.254.10.10", "link-local"),
        ("fe80::1", "link-local"),
        ("169.254.169.254", "metadata"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "not a unicast"),
        ("224.0.0.1", "not a unicast"),
    ],
)
def test_address_rejected(address: str, reason: str) -> None:
    found = check_address(ipaddress.ip_address(address), allow_private=False)

    assert found is not None
    assert reason in found


def test_public_address_allowed() -> None:
    assert check_address(ipaddress.ip_address(PUBLIC), allow_private=False) is None


def test_private_allowed_when_configured() -> None:
    address = ipaddress.ip_address("127.0.0.1")

    assert check_address(address, allow_private=True) is None


@pytest.mark.parametrize(
    "address",
    [
        "169.254.169.254",
        "fd00:ec2::254",
        "::ffff:169.254.169.254",
        "::a9fe:a9fe",
        "2002:a9fe:a9fe::",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b:1::a9fe:a9fe",
    ],
)
def test_metadata_rejected_even_when_private_allowed(address: str) -> None:
    found = check_address(ipaddress.ip_address(address), allow_private=True)

    assert found is not None
    assert "cloud metadata address" in found


@pytest.mark.parametrize(
    ("address", "carried"),
    [("2002:7f00:1::", "127.0.0.1"), ("64:ff9b::a00:1", "10.0.0.1")],
)
def test_carried_ipv4_checked(address: str, carried: str) -> None:
    found = check_address(ipaddress.ip_address(address), allow_private=False)

    assert found is not None
    assert f"carries {carried}" in found


@pytest.mark.parametrize(
    "address", ["224.0.0.1", "255.255.255.255", "0.0.0.0", "ff02::1"]
)
def test_non_unicast_rejected_when_private_allowed(address: str) -> None:
    found = check_address(ipaddress.ip_address(address), allow_private=True)

    assert found is not None
    assert "not a unicast address" in found


def test_mapped_public_address_allowed() -> None:
    address = ipaddress.ip_address(f"::ffff:{PUBLIC}")

    assert check_address(address, allow_private=False) is None


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("ftp://example.com/", "https://"),
        ("https:///path", "no host"),
        ("https://user:pw@example.com/", "credentials"),
        ("https://example.com/#frag", "fragment"),
        ("https://example.com:99999/", "not a valid URL"),
        ("https://example.com/" + "a" * 3000, "longer than"),
        ("https://example.com/x\r\nHost: evil", "U\\+000D"),
        ("https://example.com/a b", "U\\+0020"),
        ("https://exa\tmple.com/", "U\\+0009"),
        ("http://example.com:0/", "port 0"),
        ("http://\u0300a.example/", "not a valid internationalized domain name"),
    ],
)
def test_url_rejected(url: str, problem: str) -> None:
    with pytest.raises(DestinationError, match=problem):
        parse_url(url)


def test_url_parts() -> None:
    destination = parse_url("https://hooks.example.com/in?x=1")

    assert destination.host == "hooks.example.com"
    assert destination.port == 443
    assert destination.target == "/in?x=1"


async def test_resolved_private_name_rejected(dns: DnsServer) -> None:
    dns.add_a("hooks.example.test", "10.0.0.5")
    resolver = AddressResolver((("127.0.0.1", dns.port),), allow_private=False)

    with pytest.raises(DestinationError, match="private"):
        await resolver.checked_addresses(parse_url("https://hooks.example.test/"))


async def test_any_private_answer_rejects(dns: DnsServer) -> None:
    dns.add_a("hooks.example.test", PUBLIC)
    dns.add_aaaa("hooks.example.test", "::1")
    resolver = AddressResolver((("127.0.0.1", dns.port),), allow_private=False)

    with pytest.raises(DestinationError, match="loopback"):
        await resolver.checked_addresses(parse_url("https://hooks.example.test/"))


async def test_unknown_name_rejected(dns: DnsServer) -> None:
    resolver = AddressResolver((("127.0.0.1", dns.port),), allow_private=False)

    with pytest.raises(DestinationError, match="no address"):
        await resolver.checked_addresses(parse_url("https://nowhere.example.test/"))


async def test_rebinding_rejected_at_post(dns: DnsServer, receiver: Receiver) -> None:
    receiver.start()
    dns.add_a("hooks.example.test", PUBLIC)
    resolver = AddressResolver((("127.0.0.1", dns.port),), allow_private=False)
    url = f"http://hooks.example.test:{receiver.port}/hooks"
    assert await resolver.checked_addresses(parse_url(url))

    dns.remove("hooks.example.test")
    dns.add_a("hooks.example.test", "127.0.0.1")
    sender = HttpxWebhookSender(resolver, timeout=5)
    try:
        response = await sender.post(url, {"webhook-id": "whd_1"}, b"{}")
    finally:
        await sender.aclose()

    assert response.status_code is None
    assert response.error is not None
    assert "loopback" in response.error
    assert receiver.requests() == []


async def test_post_connects_to_checked_address(
    dns: DnsServer, receiver: Receiver
) -> None:
    receiver.start()
    dns.add_a("hooks.example.test", "127.0.0.1")
    resolver = AddressResolver((("127.0.0.1", dns.port),), allow_private=True)
    sender = HttpxWebhookSender(resolver, timeout=5)
    try:
        response = await sender.post(
            f"http://hooks.example.test:{receiver.port}/hooks", {}, b"{}"
        )
    finally:
        await sender.aclose()

    assert response.status_code == 200
    [request] = receiver.wait_for(1)
    assert request["headers"]["host"] == f"hooks.example.test:{receiver.port}"


async def test_post_to_idn_host_uses_a_labels(
    dns: DnsServer, receiver: Receiver
) -> None:
    receiver.start()
    dns.add_a("xn--bcher-kva.test", "127.0.0.1")
    resolver = AddressResolver((("127.0.0.1", dns.port),), allow_private=True)
    sender = HttpxWebhookSender(resolver, timeout=5)
    try:
        response = await sender.post(
            f"http://bücher.test:{receiver.port}/hooks", {}, b"{}"
        )
    finally:
        await sender.aclose()

    assert response.error is None
    assert response.status_code == 200
    [request] = receiver.wait_for(1)
    assert request["headers"]["host"] == f"xn--bcher-kva.test:{receiver.port}"


def test_idn_host_parsed_as_a_labels() -> None:
    destination = parse_url("https://BÜCHER.example/in")

    assert destination.host == "xn--bcher-kva.example"


def test_ascii_host_kept_as_given() -> None:
    assert parse_url("https://_hooks.example.com/").host == "_hooks.example.com"


@pytest.mark.parametrize(
    "address", ["0.0.0.0", "::", "255.255.255.255", "224.0.0.1", "ff02::1"]
)
@pytest.mark.parametrize("allow_private", [False, True])
async def test_non_unicast_advice_omits_setting(
    address: str, allow_private: bool
) -> None:
    resolver = AddressResolver(None, allow_private=allow_private)
    host = f"[{address}]" if ":" in address else address

    with pytest.raises(DestinationError) as raised:
        await resolver.checked_addresses(parse_url(f"http://{host}:8080/"))

    assert "not a unicast address" in str(raised.value)
    assert "SENDARIX_WEBHOOK_ALLOW_PRIVATE" not in str(raised.value)


async def test_private_advice_names_setting() -> None:
    resolver = AddressResolver(None, allow_private=False)

    with pytest.raises(DestinationError) as raised:
        await resolver.checked_addresses(parse_url("http://10.0.0.5:8080/"))

    assert "SENDARIX_WEBHOOK_ALLOW_PRIVATE=true" in str(raised.value)


async def test_redirect_not_followed(receiver: Receiver) -> None:
    receiver.start(status=307)
    resolver = AddressResolver(None, allow_private=True)
    sender = HttpxWebhookSender(resolver, timeout=5)
    try:
        response = await sender.post(receiver.url, {}, b"{}")
    finally:
        await sender.aclose()

    assert response.status_code == 307
    assert len(receiver.wait_for(1)) == 1


async def test_slow_receiver_times_out(receiver: Receiver) -> None:
    receiver.start(delay=3)
    sender = HttpxWebhookSender(AddressResolver(None, allow_private=True), timeout=1)
    try:
        response = await sender.post(receiver.url, {}, b"{}")
    finally:
        await sender.aclose()

    assert response.status_code is None
    assert response.error == "timed out after 1 s"
