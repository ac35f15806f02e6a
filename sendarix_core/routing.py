"""Routing rules: which transport, TLS policy, pacing and retry schedule a
message gets.

Rules are tested in order and the first whose conditions all hold wins.
Each condition lists patterns, any of which may match, and an empty list
matches everything. The default rule comes last and matches every message,
so routing always has an answer. Matching is pure: the MX hosts of the
recipient domain are resolved by the caller and passed in.

A domain pattern is either a name (``example.com``, matched exactly) or a
wildcard (``*.example.com``, matched by every name below it but not by
``example.com`` itself).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from enum import StrEnum
from urllib.parse import quote, unquote, urlsplit

import attrs

from sendarix_core import lifecycle
from sendarix_core.errors import SendarixError
from sendarix_core.lifecycle import Transition
from sendarix_core.model import Message, SmtpReply
from sendarix_core.pacing import PacingLimits
from sendarix_core.retry import DEFAULT_RETRY_POLICY, BounceClass, RetryPolicy
from sendarix_core.states import MessageStatus, Priority

__all__ = [
    "DEFAULT_ROUTE_ID",
    "MASKED_PASSWORD",
    "ConditionCheck",
    "DefaultRouteError",
    "Explanation",
    "RetryOverride",
    "RouteAction",
    "RouteMatch",
    "RouteRule",
    "RoutingInput",
    "RuleCheck",
    "SmarthostUrl",
    "TlsPolicy",
    "TransportKind",
    "choose_rule",
    "domain_matches",
    "explain",
    "rule_matches",
    "temporary_failure",
]

# The mask the API shows in place of a smarthost password.
MASKED_PASSWORD = "***"  # noqa: S105

DEFAULT_ROUTE_ID = "default"


class DefaultRouteError(SendarixError):
    """The request would delete, move or narrow the default rule."""


class TransportKind(StrEnum):
    MX = "mx"
    SMARTHOST = "smarthost"
    SINK = "sink"


class TlsPolicy(StrEnum):
    """STARTTLS policy of a route.

    ``opportunistic`` encrypts when the server offers STARTTLS, without
    checking its certificate (RFC 7435). ``required`` fails the attempt when
    STARTTLS is not offered. ``required_verified`` also checks the
    certificate chain and host name against the system's trusted CAs.
    """

    OPPORTUNISTIC = "opportunistic"
    REQUIRED = "required"
    REQUIRED_VERIFIED = "required_verified"


_SMARTHOST_PORTS = {"smtp": 587, "smtps": 465}


@attrs.frozen(kw_only=True)
class SmarthostUrl:
    """A relay's ``smtp://user:pass@host:port`` (``smtps://`` for implicit
    TLS); the password never appears in ``repr`` or ``masked``."""

    scheme: str
    host: str
    port: int
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> SmarthostUrl:
        """Parse a URL; raise ``ValueError`` naming the problem, without the
        password."""
        parts = urlsplit(url)
        if parts.scheme not in _SMARTHOST_PORTS:
            raise ValueError(
                "expected a URL starting with smtp:// (STARTTLS) or smtps:// "
                "(implicit TLS)"
            )
        if not parts.hostname:
            raise ValueError("the URL has no host; use smtp://user:pass@host:port")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(
                "the URL has a path, query or fragment; use smtp://user:pass@host:port"
            )
        try:
            port = parts.port
        except ValueError:
            port = 0
        if port is None:
            port = _SMARTHOST_PORTS[parts.scheme]
        elif port == 0:
            raise ValueError("the URL has an invalid port; use 1 to 65535")
        return cls(
            scheme=parts.scheme,
            host=parts.hostname,
            port=port,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
        )

    def url(self) -> str:
        """Return the full URL, password included, for the transport."""
        password = None
        if self.password is not None:
            password = quote(self.password, safe="")
        return self._format(password)

    def masked(self) -> str:
        """Return the URL with the password replaced by ``***``."""
        return self._format(None if self.password is None else MASKED_PASSWORD)

    def _format(self, password: str | None) -> str:
        credentials = ""
        if self.username is not None:
            credentials = quote(self.username, safe="")
            if password is not None:
                credentials += f":{password}"
            credentials += "@"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{credentials}{host}:{self.port}"


@attrs.frozen(kw_only=True)
class RetryOverride:
    """A route's retry schedule: waits between attempts, the number of
    attempts, and the maximum age of a message still retried.

    Unset fields keep the default schedule. With ``max_attempts`` the waits
    are cut to ``max_attempts - 1``, or extended by repeating the last one.
    """

    intervals: tuple[timedelta, ...] | None = None
    max_attempts: int | None = None
    max_age: timedelta | None = None

    def policy(self, default: RetryPolicy = DEFAULT_RETRY_POLICY) -> RetryPolicy:
        delays = self.intervals if self.intervals is not None else default.delays
        if self.max_attempts is None:
            return RetryPolicy(delays=tuple(delays))
        wanted = self.max_attempts - 1
        if wanted <= len(delays) or not delays:
            return RetryPolicy(delays=tuple(delays[:wanted]))
        padding = (delays[-1],) * (wanted - len(delays))
        return RetryPolicy(delays=(*delays, *padding))


@attrs.frozen(kw_only=True)
class RouteMatch:
    """Conditions of a rule; an empty tuple matches every message."""

    recipient_domains: tuple[str, ...] = ()
    mx_hosts: tuple[str, ...] = ()
    sender_domains: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    priorities: tuple[Priority, ...] = ()

    @property
    def is_empty(self) -> bool:
        return not (
            self.recipient_domains
            or self.mx_hosts
            or self.sender_domains
            or self.tags
            or self.priorities
        )


@attrs.frozen(kw_only=True)
class RouteAction:
    """What a matching rule decides.

    ``smarthost`` is set exactly when ``transport`` is ``smarthost``.
    ``source_address`` is the local IP address outgoing connections bind.
    """

    transport: TransportKind = TransportKind.MX
    smarthost: SmarthostUrl | None = None
    source_address: str | None = None
    tls: TlsPolicy = TlsPolicy.OPPORTUNISTIC
    pacing: PacingLimits = attrs.field(factory=PacingLimits)
    retry: RetryOverride | None = None


@attrs.frozen(kw_only=True)
class RouteRule:
    id: str
    match: RouteMatch
    action: RouteAction
    description: str = ""
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def is_default(self) -> bool:
        return self.id == DEFAULT_ROUTE_ID


@attrs.frozen(kw_only=True)
class RoutingInput:
    """What rules are matched against, for one message.

    ``mx_hosts`` is empty when the recipient domain could not be resolved;
    an MX condition then does not match.
    """

    recipient_domain: str
    sender_domain: str
    mx_hosts: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    priority: Priority = Priority.NORMAL


@attrs.frozen
class ConditionCheck:
    """One condition of a rule tested against a message."""

    condition: str
    matched: bool
    detail: str


@attrs.frozen
class RuleCheck:
    rule_id: str
    matched: bool
    conditions: tuple[ConditionCheck, ...]


@attrs.frozen
class Explanation:
    """The rule that won and every rule's result, in evaluation order."""

    rule: RouteRule
    checks: tuple[RuleCheck, ...]


def domain_matches(pattern: str, domain: str) -> bool:
    """Return whether ``domain`` matches ``pattern``; both are lower-case."""
    if pattern.startswith("*."):
        return domain.endswith(pattern[1:])
    return domain == pattern


def rule_matches(rule: RouteRule, subject: RoutingInput) -> bool:
    """Return whether every condition of ``rule`` holds for ``subject``."""
    return all(check.matched for check in _check_conditions(rule.match, subject))


def choose_rule(rules: Sequence[RouteRule], subject: RoutingInput) -> RouteRule:
    """Return the first rule whose conditions all hold.

    Raises ``ValueError`` when none does, which can't happen when the
    default rule is last.
    """
    for rule in rules:
        if rule_matches(rule, subject):
            return rule
    raise ValueError("no routing rule matched; the default rule must come last")


def explain(rules: Sequence[RouteRule], subject: RoutingInput) -> Explanation:
    """Test every rule and say why each did or did not match."""
    checks = []
    winner: RouteRule | None = None
    for rule in rules:
        conditions = tuple(_check_conditions(rule.match, subject))
        matched = all(condition.matched for condition in conditions)
        checks.append(
            RuleCheck(rule_id=rule.id, matched=matched, conditions=conditions)
        )
        if matched and winner is None:
            winner = rule
    if winner is None:
        raise ValueError("no routing rule matched; the default rule must come last")
    return Explanation(rule=winner, checks=tuple(checks))


def _check_conditions(match: RouteMatch, subject: RoutingInput) -> list[ConditionCheck]:
    checks = []
    if match.recipient_domains:
        checks.append(
            _domain_check(
                "recipient_domain", match.recipient_domains, [subject.recipient_domain]
            )
        )
    if match.mx_hosts:
        checks.append(_domain_check("mx_host", match.mx_hosts, subject.mx_hosts))
    if match.sender_domains:
        checks.append(
            _domain_check(
                "sender_domain", match.sender_domains, [subject.sender_domain]
            )
        )
    if match.tags:
        checks.append(_tag_check(match.tags, subject.tags))
    if match.priorities:
        matched = subject.priority in match.priorities
        wanted = ", ".join(match.priorities)
        verb = "is" if matched else "is not"
        detail = f"priority {subject.priority} {verb} one of {wanted}"
        checks.append(ConditionCheck("priority", matched, detail))
    return checks


def _domain_check(
    condition: str, patterns: Sequence[str], names: Sequence[str]
) -> ConditionCheck:
    for name in names:
        for pattern in patterns:
            if domain_matches(pattern, name):
                return ConditionCheck(condition, True, f"{name} matches {pattern}")
    if not names:
        return ConditionCheck(condition, False, "no MX host is known for the domain")
    listed = ", ".join(names)
    return ConditionCheck(
        condition, False, f"{listed} matches none of {', '.join(patterns)}"
    )


def _tag_check(patterns: Sequence[str], tags: Sequence[str]) -> ConditionCheck:
    shared = [tag for tag in tags if tag in patterns]
    if shared:
        return ConditionCheck("tag", True, f"the message has the tag {shared[0]}")
    return ConditionCheck(
        "tag", False, f"the message has none of the tags {', '.join(patterns)}"
    )


def temporary_failure(
    message: Message,
    reply: SmtpReply,
    *,
    now: datetime,
    event_id: str,
    retry: RetryOverride | None = None,
) -> Transition:
    """Record a temporary failure under a route's retry schedule.

    Defers the message, or bounces it with ``retries_exhausted`` when the
    attempts are used up or the next attempt would come after the route's
    ``max_age``, counted from the message's creation.
    """
    policy = retry.policy() if retry is not None else DEFAULT_RETRY_POLICY
    transition = lifecycle.defer_or_bounce(
        message, reply, now=now, event_id=event_id, policy=policy
    )
    after = transition.after
    if retry is None or retry.max_age is None:
        return transition
    if after.status != MessageStatus.DEFERRED or after.next_attempt_at is None:
        return transition
    if after.next_attempt_at <= message.created_at + retry.max_age:
        return transition
    return lifecycle.bounce(
        message,
        reply,
        now=now,
        event_id=event_id,
        bounce_class=BounceClass.RETRIES_EXHAUSTED,
    )
