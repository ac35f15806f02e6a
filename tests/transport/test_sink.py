"""SinkTransport: accepts everything, sends nothing."""

from __future__ import annotations

import pytest

from sendarix_backends.smtp import SinkTransport
from tests.transport.conftest import make_envelope

pytestmark = pytest.mark.anyio


async def test_sink_accepts() -> None:
    sink = SinkTransport()

    reply = await sink.deliver(make_envelope())

    assert reply.code == 250
    assert reply.enhanced_code == "2.0.0"
    assert reply.text == "accepted by the sink"
    assert reply.mx_host == "sink"


async def test_sink_counts_deliveries() -> None:
    sink = SinkTransport()

    for number in range(3):
        await sink.deliver(make_envelope(number=number))

    assert sink.delivered == 3
    assert sink.envelopes == []


async def test_sink_keeps_latest_envelopes() -> None:
    sink = SinkTransport(keep=2)

    for number in range(3):
        await sink.deliver(make_envelope(number=number))

    assert [envelope.message_id for envelope in sink.envelopes] == ["msg-1", "msg-2"]


def test_sink_rejects_negative_keep() -> None:
    with pytest.raises(ValueError, match="keep"):
        SinkTransport(keep=-1)
