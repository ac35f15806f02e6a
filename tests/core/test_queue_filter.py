"""Parsing the filters of queue cancellations and retries."""

from __future__ import annotations

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
