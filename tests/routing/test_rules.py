"""Matching routing rules, explaining the match, and route retry schedules."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sendarix_core.model import SmtpReply
from sendarix_core.retry import DEFAULT_RETRY_POLICY
from sendarix_core.routing import (
    DEFAULT_ROUTE_ID,
    RetryOverride,
    RouteAction,
    RouteMatch,
    RouteRule,
    RoutingInput,
    SmarthostUrl,
    TransportKind,
    choose_rule,
    domain_matches,
    explain,
    temporary_failure,
)
from sendarix_core.states import MessageStatus, Priority
from tests.core.factories import T0, make_message

DEFAULT = RouteRule(id=DEFAULT_ROUTE_ID, match=RouteMatch(), action=RouteAction())
SINK = RouteAction(transport=TransportKind.SINK)


def rule(rule_id: str, **conditions: object) -> RouteRule:
    return RouteRule(id=rule_id, match=RouteMatch(**conditions), action=SINK)  # type: ignore[arg-type]


def subject(**fields: object) -> RoutingInput:
    values: dict[str, object] = {
        "recipient_domain": "example.com",
        "sender_domain": "acme.example",
    }
    values.update(fields)
    return RoutingInput(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("pattern", "domain", "expected"),
    [
        ("example.com", "example.com", True),
        ("example.com", "mail.example.com", False),
        ("*.example.com", "mail.example.com", True),
        ("*.example.com", "a.b.example.com", True),
        ("*.example.com", "example.com", False),
        ("*.example.com", "badexample.com", False),
    ],
)
def test_domain_patterns(pattern: str, domain: str, expected: bool) -> None:
    assert domain_matches(pattern, domain) is expected


def test_first_matching_rule_wins() -> None:
    rules = [
        rule("rte_a", recipient_domains=("other.com",)),
        rule("rte_b", recipient_domains=("example.com",)),
        rule("rte_c", recipient_domains=("*.com",)),
        DEFAULT,
    ]

    assert choose_rule(rules, subject()).id == "rte_b"


def test_default_rule_catches_rest() -> None:
    rules = [rule("rte_a", recipient_domains=("other.com",)), DEFAULT]

    assert choose_rule(rules, subject()).id == DEFAULT_ROUTE_ID


def test_conditions_all_required() -> None:
    both = rule("rte_a", recipient_domains=("example.com",), tags=("otp",))
    rules = [both, DEFAULT]

    assert choose_rule(rules, subject(tags=("otp",))).id == "rte_a"
    assert choose_rule(rules, subject(tags=("news",))).id == DEFAULT_ROUTE_ID


def test_mx_host_wildcard_matches() -> None:
    google = rule("rte_google", mx_hosts=("*.google.com",))
    hosted = subject(mx_hosts=("alt1.aspmx.l.google.com", "aspmx.l.google.com"))

    assert choose_rule([google, DEFAULT], hosted).id == "rte_google"


def test_mx_condition_fails_unresolved() -> None:
    google = rule("rte_google", mx_hosts=("*.google.com",))

    explanation = explain([google, DEFAULT], subject(mx_hosts=()))

    [condition] = explanation.checks[0].conditions
    assert not condition.matched
    assert "no MX host" in condition.detail


def test_sender_and_priority_conditions() -> None:
    urgent = rule(
        "rte_urgent", sender_domains=("acme.example",), priorities=(Priority.HIGH,)
    )

    assert choose_rule([urgent, DEFAULT], subject(priority=Priority.HIGH)).id == (
        "rte_urgent"
    )
    assert choose_rule([urgent, DEFAULT], subject()).id == DEFAULT_ROUTE_ID


def test_explain_reports_every_rule() -> None:
    rules = [
        rule("rte_a", recipient_domains=("other.com",)),
        rule("rte_b", recipient_domains=("*.com",), tags=("otp",)),
        rule("rte_c", recipient_domains=("example.com",)),
        DEFAULT,
    ]

    explanation = explain(rules, subject(tags=("otp",)))

    assert explanation.rule.id == "rte_b"
    assert [check.matched for check in explanation.checks] == [
        False,
        True,
        True,
        True,
    ]
    first = explanation.checks[0].conditions[0]
    assert first.detail == "example.com matches none of other.com"
    second = explanation.checks[1].conditions
    assert [condition.condition for condition in second] == ["recipient_domain", "tag"]
    assert second[0].detail == "example.com matches *.com"


def test_no_rule_raises() -> None:
    with pytest.raises(ValueError, match="default rule"):
        choose_rule([rule("rte_a", tags=("x",))], subject())


def test_smarthost_url_masks_password() -> None:
    url = SmarthostUrl.parse("smtp://relay%40acme:s3cr%2Ft@relay.example:2525")

    assert url.username == "relay@acme"
    assert url.password == "s3cr/t"
    assert url.masked() == "smtp://relay%40acme:***@relay.example:2525"
    assert url.url() == "smtp://relay%40acme:s3cr%2Ft@relay.example:2525"
    assert "s3cr" not in repr(url)


def test_smarthost_url_default_ports() -> None:
    assert SmarthostUrl.parse("smtp://relay.example").port == 587
    assert SmarthostUrl.parse("smtps://relay.example").port == 465


@pytest.mark.parametrize(
    "url", ["http://relay.example", "smtp://", "smtp://relay.example/path"]
)
def test_smarthost_url_invalid(url: str) -> None:
    with pytest.raises(ValueError, match="URL"):
        SmarthostUrl.parse(url)


def test_retry_override_cuts_attempts() -> None:
    policy = RetryOverride(max_attempts=3).policy()

    assert policy.delays == DEFAULT_RETRY_POLICY.delays[:2]
    assert policy.max_attempts == 3


def test_retry_override_repeats_last_wait() -> None:
    override = RetryOverride(intervals=(timedelta(seconds=10),), max_attempts=4)

    assert override.policy().delays == (timedelta(seconds=10),) * 3


def test_retry_override_single_attempt() -> None:
    assert RetryOverride(max_attempts=1).policy().max_attempts == 1


REPLY = SmtpReply(code=451, enhanced_code="4.3.0", text="busy", mx_host="mx.test")


def test_temporary_failure_uses_route_waits() -> None:
    message = make_message(status=MessageStatus.ACCEPTED, attempts=1)
    retry = RetryOverride(intervals=(timedelta(seconds=7),))

    transition = temporary_failure(
        message, REPLY, now=T0, event_id="evt_1", retry=retry
    )

    assert transition.after.status == MessageStatus.DEFERRED
    assert transition.after.next_attempt_at == T0 + timedelta(seconds=7)


def test_temporary_failure_bounces_past_max_age() -> None:
    message = make_message(status=MessageStatus.ACCEPTED, attempts=2)
    retry = RetryOverride(max_age=timedelta(minutes=10))
    now = T0 + timedelta(minutes=6)

    transition = temporary_failure(
        message, REPLY, now=now, event_id="evt_1", retry=retry
    )

    assert transition.after.status == MessageStatus.BOUNCED
    assert transition.event.data["bounce_class"] == "retries_exhausted"


def test_temporary_failure_within_max_age_defers() -> None:
    message = make_message(status=MessageStatus.ACCEPTED, attempts=1)
    retry = RetryOverride(max_age=timedelta(minutes=10))

    transition = temporary_failure(
        message, REPLY, now=T0, event_id="evt_1", retry=retry
    )

    assert transition.after.status == MessageStatus.DEFERRED


def test_temporary_failure_default_schedule() -> None:
    message = make_message(status=MessageStatus.ACCEPTED, attempts=1)

    transition = temporary_failure(message, REPLY, now=T0, event_id="evt_1")

    assert transition.after.next_attempt_at == T0 + timedelta(seconds=30)
