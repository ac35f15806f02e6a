"""Validating rule documents from the API and reading them back."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sendarix_core.errors import ValidationError
from sendarix_core.route_requests import (
    action_to_document,
    match_to_document,
    parse_action,
    parse_description,
    parse_match,
)
from sendarix_core.routing import TlsPolicy, TransportKind
from sendarix_core.states import Priority


def field_codes(error: ValidationError) -> dict[str, str]:
    return {item.field: item.code for item in error.errors}


def test_match_normalizes_domains() -> None:
    match = parse_match(
        {
            "recipient_domains": ["Example.COM.", "*.bücher.example"],
            "mx_hosts": ["*.Google.com"],
            "priorities": ["high"],
            "tags": ["otp"],
        }
    )

    assert match.recipient_domains == ("example.com", "*.xn--bcher-kva.example")
    assert match.mx_hosts == ("*.google.com",)
    assert match.priorities == (Priority.HIGH,)
    assert match.tags == ("otp",)


def test_match_absent_matches_all() -> None:
    assert parse_match(None).is_empty


def test_match_lists_every_error() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_match(
            {
                "recipient_domains": ["exa mple..com"],
                "priorities": ["urgent"],
                "tags": ["a b"],
                "colour": ["red"],
            }
        )

    assert field_codes(caught.value) == {
        "match.recipient_domains.0": "invalid_domain_pattern",
        "match.priorities.0": "invalid_priority",
        "match.tags.0": "invalid_tag",
        "match.colour": "unknown_field",
    }


def test_action_defaults() -> None:
    action = parse_action(None)

    assert action.transport == TransportKind.MX
    assert action.tls == TlsPolicy.OPPORTUNISTIC
    assert not action.pacing.is_shared
    assert action.retry is None


def test_action_full_document() -> None:
    action = parse_action(
        {
            "transport": "smarthost",
            "smarthost": "smtp://user:pw@relay.example:2525",
            "source_address": "127.0.0.2",
            "tls": "required_verified",
            "pacing": {"max_connections": 3, "messages_per_second": 2.5},
            "retry": {"intervals": [60, 600], "max_attempts": 3, "max_age": 3600},
        }
    )

    assert action.smarthost is not None
    assert action.smarthost.password == "pw"
    assert action.source_address == "127.0.0.2"
    assert action.tls == TlsPolicy.REQUIRED_VERIFIED
    assert action.pacing.max_connections == 3
    assert action.pacing.messages_per_second == 2.5
    assert action.retry is not None
    assert action.retry.intervals == (timedelta(seconds=60), timedelta(seconds=600))
    assert action.retry.max_age == timedelta(hours=1)


def test_action_document_round_trip() -> None:
    document = {
        "transport": "smarthost",
        "smarthost": "smtp://user:pw@relay.example:2525",
        "source_address": None,
        "tls": "required",
        "pacing": {
            "max_connections": 3,
            "messages_per_connection": None,
            "messages_per_second": None,
            "messages_per_minute": 120.0,
            "connections_per_minute": None,
        },
        "retry": {"intervals": [60], "max_attempts": None, "max_age": None},
    }

    stored = action_to_document(parse_action(document), reveal_password=True)

    assert stored == document


def test_action_document_masks_password() -> None:
    action = parse_action(
        {"transport": "smarthost", "smarthost": "smtp://user:pw@relay.example"}
    )

    shown = action_to_document(action, reveal_password=False)

    assert shown["smarthost"] == "smtp://user:***@relay.example:587"


@pytest.mark.parametrize(
    ("document", "field", "code"),
    [
        ({"transport": "smarthost"}, "action.smarthost", "missing_smarthost"),
        (
            {"smarthost": "smtp://relay.example"},
            "action.smarthost",
            "unexpected_smarthost",
        ),
        (
            {"transport": "smarthost", "smarthost": "ftp://x"},
            "action.smarthost",
            "invalid_smarthost",
        ),
        ({"transport": "pigeon"}, "action.transport", "invalid_value"),
        ({"tls": "maybe"}, "action.tls", "invalid_value"),
        (
            {"source_address": "10.0.0.300"},
            "action.source_address",
            "invalid_ip_address",
        ),
        (
            {"pacing": {"max_connections": 0}},
            "action.pacing.max_connections",
            "out_of_range",
        ),
        (
            {"pacing": {"max_connections": 1.5}},
            "action.pacing.max_connections",
            "invalid_type",
        ),
        (
            {"pacing": {"messages_per_second": True}},
            "action.pacing.messages_per_second",
            "invalid_type",
        ),
        ({"retry": {"intervals": []}}, "action.retry.intervals", "invalid_type"),
        (
            {"retry": {"max_attempts": 1000}},
            "action.retry.max_attempts",
            "out_of_range",
        ),
        ({"retry": {"max_age": 10**9}}, "action.retry.max_age", "out_of_range"),
        ({"pacing": []}, "action.pacing", "invalid_type"),
    ],
)
def test_action_rejects(document: dict[str, object], field: str, code: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_action(document)

    assert field_codes(caught.value).get(field) == code


def test_smarthost_error_hides_password() -> None:
    with pytest.raises(ValidationError) as caught:
        parse_action(
            {"transport": "smarthost", "smarthost": "smtp://u:hunter2@relay/x"}
        )

    assert "hunter2" not in str(caught.value.errors)


def test_match_document_round_trip() -> None:
    document = {
        "recipient_domains": ["*.example.com"],
        "mx_hosts": [],
        "sender_domains": ["acme.example"],
        "tags": ["otp"],
        "priorities": ["high", "normal"],
    }

    assert match_to_document(parse_match(document)) == document


def test_description_limits() -> None:
    assert parse_description(None) == ""
    with pytest.raises(ValidationError):
        parse_description("x" * 501)
