"""Parsing the filters of queue cancellations and retries."""

from __future__ import annotations

import pytest

from sendarix_core.errors import ValidationError
from sendarix_core.queue_filter import parse_queue_filter
from sendarix_core.states import MessageStatus

WAITING = frozenset({MessageStatus.QUEUED, MessageStatus.DEFERRED})


def test_site_and_domains_lowered() -> None:
    parsed = parse_queue_filter(
        {
            "site": [" MX1.Example.test,MX2.Example.test "],
            "recipient_domain": "Gamma.TEST",
            "sender_domain": "Acme.Example",
        },
        allowed_statuses=WAITING,
    )

    assert parsed.sites == ("mx1.example.test,mx2.example.test",)
    assert parsed.recipient_domains == ("gamma.test",)
    assert parsed.sender_domains == ("acme.example",)


def test_inverted_time_range_rejected() -> None:
    with pytest.raises(ValidationError) as raised:
        parse_queue_filter(
            {
                "created_after": "2026-12-06T12:00:00Z",
                "created_before": "2026-12-06T11:00:00Z",
            },
            allowed_statuses=WAITING,
        )

    [error] = raised.value.errors
    assert (error.field, error.code) == ("filter.created_before", "invalid_range")
