"""Counting failed AUTH attempts per client address."""

from __future__ import annotations

import anyio
import pytest

from sendarix_http.relay.auth_limit import AuthFailureLimiter
from tests.relay.conftest import FakeMonotonic

pytestmark = pytest.mark.anyio


def limiter_at(
    seconds: float, limit: int = 3
) -> tuple[AuthFailureLimiter, FakeMonotonic]:
    clock = FakeMonotonic()
    clock.now = seconds
    return AuthFailureLimiter(limit, clock=clock), clock


async def record_failure(limiter: AuthFailureLimiter, client: str) -> bool:
    """Fail one attempt and return whether it reached the limit."""
    attempt = await limiter.acquire(client)
    return attempt is not None and limiter.fail(attempt)


async def test_limiter_allows_below_limit() -> None:
    limiter, _ = limiter_at(600)
    await record_failure(limiter, "192.0.2.1")
    await record_failure(limiter, "192.0.2.1")
    assert limiter.retry_after("192.0.2.1") is None


async def test_limiter_blocks_at_limit() -> None:
    limiter, _ = limiter_at(600)
    reached = [await record_failure(limiter, "192.0.2.1") for _ in range(4)]
    assert reached == [False, False, True, False]
    assert limiter.retry_after("192.0.2.1") == 60


async def test_limiter_waits_for_pending_attempts() -> None:
    limiter, _ = limiter_at(600)
    attempts = [await limiter.acquire("192.0.2.1") for _ in range(3)]
    assert None not in attempts
    results: list[object] = []

    async def fourth() -> None:
        results.append(await limiter.acquire("192.0.2.1"))

    async with anyio.create_task_group() as group:
        group.start_soon(fourth)
        await anyio.sleep(0.05)
        # The limit is full of pending attempts, so the fourth waits.
        assert results == []
        for attempt in attempts:
            assert attempt is not None
            limiter.fail(attempt)
    assert results == [None]


async def test_valid_logins_never_block() -> None:
    limiter, _ = limiter_at(600)
    logged_in = []

    async def log_in() -> None:
        attempt = await limiter.acquire("192.0.2.1")
        assert attempt is not None
        await anyio.sleep(0.01)
        limiter.release(attempt)
        logged_in.append(attempt)

    async with anyio.create_task_group() as group:
        for _ in range(30):
            group.start_soon(log_in)
    assert len(logged_in) == 30
    assert limiter.retry_after("192.0.2.1") is None


async def test_limiter_counts_per_client() -> None:
    limiter, _ = limiter_at(600)
    for _ in range(3):
        await record_failure(limiter, "192.0.2.1")
    assert limiter.retry_after("192.0.2.2") is None


async def test_limiter_retry_after_counts_down() -> None:
    limiter, clock = limiter_at(600)
    for _ in range(3):
        await record_failure(limiter, "192.0.2.1")
    clock.advance(45.5)
    assert limiter.retry_after("192.0.2.1") == 15


async def test_limiter_unblocks_in_next_window() -> None:
    limiter, clock = limiter_at(600)
    for _ in range(3):
        await record_failure(limiter, "192.0.2.1")
    clock.advance(60)
    assert limiter.retry_after("192.0.2.1") is None


async def test_limiter_drops_past_windows() -> None:
    limiter, clock = limiter_at(600, limit=1)
    for number in range(10_000):
        await record_failure(limiter, f"10.0.{number // 256}.{number % 256}")
    clock.advance(60)
    await record_failure(limiter, "192.0.2.1")
    assert len(limiter._failures) == 1
