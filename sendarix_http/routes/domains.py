"""``/v1/domains``: sending domains, the DNS records to publish, verification.

No response contains a private key.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from sendarix_backends.domains import Domains, SendingDomain
from sendarix_core.keys import Scope
from sendarix_core.representation import format_time
from sendarix_http.http_io import (
    JsonResponse,
    authorize_live,
    engine_of,
    read_json_object,
)
from sendarix_http.registry import Parameter, Reply, operation
from sendarix_http.schemas import define, list_of, nullable, time

__all__ = ["domain_to_dict", "operations"]


_CHANGE = "change sending domains, which live mail uses"


def domains_of(request: Request) -> Domains:
    return engine_of(request).content.domains


def domain_to_dict(domains: Domains, domain: SendingDomain) -> dict[str, Any]:
    return {
        "domain": domain.name,
        "status": str(domain.status),
        "records": [record.to_dict() for record in domains.records(domain)],
        "missing": [problem.to_dict() for problem in domain.missing],
        "dkim_selectors": [key.selector for key in domain.keys],
        "created_at": format_time(domain.created_at),
        "checked_at": format_time(domain.checked_at),
        "verified_at": format_time(domain.verified_at),
    }


async def create_domain(request: Request) -> Response:
    await authorize_live(request, Scope.DOMAINS_WRITE, _CHANGE)
    body, _ = await read_json_object(request)
    domains = domains_of(request)
    domain = await domains.add(body)
    return JsonResponse(domain_to_dict(domains, domain), status_code=201)


async def list_domains(request: Request) -> Response:
    domains = domains_of(request)
    items = await domains.list_domains()
    return JsonResponse({"data": [domain_to_dict(domains, item) for item in items]})


async def get_domain(request: Request) -> Response:
    domains = domains_of(request)
    domain = await domains.get(request.path_params["domain"])
    return JsonResponse(domain_to_dict(domains, domain))


async def delete_domain(request: Request) -> Response:
    await authorize_live(request, Scope.DOMAINS_WRITE, _CHANGE)
    await domains_of(request).delete(request.path_params["domain"])
    return Response(status_code=204)


async def verify_domain(request: Request) -> Response:
    await authorize_live(request, Scope.DOMAINS_WRITE, _CHANGE)
    domains = domains_of(request)
    domain = await domains.verify(request.path_params["domain"])
    return JsonResponse(domain_to_dict(domains, domain))


_RECORD_PROPERTIES = {
    "type": {"enum": ["TXT", "CNAME", "MX"]},
    "name": {"type": "string"},
    "value": {"type": "string"},
    "purpose": {"enum": ["dkim", "spf", "dmarc", "return_path"]},
}
DNS_RECORD = define(
    "DnsRecord",
    {
        "type": "object",
        "properties": _RECORD_PROPERTIES,
        "required": list(_RECORD_PROPERTIES),
        "additionalProperties": False,
    },
)
MISSING_RECORD = define(
    "MissingDnsRecord",
    {
        "type": "object",
        "properties": {**_RECORD_PROPERTIES, "problem": {"type": "string"}},
        "required": [*_RECORD_PROPERTIES, "problem"],
        "additionalProperties": False,
    },
)
_DOMAIN_PROPERTIES = {
    "domain": {"type": "string"},
    "status": {"enum": ["pending", "verified", "failed"]},
    "records": {"type": "array", "items": DNS_RECORD},
    "missing": {
        "type": "array",
        "items": MISSING_RECORD,
        "description": "records the last verification did not find",
    },
    "dkim_selectors": {"type": "array", "items": {"type": "string"}},
    "created_at": time(),
    "checked_at": nullable(time()),
    "verified_at": nullable(time()),
}
DOMAIN = define(
    "SendingDomain",
    {
        "type": "object",
        "properties": _DOMAIN_PROPERTIES,
        "required": list(_DOMAIN_PROPERTIES),
        "additionalProperties": False,
    },
)
DOMAIN_REQUEST = define(
    "SendingDomainRequest",
    {
        "type": "object",
        "properties": {
            "domain": {"type": "string", "minLength": 1},
            "ed25519": {
                "type": "boolean",
                "description": "also sign with an Ed25519 key (RFC 8463)",
            },
        },
        "required": ["domain"],
        "additionalProperties": False,
    },
)

_DOMAIN = Parameter(
    name="domain", location="path", description="the domain name", required=True
)
_SCOPE = Scope.DOMAINS_WRITE
_DOMAIN_REPLY = Reply(status=200, description="the domain", schema=DOMAIN)

operations = [
    operation(
        "POST",
        "/v1/domains",
        create_domain,
        summary="Add a sending domain",
        description="Generates an RSA 2048 DKIM key (and an Ed25519 one when "
        "asked) and returns the DNS records to publish. Once any domain "
        "exists, senders on unverified domains are rejected unless "
        "SENDARIX_SENDER_VERIFICATION is off.",
        tag="domains",
        scope=_SCOPE,
        request_schema=DOMAIN_REQUEST,
        request_example={"domain": "acme.example"},
        replies=Reply(status=201, description="the domain", schema=DOMAIN),
    ),
    operation(
        "GET",
        "/v1/domains",
        list_domains,
        summary="List sending domains",
        tag="domains",
        scope=_SCOPE,
        replies=Reply(
            status=200,
            description="every domain, by name",
            schema=list_of("SendingDomainList", DOMAIN, paged=False),
        ),
    ),
    operation(
        "GET",
        "/v1/domains/{domain}",
        get_domain,
        summary="Read a sending domain",
        tag="domains",
        scope=_SCOPE,
        parameters=(_DOMAIN,),
        replies=_DOMAIN_REPLY,
    ),
    operation(
        "DELETE",
        "/v1/domains/{domain}",
        delete_domain,
        summary="Delete a sending domain and its keys",
        tag="domains",
        scope=_SCOPE,
        parameters=(_DOMAIN,),
        replies=Reply(status=204, description="deleted"),
    ),
    operation(
        "POST",
        "/v1/domains/{domain}/verify",
        verify_domain,
        summary="Check the domain's records in DNS",
        description="`status` becomes verified when every record is found, "
        "else failed with the records in `missing`.",
        tag="domains",
        scope=_SCOPE,
        parameters=(_DOMAIN,),
        replies=_DOMAIN_REPLY,
    ),
]
