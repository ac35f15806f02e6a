"""Direct delivery to the recipient domain's MX hosts."""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Sequence

import attrs

from sendarix_backends.smtp.connection import DEFAULT_DATA_TIMEOUT, ConnectionSettings
from sendarix_backends.smtp.delivery import PooledSender, default_helo_name
from sendarix_backends.smtp.pool import ConnectGate, PoolSettings
from sendarix_backends.smtp.replies import HostFailure, copy_with_recipient
from sendarix_backends.smtp.resolver import MxHost, MxResolver
from sendarix_backends.smtp.tls import TlsMode, unverified_context
from sendarix_core.errors import (
    DeliveryError,
    PermanentDeliveryError,
    TemporaryDeliveryError,
)
from sendarix_core.model import SmtpReply
from sendarix_core.ports import Envelope
from sendarix_core.retry import parse_enhanced_code

__all__ = ["MxTransport"]

logger = logging.getLogger("sendarix.smtp")

# Addresses one attempt tries, over all MX hosts: a domain that publishes
# many hosts that accept connections but never greet would otherwise hold a
# delivery for one timeout per address. RFC 5321 section 5.1 allows such a
# limit; Postfix's smtp_mx_address_limit is 5 by default.
MAX_ADDRESSES_PER_ATTEMPT = 10


class MxTransport:
    """Delivers each message straight to its recipient domain's MX hosts.

    Hosts are tried in preference order, and each host's addresses in
    order. When a host refuses the connection, times out, fails the TLS
    handshake or drops the session, the next host gets the message.
    Sessions are reused through a pool (see ``PoolSettings``).

    With ``tls="opportunistic"`` and no ``tls_context``, certificates are
    not verified: see ``unverified_context``.
    """

    def __init__(
        self,
        resolver: MxResolver,
        *,
        port: int = 25,
        helo_name: str | None = None,
        timeout: float = 30.0,
        data_timeout: float = DEFAULT_DATA_TIMEOUT,
        tls: TlsMode | str = TlsMode.OPPORTUNISTIC,
        tls_context: ssl.SSLContext | None = None,
        pool: PoolSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
        source_address: str | None = None,
        connect_gate: ConnectGate | None = None,
    ) -> None:
        settings = ConnectionSettings(
            helo_name=default_helo_name(helo_name),
            timeout=timeout,
            data_timeout=data_timeout,
            tls=TlsMode(tls),
            tls_context=tls_context or unverified_context(),
            source_address=source_address,
        )
        self._resolver = resolver
        self._sender = PooledSender(
            settings, port=port, pool=pool, clock=clock, connect_gate=connect_gate
        )

    async def deliver(self, envelope: Envelope) -> SmtpReply:
        domain = _recipient_domain(envelope.rcpt_to)
        try:
            hosts = await self._resolver.resolve(domain)
        except DeliveryError as exc:
            raise copy_with_recipient(exc, envelope.rcpt_to) from exc

        failures: list[tuple[MxHost, HostFailure]] = []
        hosts = _within_address_limit(domain, hosts)
        for host in hosts:
            try:
                return await self._sender.send(host.host, host.addresses, envelope)
            except HostFailure as failure:
                logger.info(
                    "MX host %s of %s failed, %d left to try: %s",
                    host.host,
                    domain,
                    len(hosts) - len(failures) - 1,
                    failure,
                    extra={"action": "mx_host_failed", "mx_host": host.host},
                )
                failures.append((host, failure))

        raise _every_host_failed(domain, failures, envelope) from failures[-1][1]

    async def close_idle_beyond(self, keep: int) -> int:
        """Close idle sessions until at most ``keep`` are open; return how many."""
        return await self._sender.close_idle_beyond(keep)

    async def aclose(self) -> None:
        await self._sender.aclose()


def _within_address_limit(domain: str, hosts: Sequence[MxHost]) -> list[MxHost]:
    """Return the hosts, in order, cut to ``MAX_ADDRESSES_PER_ATTEMPT`` addresses."""
    kept: list[MxHost] = []
    budget = MAX_ADDRESSES_PER_ATTEMPT
    for host in hosts:
        if budget <= 0:
            break
        addresses = host.addresses[:budget]
        budget -= len(addresses)
        kept.append(attrs.evolve(host, addresses=addresses))
    dropped = sum(len(host.addresses) for host in hosts) - sum(
        len(host.addresses) for host in kept
    )
    if dropped:
        logger.info(
            "%s has more MX addresses than one attempt tries; %d left out",
            domain,
            dropped,
            extra={"action": "mx_addresses_limited", "left_out": dropped},
        )
    return kept


def _recipient_domain(recipient: str) -> str:
    local_part, at, domain = recipient.rpartition("@")
    if not at or not local_part or not domain:
        raise PermanentDeliveryError(
            f"the recipient {recipient!r} is not an address of the form "
            "local-part@domain",
            reply_code=553,
            enhanced_code="5.1.3",
            recipient=recipient,
        )
    if domain.startswith("["):
        raise PermanentDeliveryError(
            f"the recipient {recipient!r} names an address literal; only "
            "domain names are delivered to",
            reply_code=550,
            enhanced_code="5.1.2",
            recipient=recipient,
        )
    return domain


def _every_host_failed(
    domain: str,
    failures: Sequence[tuple[MxHost, HostFailure]],
    envelope: Envelope,
) -> TemporaryDeliveryError:
    tried = "; ".join(f"{host.host}: {failure}" for host, failure in failures)
    last_host, last = failures[-1]
    code = last.reply_code if last.reply_code and 400 <= last.reply_code < 500 else None
    enhanced_code = parse_enhanced_code(last.reply_text or "") if code else None
    return TemporaryDeliveryError(
        f"no MX host of {domain} took the message: {tried}",
        reply_code=code,
        enhanced_code=enhanced_code or "4.4.1",
        mx_host=last_host.host,
        recipient=envelope.rcpt_to,
        details={"hosts_tried": [host.host for host, _ in failures]},
    )
