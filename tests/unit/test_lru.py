"""The bounded LRU cache behind the authorization and JWT caches."""

from __future__ import annotations

import pytest

from sidecar.lru import LruCache


def test_a_full_cache_drops_the_entry_used_longest_ago() -> None:
    cache: LruCache[str, int] = LruCache(3)
    for key, value in (("a", 1), ("b", 2), ("c", 3)):
        cache.put(key, value)
    assert cache.get("a", None) == 1  # a is now the most recently used
    cache.put("d", 4)
    assert len(cache) == 3
    assert "b" not in cache
    assert [cache.get(k, None) for k in "acd"] == [1, 3, 4]


def test_a_hot_entry_survives_any_amount_of_churn() -> None:
    cache: LruCache[int, str] = LruCache(8)
    cache.put(-1, "hot")
    for i in range(10_000):
        cache.put(i, "cold")
        assert cache.get(-1, None) == "hot"
        assert len(cache) <= 8


def test_none_is_a_value_a_default_tells_apart() -> None:
    cache: LruCache[str, None] = LruCache(2)
    missing = object()
    cache.put("k", None)
    assert cache.get("k", missing) is None
    assert cache.get("other", missing) is missing
    cache.discard("k")
    assert cache.get("k", missing) is missing


def test_a_cache_holds_at_least_one_entry() -> None:
    with pytest.raises(ValueError, match="at least one"):
        LruCache(0)
