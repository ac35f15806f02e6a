"""From a claimed message to its rule and destination site.

``Router.route`` resolves the MX hosts of each recipient domain (the
resolver caches them for their TTL), matches the rules and names the site.
The site key is what pacing and pauses are counted by: the sorted MX host
names for direct delivery, ``smarthost:host:port`` for a relay, and
``sink`` for the sink. When the domain can't be resolved, the domain
itself is the site, and the delivery attempt reports the DNS error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import attrs

from sendarix_backends.routing.service import Routes
from sendarix_backends.smtp import MxResolver
from sendarix_core.errors import DeliveryError
from sendarix_core.model import Message
from sendarix_core.pacing import PacingLimits, site_key
from sendarix_core.routing import (
    Explanation,
    RouteRule,
    RoutingInput,
    TransportKind,
    choose_rule,
    explain,
    rule_matches,
)
from sendarix_core.states import Priority

__all__ = ["Dispatch", "RouteExplanation", "Router"]

SINK_SITE = "sink"


@attrs.frozen
class Dispatch:
    """The rule and destination site of one message."""

    rule: RouteRule
    site: str

    @property
    def limits(self) -> PacingLimits:
        return self.rule.action.pacing

    @property
    def is_sink(self) -> bool:
        return self.rule.action.transport is TransportKind.SINK


@attrs.frozen(kw_only=True)
class RouteExplanation:
    """A dry run: the rules' results, the MX hosts found and the site."""

    explanation: Explanation
    mx_hosts: tuple[str, ...]
    site: str
    mx_error: str | None = None


@attrs.frozen
class _Resolved:
    hosts: tuple[str, ...]
    error: str | None = None


class Router:
    """Routes messages; with ``resolve`` false (the sink delivery mode) no
    domain is resolved, so MX-host conditions never match."""

    def __init__(
        self, routes: Routes, resolver: MxResolver, *, resolve: bool = True
    ) -> None:
        self.routes = routes
        self._resolver = resolver
        self._resolve_domains = resolve

    async def route(self, messages: Sequence[Message]) -> dict[str, Dispatch]:
        """Return the dispatch of each message, by message id.

        Only domains whose rule delivers to MX hosts, or that an MX condition
        must be tested for, are resolved.
        """
        rules = await self.routes.current_rules()
        unresolved = {message.id: self._subject(message, ()) for message in messages}
        to_resolve = {
            subject.recipient_domain
            for subject in unresolved.values()
            if _needs_mx_hosts(rules, subject)
        }
        resolved = await self._resolve_all(to_resolve)

        dispatches = {}
        for message in messages:
            subject = unresolved[message.id]
            found = resolved.get(subject.recipient_domain)
            if found is not None:
                subject = attrs.evolve(subject, mx_hosts=found.hosts)
            rule = choose_rule(rules, subject)
            dispatches[message.id] = Dispatch(rule, _site(rule, subject))
        return dispatches

    def _subject(self, message: Message, mx_hosts: tuple[str, ...]) -> RoutingInput:
        return RoutingInput(
            recipient_domain=message.recipient.domain.lower(),
            sender_domain=message.sender.domain.lower(),
            mx_hosts=mx_hosts,
            tags=message.tags,
            priority=message.priority,
        )

    async def explain(
        self,
        recipient_domain: str,
        *,
        sender_domain: str,
        tags: tuple[str, ...] = (),
        priority: Priority = Priority.NORMAL,
    ) -> RouteExplanation:
        """Say which rule a message with these fields would get, and why.

        The domain is resolved only when a rule needs its MX hosts, as in
        ``route``.
        """
        rules = await self.routes.list_rules()
        domain = recipient_domain.lower()
        subject = RoutingInput(
            recipient_domain=domain,
            sender_domain=sender_domain.lower(),
            tags=tags,
            priority=priority,
        )
        resolved = _Resolved(())
        if _needs_mx_hosts(rules, subject):
            found = await self._resolve_all({domain})
            resolved = found.get(domain, resolved)
            subject = attrs.evolve(subject, mx_hosts=resolved.hosts)
        explanation = explain(rules, subject)
        return RouteExplanation(
            explanation=explanation,
            mx_hosts=resolved.hosts,
            site=_site(explanation.rule, subject),
            mx_error=resolved.error,
        )

    async def _resolve_all(self, domains: set[str]) -> dict[str, _Resolved]:
        if not self._resolve_domains:
            return {}
        ordered = sorted(domains)
        results = await asyncio.gather(*(self._resolve(name) for name in ordered))
        return dict(zip(ordered, results, strict=True))

    async def _resolve(self, domain: str) -> _Resolved:
        try:
            hosts = await self._resolver.resolve(domain)
        except DeliveryError as exc:
            return _Resolved((), str(exc))
        return _Resolved(tuple(host.host.lower() for host in hosts))


def _needs_mx_hosts(rules: Sequence[RouteRule], subject: RoutingInput) -> bool:
    """Return whether routing ``subject`` depends on its MX hosts."""
    for rule in rules:
        if rule.match.mx_hosts:
            return True
        if rule_matches(rule, subject):
            return rule.action.transport is TransportKind.MX
    return True


def _site(rule: RouteRule, subject: RoutingInput) -> str:
    action = rule.action
    if action.transport is TransportKind.SINK:
        return SINK_SITE
    if action.transport is TransportKind.SMARTHOST and action.smarthost:
        return f"smarthost:{action.smarthost.host}:{action.smarthost.port}"
    return site_key(subject.mx_hosts or (subject.recipient_domain,))
