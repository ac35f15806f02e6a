"""The DNS records a sending domain publishes, and how a found record matches.

Each domain gets a DKIM TXT record per key, an SPF TXT record, a DMARC TXT
record and a return-path record for the bounce subdomain. The SPF and
return-path values point at ``return_path_domain`` when the operator set
one (a domain whose SPF lists Sendarix's sending addresses and whose MX
receives bounces), else at the sending host itself.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import attrs

from sendarix_backends.dkim import DkimAlgorithm
from sendarix_backends.domains.model import DkimKey, DnsRecord

__all__ = [
    "BOUNCE_LABEL",
    "RecordTarget",
    "expected_records",
    "matches_txt",
    "parse_tags",
]

BOUNCE_LABEL = "bounces"
DMARC_VALUE = "v=DMARC1; p=none"

_KEY_TYPES = {DkimAlgorithm.RSA_SHA256: "rsa", DkimAlgorithm.ED25519_SHA256: "ed25519"}
_WHITESPACE = re.compile(r"\s+")


@attrs.frozen(kw_only=True)
class RecordTarget:
    """Where SPF and the return path point: a return-path domain or a host."""

    return_path_domain: str | None
    sending_host: str


def expected_records(
    domain: str, keys: Sequence[DkimKey], target: RecordTarget
) -> list[DnsRecord]:
    """Return the records to publish for ``domain``, DKIM first."""
    records = [
        DnsRecord(
            type="TXT",
            name=f"{key.selector}._domainkey.{domain}",
            value=f"v=DKIM1; k={_KEY_TYPES[key.algorithm]}; p={key.public_key}",
            purpose="dkim",
        )
        for key in keys
    ]
    bounce_name = f"{BOUNCE_LABEL}.{domain}"
    return_path: DnsRecord | None
    if target.return_path_domain:
        return_path_domain = target.return_path_domain.lower()
        # The return-path domain's own SPF names the sending hosts: an
        # include of itself recurses until SPF's lookup limit (RFC 7208).
        if domain == return_path_domain:
            spf = f"v=spf1 a:{target.sending_host} ~all"
        else:
            spf = f"v=spf1 include:{return_path_domain} ~all"
        # bounces.<domain> may be the return-path domain itself, which the
        # operator publishes with its MX; a CNAME to itself would hide that.
        return_path = None
        if bounce_name != return_path_domain:
            return_path = DnsRecord(
                type="CNAME",
                name=bounce_name,
                value=return_path_domain,
                purpose="return_path",
            )
    else:
        spf = f"v=spf1 a:{target.sending_host} ~all"
        return_path = DnsRecord(
            type="MX",
            name=bounce_name,
            value=f"10 {target.sending_host}",
            purpose="return_path",
        )
    records.append(DnsRecord(type="TXT", name=domain, value=spf, purpose="spf"))
    records.append(
        DnsRecord(
            type="TXT", name=f"_dmarc.{domain}", value=DMARC_VALUE, purpose="dmarc"
        )
    )
    if return_path is not None:
        records.append(return_path)
    return records


def parse_tags(text: str) -> dict[str, str]:
    """Parse ``tag=value; …`` (DKIM key records), removing all whitespace."""
    tags = {}
    for item in text.split(";"):
        name, separator, value = item.partition("=")
        if separator:
            tags[name.strip().lower()] = _WHITESPACE.sub("", value)
    return tags


def matches_txt(record: DnsRecord, found: Sequence[str]) -> str | None:
    """Return why the TXT strings ``found`` at the record's name don't match it.

    Returns None when they do. DKIM needs the same public key; SPF needs one
    ``v=spf1`` record with the expected mechanism (other mechanisms may
    stay); DMARC needs a ``v=DMARC1`` record with any policy.
    """
    if record.purpose == "dkim":
        expected = parse_tags(record.value)
        for text in found:
            tags = parse_tags(text)
            if tags.get("p") == expected["p"] and tags.get("k", "rsa") == expected["k"]:
                return None
        return "no TXT record with this public key was found"

    if record.purpose == "spf":
        spf = [text for text in found if text.lower().startswith("v=spf1")]
        if len(spf) > 1:
            return f"{len(spf)} SPF records were found; merge them into one"
        mechanism = record.value.split()[1].lower()
        terms = spf[0].lower().split() if spf else []
        if mechanism in terms or f"+{mechanism}" in terms:
            return None
        return f"no SPF record containing {mechanism!r} was found"

    # RFC 7489 section 6.3: the record starts with "v=DMARC1" exactly, and
    # receivers ignore one that does not. With two, they apply none.
    dmarc = [text for text in found if _DMARC_VERSION.match(text)]
    if len(dmarc) == 1:
        return None
    if dmarc:
        return f"{len(dmarc)} DMARC records were found; keep one"
    return "no DMARC record (v=DMARC1, in capitals) was found"


_DMARC_VERSION = re.compile(r"v\s*=\s*DMARC1\s*(?:;|$)")
