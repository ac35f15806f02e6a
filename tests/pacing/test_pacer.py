"""The pacer's slots and sessions across claimed batches, with the pacing
store of one process."""

from __future__ import annotations

from datetime import timedelta

import pytest

from sendarix_backends.pacing import Pacer
from sendarix_backends.pacing.store import MemoryPacingStore
from sendarix_backends.routing.router import Dispatch
from sendarix_core.clock import ManualClock
from sendarix_core.model import SmtpReply
from sendarix_core.pacing import PacingLimits
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
    return how many were admitted."""
    candidates = [(make_message(), route) for _ in range(count)]
    admission = await pacer.admit(candidates)
    for _ in admission.admitted:
        pacer.finished(SITE, 0.01)
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
    assert await admit_and_finish(pacer, route, 8) == 5
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
    assert await admit_and_finish(pacer, route, 4) == 2

    # Only the idle sessions beyond the two slots left close.
    assert closed.sites == []
    assert closed.trims == [(SITE, 2)]
