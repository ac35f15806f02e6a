"""Session reuse through the connection pool, counted by a real server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from sendarix_backends.smtp import MxResolver, MxTransport, PoolSettings, TlsMode
from sendarix_backends.smtp.connection import (
    ConnectionSettings,
    SmtpConnection,
    open_connection,
)
from sendarix_backends.smtp.pool import ConnectGate, ConnectionPool, Opener
from sendarix_backends.smtp.tls import unverified_context
from sendarix_core.errors import TemporaryDeliveryError
from tests.support.smtp_server import SmtpServer
from tests.transport.conftest import FakeClock, make_envelope

pytestmark = pytest.mark.anyio


@pytest.fixture
async def pooled(
    resolver: MxResolver, routed_server: SmtpServer, clock: FakeClock
) -> AsyncIterator[MxTransport]:
    transport = MxTransport(
        resolver,
        port=routed_server.port,
        helo_name="sender.example.test",
        pool=PoolSettings(max_connections_per_host=3, max_messages_per_connection=10),
        clock=clock,
    )
    yield transport
    await transport.aclose()


def direct_opener(server: SmtpServer, clock: FakeClock) -> Opener:
    """Return an opener of plain sessions to ``server`` as mx1.example.test."""
    settings = ConnectionSettings(
        helo_name="sender.example.test",
        timeout=5.0,
        tls=TlsMode.NONE,
        tls_context=unverified_context(),
    )

    async def opener() -> SmtpConnection:
        return await open_connection(
            "mx1.example.test", "127.0.0.1", server.port, settings, clock
        )

    return opener


async def test_sequential_messages_share_session(
    routed_server: SmtpServer, transport: MxTransport
) -> None:
    for number in range(100):
        await transport.deliver(make_envelope(number=number))

    assert len(routed_server.messages) == 100
    assert routed_server.connections == 1


async def test_concurrent_messages_share_sessions(
    routed_server: SmtpServer, transport: MxTransport, resolver: MxResolver
) -> None:
    count = 3_000
    # Resolve once first: thousands of tasks starting together can keep the
    # event loop busy past the resolver's timeout on a loaded machine, and
    # the lookup is not what this test measures.
    await resolver.resolve("example.test")

    await asyncio.gather(
        *(transport.deliver(make_envelope(number=number)) for number in range(count))
    )

    # At most 10 sessions at once (the default cap), each used for at most
    # 100 messages before it is replaced.
    assert len(routed_server.messages) == count
    assert routed_server.connections <= 10 + count // 100


async def test_sessions_per_host_capped(
    routed_server: SmtpServer, resolver: MxResolver
) -> None:
    transport = MxTransport(
        resolver,
        port=routed_server.port,
        helo_name="sender.example.test",
        pool=PoolSettings(max_connections_per_host=3),
    )
    try:
        await asyncio.gather(
            *(transport.deliver(make_envelope(number=number)) for number in range(30))
        )
    finally:
        await transport.aclose()

    assert len(routed_server.messages) == 30
    assert routed_server.connections <= 3
    assert routed_server.peak_sessions <= 3


async def test_session_replaced_after_message_limit(
    routed_server: SmtpServer, pooled: MxTransport
) -> None:
    for number in range(25):
        await pooled.deliver(make_envelope(number=number))

    assert routed_server.connections == 3


async def test_idle_session_probed_with_noop(
    routed_server: SmtpServer, pooled: MxTransport, clock: FakeClock
) -> None:
    await pooled.deliver(make_envelope(number=1))

    clock.now += 6
    await pooled.deliver(make_envelope(number=2))

    assert routed_server.command_count("NOOP") == 1
    assert routed_server.connections == 1


async def test_recent_session_not_probed(
    routed_server: SmtpServer, pooled: MxTransport, clock: FakeClock
) -> None:
    await pooled.deliver(make_envelope(number=1))

    clock.now += 1
    await pooled.deliver(make_envelope(number=2))

    assert routed_server.command_count("NOOP") == 0


async def test_idle_session_expires(
    routed_server: SmtpServer, pooled: MxTransport, clock: FakeClock
) -> None:
    await pooled.deliver(make_envelope(number=1))

    clock.now += 31
    await pooled.deliver(make_envelope(number=2))

    assert routed_server.connections == 2
    assert routed_server.command_count("NOOP") == 0


async def test_session_closed_by_server_replaced(
    routed_server: SmtpServer, transport: MxTransport
) -> None:
    await transport.deliver(make_envelope(number=1))
    routed_server.take_down()
    routed_server.bring_up()

    await transport.deliver(make_envelope(number=2))

    assert len(routed_server.messages) == 2
    assert routed_server.connections == 2


async def test_failed_session_not_reused(
    routed_server: SmtpServer, transport: MxTransport
) -> None:
    routed_server.reply_with("421 4.3.2 closing", at="RCPT")
    with pytest.raises(TemporaryDeliveryError):
        await transport.deliver(make_envelope(number=1))

    await transport.deliver(make_envelope(number=2))

    assert routed_server.connections == 2


async def test_aclose_ends_sessions(
    routed_server: SmtpServer, resolver: MxResolver
) -> None:
    transport = MxTransport(
        resolver, port=routed_server.port, helo_name="sender.example.test"
    )
    await asyncio.gather(
        *(transport.deliver(make_envelope(number=number)) for number in range(20))
    )

    await transport.aclose()

    routed_server.wait_until_idle()
    assert routed_server.active_sessions == 0


async def test_deliver_after_aclose(
    routed_server: SmtpServer, transport: MxTransport
) -> None:
    await transport.aclose()

    with pytest.raises(TemporaryDeliveryError) as caught:
        await transport.deliver(make_envelope())

    assert "closed" in caught.value.reply_text


async def test_close_idle_ends_expired_sessions(
    routed_server: SmtpServer, clock: FakeClock
) -> None:
    pool = ConnectionPool(PoolSettings(max_idle=30), clock=clock)
    key = ("mx1.example.test", routed_server.port)
    opener = direct_opener(routed_server, clock)

    async with pool.connection(key, opener):
        pass
    clock.now += 29
    assert await pool.close_idle() == 0

    clock.now += 1
    assert await pool.close_idle() == 1
    assert pool.open_count(key) == 0
    routed_server.wait_until_idle()
    await pool.aclose()


async def test_close_idle_beyond_spares_busy(
    routed_server: SmtpServer, clock: FakeClock
) -> None:
    pool = ConnectionPool(clock=clock)
    key = ("mx1.example.test", routed_server.port)
    opener = direct_opener(routed_server, clock)

    async with pool.connection(key, opener) as busy:
        async with pool.connection(key, opener), pool.connection(key, opener):
            pass
        closed = await pool.close_idle_beyond(2)
        assert pool.open_count(key) == 2
        assert busy.is_open

    assert closed == 1
    assert await pool.close_idle_beyond(5) == 0
    assert pool.open_count(key) == 2
    await pool.aclose()


async def test_cancelled_waiter_passes_turn_on(
    routed_server: SmtpServer, clock: FakeClock
) -> None:
    pool = ConnectionPool(PoolSettings(max_connections_per_host=1), clock=clock)
    key = ("mx1.example.test", routed_server.port)
    opener = direct_opener(routed_server, clock)

    async def borrow() -> None:
        async with pool.connection(key, opener):
            pass

    async with pool.connection(key, opener):
        first = asyncio.create_task(borrow())
        second = asyncio.create_task(borrow())
        await asyncio.sleep(0.01)
    # The session went back and woke the first waiter, which is cancelled
    # before it runs; the second must get the session instead.
    first.cancel()
    await asyncio.wait_for(second, timeout=5)

    assert first.cancelled()
    assert pool.open_count(key) == 1
    await pool.aclose()


class CountingGate:
    """A connect gate that opens for the first ``allowed`` calls and then
    returns ``retry_after`` seconds to wait, or raises ``error``."""

    def __init__(
        self,
        *,
        allowed: int,
        retry_after: float,
        error: Exception | None = None,
    ) -> None:
        self.allowed = allowed
        self.retry_after = retry_after
        self.error = error
        self.calls = 0

    async def __call__(self) -> float | None:
        self.calls += 1
        if self.error is not None:
            error, self.error = self.error, None
            raise error
        if self.calls <= self.allowed:
            return None
        return self.retry_after


def gated_transport(
    resolver: MxResolver,
    server: SmtpServer,
    gate: ConnectGate,
    pool: PoolSettings | None = None,
) -> MxTransport:
    return MxTransport(
        resolver,
        port=server.port,
        helo_name="sender.example.test",
        pool=pool,
        connect_gate=gate,
    )


async def test_gated_deliveries_reuse_session(
    routed_server: SmtpServer, resolver: MxResolver
) -> None:
    gate = CountingGate(allowed=1, retry_after=600.0)
    transport = gated_transport(resolver, routed_server, gate)
    try:
        # The gate lets one session open in ten minutes; the other messages
        # wait for that session instead of for the gate.
        await asyncio.wait_for(
            asyncio.gather(
                *(transport.deliver(make_envelope(number=n)) for n in range(20))
            ),
            timeout=30,
        )
    finally:
        await transport.aclose()

    assert len(routed_server.messages) == 20
    assert routed_server.connections == 1
    assert gate.calls >= 2


async def test_gate_asked_again_after_wait(
    routed_server: SmtpServer, resolver: MxResolver
) -> None:
    gate = CountingGate(allowed=0, retry_after=0.05)
    transport = gated_transport(resolver, routed_server, gate)
    try:
        delivery = asyncio.create_task(transport.deliver(make_envelope()))
        await asyncio.sleep(0.2)
        assert not delivery.done()

        gate.allowed = gate.calls + 1
        await asyncio.wait_for(delivery, timeout=10)
    finally:
        await transport.aclose()

    assert len(routed_server.messages) == 1
    assert gate.calls >= 3


async def test_session_returned_while_gate_asked(
    routed_server: SmtpServer, resolver: MxResolver
) -> None:
    first_done = asyncio.Event()
    calls = 0

    async def gate() -> float | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            return None
        # The first delivery returns its session before this result comes.
        await first_done.wait()
        return 600.0

    transport = gated_transport(resolver, routed_server, gate)
    try:
        await resolver.resolve("example.test")
        first = asyncio.create_task(transport.deliver(make_envelope(number=1)))
        await asyncio.sleep(0)
        second = asyncio.create_task(transport.deliver(make_envelope(number=2)))
        await asyncio.wait_for(first, timeout=10)
        first_done.set()
        await asyncio.wait_for(second, timeout=10)
    finally:
        await transport.aclose()

    assert len(routed_server.messages) == 2
    assert routed_server.connections == 1


async def test_gate_admits_waiters_while_slots_free(
    routed_server: SmtpServer, resolver: MxResolver
) -> None:
    # One token at first, and the next ones 0.1 s apart. Each delivery takes
    # a second, so each token should open one more of the three sessions.
    tokens = 1
    loop = asyncio.get_running_loop()

    def refill() -> None:
        nonlocal tokens
        tokens += 1

    for delay in (0.1, 0.2):
        loop.call_later(delay, refill)

    async def gate() -> float | None:
        nonlocal tokens
        if tokens:
            tokens -= 1
            return None
        return 0.05

    routed_server.delay_data_reply(1.0)
    transport = gated_transport(
        resolver, routed_server, gate, PoolSettings(max_connections_per_host=3)
    )
    try:
        await resolver.resolve("example.test")
        await asyncio.wait_for(
            asyncio.gather(
                *(transport.deliver(make_envelope(number=n)) for n in range(3))
            ),
            timeout=30,
        )
    finally:
        await transport.aclose()

    assert routed_server.connections == 3
    assert routed_server.peak_sessions == 3


async def test_gate_error_frees_slot(
    routed_server: SmtpServer, resolver: MxResolver
) -> None:
    gate = CountingGate(
        allowed=10, retry_after=600.0, error=RuntimeError("pacing store down")
    )
    transport = gated_transport(
        resolver, routed_server, gate, PoolSettings(max_connections_per_host=1)
    )
    try:
        with pytest.raises(RuntimeError, match="pacing store down"):
            await transport.deliver(make_envelope(number=1))
        # With the slot leaked, this delivery would wait forever.
        await asyncio.wait_for(transport.deliver(make_envelope(number=2)), timeout=10)
    finally:
        await transport.aclose()

    assert len(routed_server.messages) == 1


def test_pool_settings_reject_zero() -> None:
    with pytest.raises(ValueError, match="max_connections_per_host"):
        PoolSettings(max_connections_per_host=0)
