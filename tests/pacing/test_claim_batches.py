"""Claim sizes under load: while deliveries are in flight, a worker waits
for a batch's worth of free delivery slots before it claims again.

A few messages go to a tarpit (a server that accepts connections and never
greets), so their slots stay busy. The rest go to a working server on
loopback, routed there by a rule, and free their slots one by one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import anyio
import pytest

from sendarix_backends.sql import SqlStore
from sendarix_core.model import Message
from sendarix_core.states import MessageStatus, Priority
from tests.engine.conftest import message_body
from tests.pacing.test_priority import (
    CONCURRENCY,
    RecordingQueue,
    queue_backlog,
    route_fast_domain,
    tarpit_engine,
)
from tests.support.dns_server import DnsServer
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.anyio

MESSAGES = 60
STUCK = 4
# Long enough that no claim in these tests gives up waiting for free slots.
GATHER_SECONDS = 30


class SlotRecordingQueue(RecordingQueue):
    """The SQL queue, recording the deliveries in flight at each claim."""

    def __init__(self, store: SqlStore) -> None:
        super().__init__(store)
        self.in_flight_at_claims: list[int] = []

    async def claim_due(
        self,
        worker_id: str,
        now: datetime,
        limit: int,
        lease: timedelta,
        *,
        priorities: Sequence[Priority] | None = None,
    ) -> list[Message]:
        assert self.engine is not None
        self.in_flight_at_claims.append(len(self.engine.worker.in_flight()))
        return await super().claim_due(
            worker_id, now, limit, lease, priorities=priorities
        )


async def test_claims_wait_for_free_slots(
    tmp_path: Path, dns_server: DnsServer, smtp_server: SmtpServer
) -> None:
    engine, queue = tarpit_engine(
        tmp_path, dns_server, smtp_server, make_queue=SlotRecordingQueue
    )
    assert isinstance(queue, SlotRecordingQueue)
    with SmtpServer() as fast:
        async with engine:
            engine.worker.gather_seconds = GATHER_SECONDS
            await route_fast_domain(engine, fast)
            await queue_backlog(engine, STUCK)
            await queue_backlog(engine, MESSAGES, domain="fast.test")
            with anyio.fail_after(60):
                while len(fast.messages) < MESSAGES:
                    await anyio.sleep(0.05)

    # Once the stuck deliveries started, every claim came while they were
    # in flight, and only once half the slots were free.
    during_deliveries = [n for n in queue.in_flight_at_claims if n]
    assert len(during_deliveries) >= MESSAGES // CONCURRENCY
    assert min(during_deliveries) >= STUCK
    assert max(during_deliveries) <= CONCURRENCY - CONCURRENCY // 2
    assert smtp_server.messages == []


async def test_idle_worker_claims_at_once(
    tmp_path: Path, dns_server: DnsServer, smtp_server: SmtpServer
) -> None:
    engine, _ = tarpit_engine(tmp_path, dns_server, smtp_server)
    with SmtpServer() as fast:
        async with engine:
            engine.worker.gather_seconds = GATHER_SECONDS
            await route_fast_domain(engine, fast)
            result = await engine.send(message_body("ada@fast.test"))
            # Far less than a claim waits with deliveries in flight.
            with anyio.fail_after(10):
                while (await engine.get_message(result.message_id)).status != (
                    MessageStatus.DELIVERED
                ):
                    await anyio.sleep(0.05)

    assert [m.rcpt_tos for m in fast.messages] == [("ada@fast.test",)]
