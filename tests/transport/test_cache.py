"""TtlCache: expiry by TTL and eviction by size."""

from __future__ import annotations

import pytest

from sendarix_backends.smtp.cache import TtlCache
from tests.transport.conftest import FakeClock


def test_cache_returns_stored_value() -> None:
    cache: TtlCache[str, int] = TtlCache(4, FakeClock())
    cache.put("a", 1, ttl=10)

    assert cache.get("a") == 1


def test_cache_entry_expires() -> None:
    clock = FakeClock()
    cache: TtlCache[str, int] = TtlCache(4, clock)
    cache.put("a", 1, ttl=10)

    clock.now += 10

    assert cache.get("a") is None
    assert len(cache) == 0


def test_cache_zero_ttl_stores_nothing() -> None:
    cache: TtlCache[str, int] = TtlCache(4, FakeClock())
    cache.put("a", 1, ttl=0)

    assert cache.get("a") is None


def test_cache_evicts_least_recently_used() -> None:
    cache: TtlCache[str, int] = TtlCache(2, FakeClock())
    cache.put("a", 1, ttl=10)
    cache.put("b", 2, ttl=10)
    cache.get("a")

    cache.put("c", 3, ttl=10)

    assert cache.get("b") is None
    assert cache.get("a") == 1
    assert cache.get("c") == 3


def test_cache_rejects_zero_size() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        TtlCache(0, FakeClock())
