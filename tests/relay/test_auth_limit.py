"""Counting failed AUTH attempts per client address."""

from __future__ import annotations

from sendarix_http.relay.auth_limit import AuthFailureLimiter
from tests.relay.conftest import FakeMonotonic


def limiter_at(
    seconds: float, limit: int = 3
) -> tuple[AuthFailureLimiter, FakeMonotonic]:
    clock = FakeMonotonic()
    clock.now = seconds
    return AuthFailureLimiter(limit, clock=clock), clock


def record_failure(limiter: AuthFailureLimiter, client: str) -> bool:
    """Fail one attempt and return whether it reached the limit."""
    attempt = limiter.reserve(client)
    return attempt is not None and limiter.reached_limit(attempt)


def test_limiter_allows_below_limit() -> None:
    limiter, _ = limiter_at(600)
    record_failure(limiter, "192.0.2.1")
    record_failure(limiter, "192.0.2.1")
    assert limiter.retry_after("192.0.2.1") is None


def test_limiter_blocks_at_limit() -> None:
    limiter, _ = limiter_at(600)
    reached = [record_failure(limiter, "192.0.2.1") for _ in range(4)]
    assert reached == [False, False, True, False]
    assert limiter.retry_after("192.0.2.1") == 60


def test_limiter_counts_reserved_attempts() -> None:
    limiter, _ = limiter_at(600)
    attempts = [limiter.reserve("192.0.2.1") for _ in range(4)]
    assert None not in attempts[:3]
    assert attempts[3] is None


def test_limiter_release_frees_attempt() -> None:
    limiter, _ = limiter_at(600)
    for _ in range(3):
        attempt = limiter.reserve("192.0.2.1")
        assert attempt is not None
        limiter.release(attempt)
    assert limiter.retry_after("192.0.2.1") is None


def test_limiter_counts_per_client() -> None:
    limiter, _ = limiter_at(600)
    for _ in range(3):
        record_failure(limiter, "192.0.2.1")
    assert limiter.retry_after("192.0.2.2") is None


def test_limiter_retry_after_counts_down() -> None:
    limiter, clock = limiter_at(600)
    for _ in range(3):
        record_failure(limiter, "192.0.2.1")
    clock.advance(45.5)
    assert limiter.retry_after("192.0.2.1") == 15


def test_limiter_unblocks_in_next_window() -> None:
    limiter, clock = limiter_at(600)
    for _ in range(3):
        record_failure(limiter, "192.0.2.1")
    clock.advance(60)
    assert limiter.retry_after("192.0.2.1") is None


def test_limiter_drops_past_windows() -> None:
    limiter, clock = limiter_at(600, limit=1)
    for number in range(10_000):
        record_failure(limiter, f"10.0.{number // 256}.{number % 256}")
    clock.advance(60)
    record_failure(limiter, "192.0.2.1")
    assert len(limiter._failures) == 1
