"""The loopback DNS and SMTP servers other tests rely on."""

from __future__ import annotations

import smtplib
import socket

import dns.asyncresolver
import dns.exception
import dns.nameserver
import dns.rdatatype
import dns.resolver
import pytest

from tests.support.dns_server import DnsServer
from tests.support.smtp_server import SmtpServer


def make_resolver(dns_server: DnsServer) -> dns.asyncresolver.Resolver:
    resolver = dns.asyncresolver.Resolver(configure=False)
    resolver.nameservers = [dns.nameserver.Do53Nameserver("127.0.0.1", dns_server.port)]
    resolver.lifetime = 2.0
    return resolver


@pytest.mark.anyio
async def test_dns_txt_record(dns_server: DnsServer) -> None:
    dns_server.add_txt("_dmarc.example.test", "v=DMARC1; p=none")

    answer = await make_resolver(dns_server).resolve("_dmarc.example.test", "TXT")

    [record] = list(answer)
    assert b"".join(record.strings) == b"v=DMARC1; p=none"


@pytest.mark.anyio
async def test_dns_long_txt_over_tcp(dns_server: DnsServer) -> None:
    # A 2048-bit DKIM key does not fit one 255-byte string or, with EDNS
    # turned off, one 512-byte UDP answer.
    key = "v=DKIM1; k=rsa; p=" + "A" * 700
    dns_server.add_txt("s1._domainkey.example.test", key)
    resolver = make_resolver(dns_server)
    resolver.use_edns(-1)

    answer = await resolver.resolve("s1._domainkey.example.test", "TXT")

    [record] = list(answer)
    assert b"".join(record.strings).decode() == key


@pytest.mark.anyio
async def test_dns_known_name_without_type(dns_server: DnsServer) -> None:
    dns_server.add_a("host.example.test", "127.0.0.1")

    answer = await make_resolver(dns_server).resolve(
        "host.example.test", "MX", raise_on_no_answer=False
    )

    assert answer.rrset is None


@pytest.mark.anyio
async def test_dns_unknown_name(dns_server: DnsServer) -> None:
    with pytest.raises(dns.resolver.NXDOMAIN):
        await make_resolver(dns_server).resolve("missing.example.test", "A")


def test_dns_rejects_invalid_record(dns_server: DnsServer) -> None:
    with pytest.raises(dns.exception.SyntaxError):
        dns_server.add_a("host.example.test", "not-an-address")


def test_smtp_counts_connections(smtp_server: SmtpServer) -> None:
    for _ in range(2):
        with smtplib.SMTP("127.0.0.1", smtp_server.port) as client:
            client.sendmail(
                "a@example.test", ["b@example.test"], b"Subject: x\r\n\r\nhi"
            )

    assert smtp_server.connections == 2
    assert len(smtp_server.wait_for_messages(2)) == 2


def test_smtp_down_refuses(smtp_server: SmtpServer) -> None:
    smtp_server.take_down()

    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", smtp_server.port), timeout=2)


def test_smtp_comes_back_up(smtp_server: SmtpServer) -> None:
    smtp_server.take_down()
    smtp_server.bring_up()

    with smtplib.SMTP("127.0.0.1", smtp_server.port) as client:
        assert client.noop()[0] == 250


def test_smtp_tarpit_never_greets(smtp_server: SmtpServer) -> None:
    smtp_server.tarpit()

    with socket.create_connection(("127.0.0.1", smtp_server.port), timeout=2) as sock:
        sock.settimeout(0.3)
        with pytest.raises(TimeoutError):
            sock.recv(1)


def test_smtp_wait_for_messages_times_out(smtp_server: SmtpServer) -> None:
    with pytest.raises(TimeoutError, match="received 0"):
        smtp_server.wait_for_messages(1, timeout=0.1)
