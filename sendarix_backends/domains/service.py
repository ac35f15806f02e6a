"""Sending domains: adding, verifying, the sender check, DKIM signing and return paths.

``Domains`` keeps a snapshot of every domain in memory for the hot paths
(the sender check at acceptance, signing and the return path at delivery)
and reloads it every ``SNAPSHOT_SECONDS``. A change made through this
object takes effect in this process at once; other processes see it within
that interval.
"""

from __future__ import annotations

import logging
import re
import secrets
import socket
import time
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import idna

from sendarix_backends.dkim import DkimAlgorithm, DkimSigner, SigningKey
from sendarix_backends.domains.keys import generate_key
from sendarix_backends.domains.model import DnsRecord, DomainStatus, SendingDomain
from sendarix_backends.domains.records import (
    BOUNCE_LABEL,
    RecordTarget,
    expected_records,
)
from sendarix_backends.domains.store import DomainStore
from sendarix_backends.domains.verification import RecordChecker
from sendarix_backends.settings import SenderVerification, Settings
from sendarix_core.clock import Clock
from sendarix_core.errors import FieldError, NotFoundError, ValidationError
from sendarix_core.model import Address

__all__ = ["SNAPSHOT_SECONDS", "Domains"]

logger = logging.getLogger("sendarix.domains")

SNAPSHOT_SECONDS = 30.0

_FIELDS = frozenset({"domain", "ed25519"})
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
# The longest selector, the Ed25519 one ("sendarix202612abcde"), and
# "._domainkey." go before the domain, in a DNS name of at most 253
# characters.
_MAX_DOMAIN_LENGTH = 253 - len("sendarix000000ffffe._domainkey.")


@attrs.frozen
class _Snapshot:
    domains: Mapping[str, SendingDomain]
    expires_at: float


class Domains:
    """The sending domains of one engine."""

    def __init__(
        self,
        store: DomainStore,
        *,
        settings: Settings,
        clock: Clock,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._settings = settings
        self._clock = clock
        self._monotonic = monotonic
        self._checker = RecordChecker(settings.dns_nameservers or None)
        self._snapshot: _Snapshot | None = None
        self._signers: dict[tuple[str, tuple[str, ...]], DkimSigner] = {}

    # The API

    async def add(self, body: Mapping[str, Any]) -> SendingDomain:
        """Create a domain from ``{"domain", "ed25519"}`` with new DKIM keys.

        Raises ``ValidationError`` for an invalid or already added domain.
        """
        name, ed25519 = _check_body(body)
        now = self._clock.now()
        # The random part gives a domain that is deleted and added again new
        # selectors, so its old and new keys can be published side by side.
        selector = f"sendarix{now:%Y%m}{secrets.token_hex(2)}"
        keys = [generate_key(selector, DkimAlgorithm.RSA_SHA256)]
        if ed25519:
            keys.append(generate_key(f"{selector}e", DkimAlgorithm.ED25519_SHA256))
        domain = SendingDomain(
            name=name, status=DomainStatus.PENDING, keys=tuple(keys), created_at=now
        )

        if not await self._store.add_domain(domain):
            raise _field_error(
                "domain", "already_exists", f"the domain {name!r} was already added"
            )
        self._snapshot = None
        logger.info("domain added", extra={"action": "domain_added", "domain": name})
        return domain

    async def get(self, name: str) -> SendingDomain:
        domain = await self._store.get_domain(_lookup_name(name))
        if domain is None:
            raise NotFoundError("domain", name)
        return domain

    async def list_domains(self) -> list[SendingDomain]:
        return await self._store.list_domains()

    async def delete(self, name: str) -> None:
        if not await self._store.delete_domain(_lookup_name(name)):
            raise NotFoundError("domain", name)
        self._snapshot = None
        logger.info(
            "domain deleted", extra={"action": "domain_deleted", "domain": name}
        )

    def records(self, domain: SendingDomain) -> list[DnsRecord]:
        """Return the DNS records ``domain`` must publish."""
        target = RecordTarget(
            return_path_domain=self._settings.return_path_domain,
            sending_host=self._settings.helo_name or socket.getfqdn(),
        )
        return expected_records(domain.name, domain.keys, target)

    async def verify(self, name: str) -> SendingDomain:
        """Look the records up in DNS and store the outcome.

        A domain is verified when every record is found; a verified domain
        whose records disappear becomes failed, which stops its signing.
        """
        domain = await self.get(name)
        problems = await self._checker.check(self.records(domain))
        status = DomainStatus.FAILED if problems else DomainStatus.VERIFIED
        updated = await self._store.record_check(
            domain.name, status=status, checked_at=self._clock.now(), missing=problems
        )
        if updated is None:
            raise NotFoundError("domain", name)
        self._snapshot = None
        logger.info(
            "domain %s",
            status,
            extra={
                "action": f"domain_{status}",
                "domain": domain.name,
                "missing": [problem.record.name for problem in problems],
            },
        )
        return updated

    # The hot paths

    async def check_sender(self, sender: Address) -> None:
        """Raise ``ValidationError`` when ``sender`` may not be used.

        With ``SENDARIX_SENDER_VERIFICATION=required`` the sender's domain
        must be verified; unset, that applies once any domain was added;
        ``off`` allows every sender.
        """
        mode = self._settings.sender_verification
        if mode == SenderVerification.OFF:
            return
        domains = await self._domains()
        if mode is None and not domains:
            return
        domain = domains.get(sender.domain)
        if domain is not None and domain.status == DomainStatus.VERIFIED:
            return

        state = "is not verified" if domain else "is not a sending domain"
        raise _field_error(
            "from",
            "sender_not_verified",
            f"the sender domain {sender.domain!r} {state}; add it with "
            "POST /v1/domains, publish its DNS records and verify it",
        )

    async def sign(self, sender_domain: str, data: bytes) -> bytes:
        """Return ``data`` with DKIM signatures when the domain is verified."""
        signer = await self._signer_for(sender_domain)
        if signer is None:
            return data
        timestamp = int(self._clock.now().timestamp())
        return signer.sign(data, timestamp=timestamp)

    async def aligned_return_path_domain(self, sender_domain: str) -> str | None:
        """Return ``bounces.<sender_domain>`` when bounces may be sent there.

        That needs ``SENDARIX_RETURN_PATH_DOMAIN``, whose MX receives the
        reports, and a verified sender domain: verification found the
        ``return_path`` record that points ``bounces.<domain>`` at it. An
        envelope sender there passes SPF for a subdomain of the ``From``
        domain, which DMARC's relaxed alignment accepts (RFC 7489 3.1.2).
        """
        if self._settings.return_path_domain is None:
            return None
        domain = (await self._domains()).get(sender_domain)
        if domain is None or domain.status != DomainStatus.VERIFIED:
            return None
        return f"{BOUNCE_LABEL}.{domain.name}"

    async def receives_reports_for(self, name: str) -> bool:
        """Return whether report mail to an address at ``name`` is accepted.

        That is the return-path domain and ``bounces.<domain>`` of every
        sending domain, verified or not: reports for mail sent while a
        domain was verified still arrive after it fails a later check.
        """
        name = name.lower()
        return_path_domain = self._settings.return_path_domain
        if return_path_domain is not None and name == return_path_domain.lower():
            return True
        label, dot, rest = name.partition(".")
        if label != BOUNCE_LABEL or not dot:
            return False
        return rest in await self._domains()

    async def _signer_for(self, name: str) -> DkimSigner | None:
        domain = (await self._domains()).get(name)
        if domain is None or domain.status != DomainStatus.VERIFIED:
            return None
        cache_key = (domain.name, tuple(key.public_key for key in domain.keys))
        signer = self._signers.get(cache_key)
        if signer is None:
            keys = [
                SigningKey.from_pem(k.selector, k.private_key_pem) for k in domain.keys
            ]
            signer = DkimSigner(domain.name, keys)
            self._signers[cache_key] = signer
        return signer

    async def _domains(self) -> Mapping[str, SendingDomain]:
        snapshot = self._snapshot
        now = self._monotonic()
        if snapshot is None or now >= snapshot.expires_at:
            domains = await self._store.list_domains()
            snapshot = _Snapshot(
                {domain.name: domain for domain in domains}, now + SNAPSHOT_SECONDS
            )
            self._snapshot = snapshot
            names = set(snapshot.domains)
            self._signers = {k: v for k, v in self._signers.items() if k[0] in names}
        return snapshot.domains


def _check_body(body: Mapping[str, Any]) -> tuple[str, bool]:
    errors = [
        FieldError(
            str(key), "unknown_field", f"unknown field {str(key)!r}; expected domain"
        )
        for key in body
        if key not in _FIELDS
    ]
    name = body.get("domain")
    domain = None
    if isinstance(name, str) and name.strip():
        domain = _normalize_domain(name)
        if domain is None:
            message = f"{name!r} is not a valid domain name such as 'acme.example'"
            errors.append(FieldError("domain", "invalid_domain", message))
        elif len(domain) > _MAX_DOMAIN_LENGTH:
            message = (
                f"the domain is {len(domain)} characters long; its DKIM record "
                f"name would pass DNS's 253, so at most {_MAX_DOMAIN_LENGTH} fit"
            )
            errors.append(FieldError("domain", "invalid_domain", message))
            domain = None
    else:
        message = "a domain name such as 'acme.example' is required"
        errors.append(FieldError("domain", "missing_field", message))

    ed25519 = body.get("ed25519", False)
    if not isinstance(ed25519, bool):
        errors.append(FieldError("ed25519", "invalid_type", "expected true or false"))
    if errors or domain is None:
        raise ValidationError(errors)
    return domain, ed25519


def _normalize_domain(name: str) -> str | None:
    """Return the domain as lowercase ASCII (A-labels), or None if invalid."""
    text = name.strip().rstrip(".").lower()
    # An ASCII name with an A-label is checked too: xn--zz is not Punycode.
    if not text.isascii() or "xn--" in text:
        try:
            text = idna.encode(text, uts46=True).decode("ascii")
        except idna.IDNAError:
            return None
    labels = text.split(".")
    if len(labels) < 2 or len(text) > 253:
        return None
    if not all(_LABEL.fullmatch(label) for label in labels):
        return None
    # No top-level domain is all digits, so this refuses IPv4 addresses.
    if labels[-1].isdigit():
        return None
    return text


def _lookup_name(name: str) -> str:
    """Return the stored form of a domain named in a path, IDNs as A-labels."""
    return _normalize_domain(name) or name.lower()


def _field_error(field: str, code: str, message: str) -> ValidationError:
    return ValidationError([FieldError(field, code, message)])
