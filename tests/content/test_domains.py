"""Sending domains: records, verification through real DNS, the sender check."""

from __future__ import annotations

import logging

import attrs
import httpx
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.settings import Settings
from sendarix_core.clock import ManualClock
from sendarix_core.errors import ValidationError
from tests.content.conftest import SENDER_DOMAIN, message_body, publish, verified_domain
from tests.support.dns_server import DnsServer

pytestmark = pytest.mark.anyio


async def add_domain(client: httpx.AsyncClient, **fields: object) -> dict[str, object]:
    response = await client.post(
        "/v1/domains", json={"domain": SENDER_DOMAIN, **fields}
    )
    assert response.status_code == 201
    body: dict[str, object] = response.json()
    return body


def records_by_purpose(body: dict[str, object]) -> dict[str, list[dict[str, str]]]:
    grouped: dict[str, list[dict[str, str]]] = {}
    for record in body["records"]:  # type: ignore[attr-defined]
        grouped.setdefault(record["purpose"], []).append(record)
    return grouped


async def test_create_returns_records(client: httpx.AsyncClient) -> None:
    body = await add_domain(client)
    records = records_by_purpose(body)

    assert body["status"] == "pending"
    [dkim] = records["dkim"]
    assert dkim["type"] == "TXT"
    assert dkim["name"].endswith(f"._domainkey.{SENDER_DOMAIN}")
    assert dkim["value"].startswith("v=DKIM1; k=rsa; p=MIIB")
    assert records["spf"][0]["value"] == "v=spf1 a:sendarix.test ~all"
    assert records["dmarc"][0]["name"] == f"_dmarc.{SENDER_DOMAIN}"
    assert records["return_path"][0] == {
        "type": "MX",
        "name": f"bounces.{SENDER_DOMAIN}",
        "value": "10 sendarix.test",
        "purpose": "return_path",
    }


async def test_create_with_ed25519(client: httpx.AsyncClient) -> None:
    body = await add_domain(client, ed25519=True)

    keys = [r["value"] for r in records_by_purpose(body)["dkim"]]
    assert keys[1].startswith("v=DKIM1; k=ed25519; p=")


async def test_private_key_never_returned(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    created = await client.post("/v1/domains", json={"domain": SENDER_DOMAIN})
    listed = await client.get("/v1/domains")
    read = await client.get(f"/v1/domains/{SENDER_DOMAIN}")
    verified = await client.post(f"/v1/domains/{SENDER_DOMAIN}/verify")

    for response in (created, listed, read, verified):
        assert "PRIVATE KEY" not in response.text
    assert "PRIVATE KEY" not in caplog.text


@pytest.mark.parametrize(
    "domain",
    [
        "",
        "no-dot",
        "bad_label.example",
        "a..b",
        "127.0.0.1",
        ".".join(["a" * 60] * 4) + ".example",
        "xn--zz.example",
    ],
)
async def test_invalid_domain_rejected(client: httpx.AsyncClient, domain: str) -> None:
    response = await client.post("/v1/domains", json={"domain": domain})

    assert response.status_code == 422


async def test_idn_domain_stored_as_a_labels(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/domains", json={"domain": "Bücher.Example"})

    assert response.json()["domain"] == "xn--bcher-kva.example"


async def test_a_label_domain_accepted(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/domains", json={"domain": "XN--BCHER-KVA.example"}
    )

    assert response.status_code == 201
    assert response.json()["domain"] == "xn--bcher-kva.example"


async def test_idn_domain_found_by_unicode_name(client: httpx.AsyncClient) -> None:
    await client.post("/v1/domains", json={"domain": "bücher.example"})

    read = await client.get("/v1/domains/bücher.example")
    deleted = await client.delete("/v1/domains/BÜCHER.example")

    assert read.status_code == 200
    assert read.json()["domain"] == "xn--bcher-kva.example"
    assert deleted.status_code == 204


async def test_added_again_gets_new_selectors(client: httpx.AsyncClient) -> None:
    first = await add_domain(client, ed25519=True)
    await client.delete(f"/v1/domains/{SENDER_DOMAIN}")
    second = await add_domain(client, ed25519=True)

    def names(body: dict[str, object]) -> set[str]:
        return {record["name"] for record in records_by_purpose(body)["dkim"]}

    assert names(first).isdisjoint(names(second))


@pytest.mark.parametrize(
    "dmarc",
    [
        "v=DMARC1x; p=none",
        "v=dmarc1; p=none",
        ("v=DMARC1; p=none", "v=DMARC1; p=reject"),
    ],
)
async def test_verify_refuses_invalid_dmarc(
    client: httpx.AsyncClient,
    engine: Engine,
    dns_server: DnsServer,
    dmarc: str | tuple[str, ...],
) -> None:
    await add_domain(client)
    domain = await engine.content.domains.get(SENDER_DOMAIN)
    records = engine.content.domains.records(domain)
    publish(dns_server, [r for r in records if r.purpose != "dmarc"])
    [expected] = [r for r in records if r.purpose == "dmarc"]
    for text in (dmarc,) if isinstance(dmarc, str) else dmarc:
        dns_server.add_txt(expected.name, text)

    response = await client.post(f"/v1/domains/{SENDER_DOMAIN}/verify")

    assert [m["purpose"] for m in response.json()["missing"]] == ["dmarc"]


async def test_duplicate_domain_rejected(client: httpx.AsyncClient) -> None:
    await add_domain(client)

    response = await client.post("/v1/domains", json={"domain": SENDER_DOMAIN})

    assert response.json()["error"]["errors"][0]["code"] == "already_exists"


async def test_verify_passes_with_records(
    client: httpx.AsyncClient, engine: Engine, dns_server: DnsServer
) -> None:
    body = await add_domain(client, ed25519=True)
    domain = await engine.content.domains.get(SENDER_DOMAIN)
    publish(dns_server, engine.content.domains.records(domain))

    response = await client.post(f"/v1/domains/{SENDER_DOMAIN}/verify")

    assert body["status"] == "pending"
    assert response.json()["status"] == "verified"
    assert response.json()["missing"] == []
    assert response.json()["verified_at"] is not None


@pytest.mark.parametrize("purpose", ["dkim", "spf", "dmarc", "return_path"])
async def test_verify_names_missing_record(
    client: httpx.AsyncClient, engine: Engine, dns_server: DnsServer, purpose: str
) -> None:
    await add_domain(client)
    domain = await engine.content.domains.get(SENDER_DOMAIN)
    records = engine.content.domains.records(domain)
    publish(dns_server, [r for r in records if r.purpose != purpose])
    # The apex must exist for the SPF lookup to be a plain "no record".
    dns_server.add_a(SENDER_DOMAIN, "192.0.2.1")

    response = await client.post(f"/v1/domains/{SENDER_DOMAIN}/verify")

    body = response.json()
    [expected] = [r for r in records if r.purpose == purpose]
    assert body["status"] == "failed"
    assert [(m["purpose"], m["name"]) for m in body["missing"]] == [
        (purpose, expected.name)
    ]
    assert body["missing"][0]["problem"]


async def test_verify_wrong_dkim_key(
    client: httpx.AsyncClient, engine: Engine, dns_server: DnsServer
) -> None:
    await add_domain(client)
    domain = await engine.content.domains.get(SENDER_DOMAIN)
    records = engine.content.domains.records(domain)
    publish(dns_server, [r for r in records if r.purpose != "dkim"])
    dns_server.add_txt(records[0].name, "v=DKIM1; k=rsa; p=AAAA")

    response = await client.post(f"/v1/domains/{SENDER_DOMAIN}/verify")

    [missing] = response.json()["missing"]
    assert missing["purpose"] == "dkim"
    assert "public key" in missing["problem"]


async def test_verify_two_spf_records(
    client: httpx.AsyncClient, engine: Engine, dns_server: DnsServer
) -> None:
    await add_domain(client)
    domain = await engine.content.domains.get(SENDER_DOMAIN)
    publish(dns_server, engine.content.domains.records(domain))
    dns_server.add_txt(SENDER_DOMAIN, "v=spf1 include:other.example ~all")

    response = await client.post(f"/v1/domains/{SENDER_DOMAIN}/verify")

    [missing] = response.json()["missing"]
    assert "2 SPF records" in missing["problem"]


async def test_delete_domain(client: httpx.AsyncClient) -> None:
    await add_domain(client)

    deleted = await client.delete(f"/v1/domains/{SENDER_DOMAIN}")
    read = await client.get(f"/v1/domains/{SENDER_DOMAIN}")

    assert deleted.status_code == 204
    assert read.status_code == 404


async def test_any_sender_without_domains(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/messages", json=message_body())

    assert response.status_code == 202


async def test_unverified_sender_rejected(client: httpx.AsyncClient) -> None:
    await add_domain(client)

    response = await client.post("/v1/messages", json=message_body())

    [error] = response.json()["error"]["errors"]
    assert response.status_code == 422
    assert error["field"] == "from"
    assert error["code"] == "sender_not_verified"


async def test_unknown_domain_rejected(
    client: httpx.AsyncClient, engine: Engine, dns_server: DnsServer
) -> None:
    await verified_domain(engine, dns_server)

    response = await client.post(
        "/v1/messages", json=message_body(**{"from": "x@other.example"})
    )

    assert response.json()["error"]["errors"][0]["code"] == "sender_not_verified"


async def test_verified_sender_accepted(
    client: httpx.AsyncClient, engine: Engine, dns_server: DnsServer
) -> None:
    await verified_domain(engine, dns_server)

    response = await client.post("/v1/messages", json=message_body())

    assert response.status_code == 202


async def test_verification_off_allows_any(
    settings: Settings, clock: ManualClock, dns_server: DnsServer
) -> None:
    relaxed = attrs.evolve(settings, sender_verification="off")
    async with Engine.from_settings(relaxed, clock=clock, workers=False) as engine:
        await engine.content.domains.add({"domain": SENDER_DOMAIN})

        result = await engine.send(message_body())

    assert result.status == "queued"


async def test_verification_required_without_domains(
    settings: Settings, clock: ManualClock
) -> None:
    strict = attrs.evolve(settings, sender_verification="required")
    async with Engine.from_settings(strict, clock=clock, workers=False) as engine:
        with pytest.raises(ValidationError) as raised:
            await engine.send(message_body())

    assert raised.value.errors[0].code == "sender_not_verified"


@pytest.mark.parametrize(
    ("return_path_domain", "spf", "cname"),
    [
        # The usual case: bounces.<domain> points at another domain.
        ("bounces.mail.example", "include:bounces.mail.example", True),
        # bounces.<domain> is the return-path domain itself.
        (f"bounces.{SENDER_DOMAIN}", f"include:bounces.{SENDER_DOMAIN}", False),
        # The domain is the return-path domain, whose SPF names the host.
        (SENDER_DOMAIN, "a:sendarix.test", True),
    ],
)
async def test_records_around_return_path_domain(
    settings: Settings,
    clock: ManualClock,
    dns_server: DnsServer,
    return_path_domain: str,
    spf: str,
    cname: bool,
) -> None:
    configured = attrs.evolve(settings, return_path_domain=return_path_domain)
    async with Engine.from_settings(configured, clock=clock, workers=False) as engine:
        domains = engine.content.domains
        domain = await domains.add({"domain": SENDER_DOMAIN})
        records = domains.records(domain)
        publish(dns_server, records)
        verified = await domains.verify(SENDER_DOMAIN)

    by_purpose = {record.purpose: record for record in records}
    assert by_purpose["spf"].value == f"v=spf1 {spf} ~all"
    assert ("return_path" in by_purpose) is cname
    if cname:
        assert by_purpose["return_path"].value == return_path_domain
        assert by_purpose["return_path"].value != by_purpose["return_path"].name
    assert verified.missing == ()
