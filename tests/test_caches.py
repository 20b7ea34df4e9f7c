"""Tests for dbsal_backend.engine.caches: the bounded least-recently-used cache."""

from dbsal_backend.engine.caches import LruCache


def test_the_least_recently_used_entry_goes_first():
    cache = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # "a" is now the most recently used
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    cache.put("a", 4)  # a new value for a kept key counts once
    assert len(cache) == 2 and cache.get("a") == 4
    cache.pop("a")
    cache.pop("absent")
    assert cache.get("a") is None and len(cache) == 1
    cache.clear()
    assert len(cache) == 0


def test_a_weighted_limit_keeps_at_least_the_newest_entry():
    cache = LruCache(10, weigh=len)
    cache.put(1, "aaaa")
    cache.put(2, "bbbb")
    cache.put(3, "cccc")  # 12 > 10: the oldest goes
    assert cache.get(1) is None and cache.get(2) == "bbbb"
    cache.put(4, "d" * 50)  # alone over the limit: it stays, the others go
    assert len(cache) == 1 and cache.get(4) == "d" * 50
    cache.put(5, "ee")
    assert cache.get(4) is None and cache.get(5) == "ee"


def test_a_limit_of_zero_keeps_nothing_and_the_limit_may_change():
    cache = LruCache(0)
    cache.put("a", 1)
    assert cache.get("a") is None and len(cache) == 0
    cache.limit = 1
    cache.put("a", 1)
    assert cache.get("a") == 1
