"""Priority under load: a worker saturated by a backlog of ``low`` messages
picks up a ``high`` one in its next claim cycle.

The low messages go to a tarpit (a server that accepts connections and
never greets), so every delivery slot they may use stays busy. The high
message is routed by a rule to a second, working server.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import anyio
import pytest

from sendarix_backends.engine import Engine
from sendarix_backends.plugins import get_plugin_manager
from sendarix_backends.settings import Settings
from sendarix_backends.smtp import SinkTransport
from sendarix_backends.sql import SqlStore
from sendarix_core.model import Message
from sendarix_core.states import MessageStatus, Priority
from tests.engine.conftest import DOMAIN, message_body
from tests.support.dns_server import DnsServer
from tests.support.smtp_server import SmtpServer

pytestmark = pytest.mark.anyio

BACKLOG = 10_000
CONCURRENCY = 10


class RecordingQueue:
    """The SQL queue, recording the claim cycle and ids of each claim."""

    def __init__(self, store: SqlStore) -> None:
        self._store = store
        self.engine: Engine | None = None
        self.claims: list[tuple[int, list[str]]] = []

    async def claim_due(
        self,
        worker_id: str,
        now: datetime,
        limit: int,
        lease: timedelta,
        *,
        priorities: Sequence[Priority] | None = None,
    ) -> list[Message]:
        claimed = await self._store.claim_due(
            worker_id, now, limit, lease, priorities=priorities
        )
        assert self.engine is not None
        cycle = self.engine.worker.claim_cycles
        self.claims.append((cycle, [message.id for message in claimed]))
        return claimed

    async def renew_leases(
        self, messages: Sequence[Message], now: datetime, lease: timedelta
    ) -> None:
        await self._store.renew_leases(messages, now, lease)

    async def next_due_at(self) -> datetime | None:
        return await self._store.next_due_at()

    async def aclose(self) -> None:
        return None


async def queue_backlog(
    engine: Engine, count: int, priority: str = "low", domain: str = DOMAIN
) -> None:
    now = engine.clock.now()
    submissions = []
    for number in range(count):
        body = message_body(f"user{number}@{domain}", priority=priority)
        submissions.append(
            await engine.prepare_submission(
                body, api_key=None, idempotency_key=None, now=now
            )
        )
    for start in range(0, count, 1000):
        await engine.store.create_messages(submissions[start : start + 1000], now)
    engine.worker.wake()


def tarpit_engine(
    tmp_path: Path,
    dns_server: DnsServer,
    smtp_server: SmtpServer,
    make_queue: Callable[[SqlStore], RecordingQueue] = RecordingQueue,
) -> tuple[Engine, RecordingQueue]:
    """Build an engine whose deliveries to DOMAIN hang on a tarpit.

    ``make_queue`` wraps the SQL store in the queue the worker claims from.
    """
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'sendarix.db'}",
        dns_nameservers=(("127.0.0.1", dns_server.port),),
        destination_port=smtp_server.port,
        helo_name="sendarix.test",
        smtp_timeout=120,
        worker_concurrency=CONCURRENCY,
        poll_interval=60,
    )
    smtp_server.tarpit()
    store = SqlStore(settings.database_url)
    queue = make_queue(store)
    transport = get_plugin_manager().hook.sendarix_transport(settings=settings)
    engine = Engine(
        settings=settings,
        store=store,
        queue=queue,
        transport=transport,
        sink=SinkTransport(),
    )
    queue.engine = engine
    return engine, queue


async def route_fast_domain(engine: Engine, fast: SmtpServer) -> None:
    """Route mail to fast.test to the working server ``fast``."""
    await engine.control.routes.create(
        {
            "match": {"recipient_domains": ["fast.test"]},
            "action": {
                "transport": "smarthost",
                "smarthost": f"smtp://127.0.0.1:{fast.port}",
            },
        }
    )


async def test_high_claimed_next_cycle(
    tmp_path: Path, dns_server: DnsServer, smtp_server: SmtpServer
) -> None:
    engine, queue = tarpit_engine(tmp_path, dns_server, smtp_server)
    with SmtpServer() as fast:
        async with engine:
            await route_fast_domain(engine, fast)
            await queue_backlog(engine, BACKLOG)
            busy_low = CONCURRENCY - 1
            with anyio.fail_after(30):
                while smtp_server.active_sessions < busy_low:
                    await anyio.sleep(0.05)

            result = await engine.send(message_body("ada@fast.test", priority="high"))
            sent_in_cycle = engine.worker.claim_cycles
            with anyio.fail_after(30):
                while (await engine.get_message(result.message_id)).status != (
                    MessageStatus.DELIVERED
                ):
                    await anyio.sleep(0.05)

            [claimed_in_cycle] = [
                cycle for cycle, ids in queue.claims if result.message_id in ids
            ]
            assert claimed_in_cycle - sent_in_cycle <= 1
            assert smtp_server.active_sessions == busy_low
            assert smtp_server.messages == []
            assert [m.rcpt_tos for m in fast.messages] == [("ada@fast.test",)]
            print(
                f"high message claimed {claimed_in_cycle - sent_in_cycle} cycle(s) "
                f"after it was queued behind {BACKLOG} low messages"
            )


async def test_high_backlog_fills_reserved_slots(
    tmp_path: Path, dns_server: DnsServer, smtp_server: SmtpServer
) -> None:
    engine, queue = tarpit_engine(tmp_path, dns_server, smtp_server)
    async with engine:
        await queue_backlog(engine, 3 * CONCURRENCY, priority="high")
        with anyio.fail_after(30):
            while smtp_server.active_sessions < CONCURRENCY:
                await anyio.sleep(0.05)

    # The first cycle that finds messages claims the lower tiers' share, all
    # of it high, and then the reserved slot. No cycle claims beyond the
    # concurrency.
    first = min(cycle for cycle, ids in queue.claims if ids)
    in_first = [len(ids) for cycle, ids in queue.claims if cycle == first]
    assert in_first == [CONCURRENCY - 1, 1]
    assert sum(len(ids) for _, ids in queue.claims) == CONCURRENCY
