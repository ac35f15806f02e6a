"""The pacer's slots and sessions across claimed batches, with the pacing
store of one process."""

from __future__ import annotations

from datetime import timedelta

import anyio
import pytest

from sendarix_backends.pacing import Pacer
from sendarix_backends.pacing.store import MemoryPacingStore
from sendarix_backends.routing.router import Dispatch
from sendarix_core.clock import ManualClock
from sendarix_core.model import SmtpReply
from sendarix_core.pacing import MAX_MESSAGES_PER_SLOT, PacingLimits
from sendarix_core.routing import RouteAction, RouteMatch, RouteRule
from tests.core.factories import T0, make_message

pytestmark = pytest.mark.anyio

SITE = "mx1.example.test"
THROTTLE = SmtpReply(code=421, enhanced_code="4.7.0", text="Too many connections")


class ClosedSites:
    """Records the sites whose idle sessions the pacer closes, all of them
    or those beyond a number of open sessions."""

    def __init__(self) -> None:
        self.sites: list[str] = []
        self.trims: list[tuple[str, int]] = []

    async def close(self, site: str) -> None:
        self.sites.append(site)

    async def trim(self, site: str, keep: int) -> None:
        self.trims.append((site, keep))


def dispatch(**limits: object) -> Dispatch:
    action = RouteAction(pacing=PacingLimits(**limits))  # type: ignore[arg-type]
    return Dispatch(RouteRule(id="default", match=RouteMatch(), action=action), SITE)


def make_pacer(store: MemoryPacingStore, closed: ClosedSites) -> Pacer:
    return Pacer(
        store,
        worker_id="worker-1",
        clock=ManualClock(T0),
        lease=timedelta(seconds=60),
        close_site=closed.close,
        trim_site=closed.trim,
    )


async def admit_and_finish(pacer: Pacer, route: Dispatch, count: int) -> int:
    """Admit ``count`` new messages of the site, finish the admitted ones and
    return how many were admitted.

    Nothing goes through a slot, so the pacer keeps its first estimate of a
    delivery's time, which admits two messages per slot.
    """
    candidates = [(make_message(), route) for _ in range(count)]
    admission = await pacer.admit(candidates)
    for _ in admission.admitted:
        pacer.finished(SITE)
    return len(admission.admitted)


async def test_smaller_batch_keeps_sessions() -> None:
    closed = ClosedSites()
    pacer = make_pacer(MemoryPacingStore(), closed)
    route = dispatch(max_connections=5)

    assert await admit_and_finish(pacer, route, 4) == 4
    assert await admit_and_finish(pacer, route, 1) == 1
    assert await admit_and_finish(pacer, route, 2) == 2

    assert closed.sites == []
    assert closed.trims == [(SITE, 4), (SITE, 4)]


async def test_slowed_site_keeps_sessions() -> None:
    closed = ClosedSites()
    store = MemoryPacingStore()
    pacer = make_pacer(store, closed)
    route = dispatch()
    await pacer.report_throttle(SITE, THROTTLE)

    # The slowed site's cap is 5 of the 10 connections it is scaled from.
    assert await admit_and_finish(pacer, route, 12) == 10
    assert await admit_and_finish(pacer, route, 1) == 1
    assert await admit_and_finish(pacer, route, 3) == 3

    assert closed.sites == []
    assert {keep for _, keep in closed.trims} == {5}


async def test_lowered_cap_trims_sessions() -> None:
    closed = ClosedSites()
    store = MemoryPacingStore()
    pacer = make_pacer(store, closed)
    route = dispatch(max_connections=4)

    assert await admit_and_finish(pacer, route, 4) == 4
    await pacer.report_throttle(SITE, THROTTLE)
    assert await admit_and_finish(pacer, route, 6) == 4

    # Only the idle sessions beyond the two slots left close.
    assert closed.sites == []
    assert closed.trims == [(SITE, 2)]


class Sessions:
    """Deliveries that enter the pacer's slot of the site and stay inside
    until released, recording how many were inside at once."""

    def __init__(self, pacer: Pacer) -> None:
        self.pacer = pacer
        self.inside = 0
        self.peak = 0
        self.order: list[int] = []
        self.done = anyio.Event()

    async def deliver(self, number: int) -> None:
        async with self.pacer.session_slot(SITE):
            self.inside += 1
            self.peak = max(self.peak, self.inside)
            self.order.append(number)
            await self.done.wait()
            self.inside -= 1


async def test_deliveries_beyond_slots_wait() -> None:
    pacer = make_pacer(MemoryPacingStore(), ClosedSites())
    route = dispatch(max_connections=2)
    admission = await pacer.admit([(make_message(), route) for _ in range(5)])
    sessions = Sessions(pacer)

    # Two slots of two messages each at the first estimate.
    assert len(admission.admitted) == 4
    async with anyio.create_task_group() as tasks:
        for number in range(4):
            tasks.start_soon(sessions.deliver, number)
            await anyio.wait_all_tasks_blocked()
        assert sessions.inside == 2
        sessions.done.set()

    assert sessions.peak == 2
    assert sessions.order == [0, 1, 2, 3]


async def test_cancelled_waiter_passes_slot_on() -> None:
    pacer = make_pacer(MemoryPacingStore(), ClosedSites())
    await pacer.admit([(make_message(), dispatch(max_connections=1)) for _ in range(2)])
    sessions = Sessions(pacer)

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(sessions.deliver, 0)
        await anyio.wait_all_tasks_blocked()
        with anyio.CancelScope() as waiting:
            waiting.cancel()
            await sessions.deliver(1)
        tasks.start_soon(sessions.deliver, 2)
        await anyio.wait_all_tasks_blocked()
        sessions.done.set()

    assert sessions.order == [0, 2]
    assert sessions.peak == 1


async def test_fast_deliveries_fill_slots_deeper() -> None:
    ticks = iter(float(tick) / 100 for tick in range(1000))
    pacer = Pacer(
        MemoryPacingStore(),
        worker_id="worker-1",
        clock=ManualClock(T0),
        lease=timedelta(seconds=60),
        close_site=ClosedSites().close,
        trim_site=ClosedSites().trim,
        monotonic=lambda: next(ticks),
    )
    route = dispatch(max_connections=1)

    admitted = []
    for _ in range(3):
        admission = await pacer.admit([(make_message(), route) for _ in range(100)])
        admitted.append(len(admission.admitted))
        assert len(admission.released) == 100 - len(admission.admitted)
        for _ in admission.admitted:
            # Each delivery spends 0.01 s in its slot.
            async with pacer.session_slot(SITE):
                pass
            pacer.finished(SITE)

    # Two for the first estimate, then as many as fill half a second.
    assert admitted == [2, MAX_MESSAGES_PER_SLOT, MAX_MESSAGES_PER_SLOT]


async def test_site_without_slots_lets_all_through() -> None:
    pacer = make_pacer(MemoryPacingStore(), ClosedSites())
    route = dispatch(messages_per_second=100)
    admission = await pacer.admit([(make_message(), route) for _ in range(5)])
    sessions = Sessions(pacer)

    async with anyio.create_task_group() as tasks:
        for number in range(len(admission.admitted)):
            tasks.start_soon(sessions.deliver, number)
        await anyio.wait_all_tasks_blocked()
        assert sessions.inside == 5
        sessions.done.set()


@pytest.mark.parametrize("limits", [{"messages_per_second": 1000}, {}])
async def test_lost_cap_lets_waiters_through(limits: dict[str, float]) -> None:
    clock = ManualClock(T0)
    pacer = Pacer(
        MemoryPacingStore(),
        worker_id="worker-1",
        clock=clock,
        lease=timedelta(seconds=60),
        close_site=ClosedSites().close,
        trim_site=ClosedSites().trim,
        refresh=0.0,
    )
    route = dispatch(**limits)
    # Slowed down, the site is capped at 5 of 10 connections.
    await pacer.report_throttle(SITE, THROTTLE)
    admission = await pacer.admit([(make_message(), route) for _ in range(20)])
    sessions = Sessions(pacer)

    assert len(admission.admitted) == 10
    async with anyio.create_task_group() as tasks:
        for number in range(10):
            tasks.start_soon(sessions.deliver, number)
        await anyio.wait_all_tasks_blocked()
        assert sessions.inside == 5
        # Recovered, the site has no cap and the worker no slot.
        clock.advance(timedelta(seconds=120))
        await pacer.admit([(make_message(), route) for _ in range(2)])
        await anyio.wait_all_tasks_blocked()
        assert sessions.inside == 10
        sessions.done.set()

    assert sorted(sessions.order) == list(range(10))


async def test_lowered_cap_holds_back_waiters() -> None:
    pacer = make_pacer(MemoryPacingStore(), ClosedSites())
    route = dispatch(max_connections=4)
    await pacer.admit([(make_message(), route) for _ in range(8)])
    first = Sessions(pacer)

    async with anyio.create_task_group() as tasks:
        for number in range(8):
            tasks.start_soon(first.deliver, number)
        await anyio.wait_all_tasks_blocked()
        assert first.inside == 4
        await pacer.report_throttle(SITE, THROTTLE)
        admission = await pacer.admit([(make_message(), route) for _ in range(4)])
        assert admission.admitted == []
        first.done.set()
        # The four waiting deliveries now go two at a time.
        await anyio.wait_all_tasks_blocked()

    assert first.order == list(range(8))
    second = Sessions(pacer)
    async with anyio.create_task_group() as tasks:
        for number in range(4):
            tasks.start_soon(second.deliver, number)
        await anyio.wait_all_tasks_blocked()
        assert second.inside == 2
        second.done.set()


async def test_waiting_shared_across_sites() -> None:
    pacer = Pacer(
        MemoryPacingStore(),
        worker_id="worker-1",
        clock=ManualClock(T0),
        lease=timedelta(seconds=60),
        close_site=ClosedSites().close,
        trim_site=ClosedSites().trim,
        max_waiting=2,
    )
    first = dispatch(max_connections=1)
    second = Dispatch(first.rule, "mx1.other.test")

    one = await pacer.admit([(make_message(), first) for _ in range(10)])
    two = await pacer.admit([(make_message(), second) for _ in range(10)])

    # One slot each, and two messages per slot at the first estimate. The
    # first site's two deliveries use up the two that may wait, so the
    # second site gets only its slot's one.
    assert len(one.admitted) == 2
    assert len(two.admitted) == 1
