"""The score cache and the response cache: keys, hits and misses, TTL, size bound, off switch.

TTL is driven by a fake timer handed to the caches, so nothing here sleeps."""

from __future__ import annotations

from multidict import CIMultiDict

from sidecar.rerank.cache import CachedResponse, ResponseCache, ScoreCache, ScoreKey


class FakeTimer:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _keys(*doc_ids: str, text: str = "some text") -> list[ScoreKey]:
    return [ScoreCache.key("model", "instr", "query", "idx", d, text) for d in doc_ids]


# --- ScoreCache ---------------------------------------------------------------------------


def test_score_cache_get_many_put_many_and_stats() -> None:
    cache = ScoreCache(max_entries=100, ttl_s=60)
    keys = _keys("a", "b", "c")
    assert cache.get_many(keys) == [None, None, None]
    cache.put_many(keys[:2], [0.5, 0.0])
    # A score of 0.0 is a hit like any other.
    assert cache.get_many(keys) == [0.5, 0.0, None]
    assert (cache.stats.hits, cache.stats.misses) == (2, 4)
    assert len(cache) == 2 and cache.maxsize == 100
    cache.clear()
    assert len(cache) == 0 and cache.get_many(keys[:1]) == [None]


def test_score_key_covers_every_part_and_the_text() -> None:
    base = ("model", "instr", "query", "idx", "doc1", "text")
    key = ScoreCache.key(*base)
    for i in range(len(base)):
        changed = list(base)
        changed[i] = changed[i] + "x"
        assert ScoreCache.key(*changed) != key, f"part {i} is not in the key"
    # The text enters as a hash: a re-indexed document under the same id is a miss.
    assert b"text" not in key and len(key) == 16
    # So does the caller, with scope: identity.
    assert ScoreCache.key(*base, "caller-digest") != key
    cache = ScoreCache(max_entries=10, ttl_s=60)
    cache.put_many(_keys("d", text="old body"), [1.0])
    assert cache.get_many(_keys("d", text="new body")) == [None]
    assert cache.get_many(_keys("d", text="old body")) == [1.0]


def test_score_cache_entries_expire_after_ttl() -> None:
    timer = FakeTimer()
    cache = ScoreCache(max_entries=10, ttl_s=30, timer=timer)
    first, second = _keys("a", "b")
    cache.put_many([first], [1.0])
    timer.now = 20.0
    cache.put_many([second], [2.0])
    timer.now = 29.9
    assert cache.get_many([first, second]) == [1.0, 2.0]
    timer.now = 30.0
    assert cache.get_many([first, second]) == [None, 2.0]
    timer.now = 50.0
    assert cache.get_many([first, second]) == [None, None]
    assert len(cache) == 0


def test_score_cache_is_bounded_and_evicts_least_recently_used() -> None:
    cache = ScoreCache(max_entries=2, ttl_s=60)
    a, b, c = _keys("a", "b", "c")
    cache.put_many([a, b], [1.0, 2.0])
    assert cache.get_many([a]) == [1.0]  # a is now more recent than b
    cache.put_many([c], [3.0])
    assert len(cache) == 2
    assert cache.get_many([a, b, c]) == [1.0, None, 3.0]


def test_disabled_score_cache_stores_nothing_and_counts_nothing() -> None:
    cache = ScoreCache(max_entries=10, ttl_s=60, enabled=False)
    keys = _keys("a")
    cache.put_many(keys, [1.0])
    assert cache.get_many(keys) == [None]
    assert len(cache) == 0
    assert (cache.stats.hits, cache.stats.misses) == (0, 0)


# --- ResponseCache ------------------------------------------------------------------------

AUTH = "Basic dXNlcjpwYXNz"


_CACHE = ResponseCache(max_entries=10, ttl_s=60, enabled=True)


def _rkey(
    authorization: str = AUTH,
    method: str = "POST",
    path_qs: str = "/idx/_search?size=10",
    body: bytes = b'{"query":{"match":{"t":"x"}}}',
    mode: str = "on",
) -> str:
    headers = CIMultiDict({"Authorization": authorization} if authorization else {})
    return _CACHE.key(headers, method, path_qs, body, mode)


def test_response_key_differs_per_caller_and_request() -> None:
    key = _rkey()
    assert _rkey() == key
    variants = {
        "authorization": _rkey(authorization="Basic b3RoZXI6cGFzcw=="),
        "no authorization": _rkey(authorization=""),
        "method": _rkey(method="GET"),
        "path": _rkey(path_qs="/other/_search?size=10"),
        "query string": _rkey(path_qs="/idx/_search?size=20"),
        "body": _rkey(body=b'{"query":{"match":{"t":"y"}}}'),
        "mode": _rkey(mode="shadow"),
    }
    for what, other in variants.items():
        assert other != key, f"{what} is not in the key"
    assert len(set(variants.values())) == len(variants)
    # Parts are length-prefixed: moving a character across a boundary changes the key.
    assert _CACHE.key(CIMultiDict(), "GETa", "/p", b"", "on") != _CACHE.key(
        CIMultiDict(), "GET", "a/p", b"", "on"
    )
    assert AUTH not in key  # only a digest is kept


def test_response_cache_get_put_and_stats() -> None:
    cache = ResponseCache(max_entries=10, ttl_s=60, enabled=True)
    value = CachedResponse(200, (("content-type", "application/json"),), b'{"hits":{}}')
    key = _rkey()
    assert cache.get(key) is None
    cache.put(key, value)
    assert cache.get(key) == value
    assert cache.get(_rkey(authorization="")) is None
    assert (cache.stats.hits, cache.stats.misses) == (1, 2)
    assert len(cache) == 1
    cache.clear()
    assert len(cache) == 0 and cache.get(key) is None


def test_response_cache_entries_expire_after_ttl() -> None:
    timer = FakeTimer()
    cache = ResponseCache(max_entries=10, ttl_s=5, enabled=True, timer=timer)
    value = CachedResponse(200, (), b"{}")
    cache.put(_rkey(), value)
    timer.now = 4.9
    assert cache.get(_rkey()) == value
    timer.now = 5.0
    assert cache.get(_rkey()) is None
    assert len(cache) == 0


def test_response_cache_is_bounded() -> None:
    cache = ResponseCache(max_entries=2, ttl_s=60, enabled=True)
    for i in range(5):
        cache.put(_rkey(body=f"{i}".encode()), CachedResponse(200, (), b"{}"))
    assert len(cache) == 2
    assert cache.get(_rkey(body=b"0")) is None
    assert cache.get(_rkey(body=b"4")) is not None


def test_disabled_response_cache_stores_nothing_and_counts_nothing() -> None:
    cache = ResponseCache(max_entries=10, ttl_s=60, enabled=False)
    cache.put(_rkey(), CachedResponse(200, (), b"{}"))
    assert cache.get(_rkey()) is None
    assert len(cache) == 0
    assert (cache.stats.hits, cache.stats.misses) == (0, 0)
