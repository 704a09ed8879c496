"""The Redis side of the API: reads of the lists the load job writes, and the durable event write path.

Key names come from :mod:`recsys.keys` and payloads from :mod:`recsys.encoding`, the same modules the load job
uses. Every Redis failure surfaces as :class:`StoreUnavailable`, which the views turn into a degraded answer
(reads) or a 503 with ``Retry-After`` (writes); nothing is dropped silently.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import redis

from recsys import keys, redis_client
from recsys.config import RedisConfig, ServingConfig
from recsys.encoding import EncodingError, RankedList, decode_list, encode_list
from serving.nearcache import NearCache, PageId

log = logging.getLogger(__name__)

PRODUCT_FIELDS = ("title", "category", "brand", "price", "available")
# Event types after which the user's cached list is stale at once (the product must leave the list).
INVALIDATING_EVENTS = frozenset({"purchase", "add_to_cart"})

# After a connection failure, calls fail fast for this long instead of each waiting for the socket timeout.
BREAKER_S = 1.0

# One atomic script per POST batch: the dedup marker, the stream entry, the history push and the cache
# invalidation happen together or not at all, so a retry after a failure is never mistaken for a duplicate.
# KEYS = stream, then per event: event marker, history list, cached recommendations.
# ARGV = stream maxlen, history length, history ttl, event ttl, force, then per event: stream fields (JSON
# array of alternating names and values), history element, "1" to invalidate. force=1 (PUT) replaces a history
# element carrying the same event id instead of skipping a known event.
_APPEND_LUA = """
local maxlen, hlen, httl, ettl, force = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4], ARGV[5] == '1'
local out = {}
local n = (#KEYS - 1) / 3
for i = 1, n do
  local k = 1 + (i - 1) * 3
  local a = 5 + (i - 1) * 3
  local fresh = redis.call('SET', KEYS[k + 1], '1', 'NX', 'EX', ettl)
  if fresh or force then
    if not fresh then redis.call('EXPIRE', KEYS[k + 1], ettl) end
    local fields = cjson.decode(ARGV[a + 1])
    redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(fields))
    local element = ARGV[a + 2]
    local replaced = false
    if force then
      local id = cjson.decode(element)['i']
      local items = redis.call('LRANGE', KEYS[k + 2], 0, -1)
      for j = 1, #items do
        local ok, old = pcall(cjson.decode, items[j])
        if ok and type(old) == 'table' and old['i'] == id then
          redis.call('LSET', KEYS[k + 2], j - 1, element)
          replaced = true
          break
        end
      end
    end
    if not replaced then
      redis.call('LPUSH', KEYS[k + 2], element)
      redis.call('LTRIM', KEYS[k + 2], 0, hlen - 1)
    end
    redis.call('EXPIRE', KEYS[k + 2], httl)
    if ARGV[a + 3] == '1' then redis.call('DEL', KEYS[k + 3]) end
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
"""


# Cluster mode: the history part of _APPEND_LUA on its own key (one hash slot). KEYS[1] = history list;
# ARGV = element, history length, history ttl, force.
_HISTORY_LUA = """
local element, hlen, httl, force = ARGV[1], tonumber(ARGV[2]), ARGV[3], ARGV[4] == '1'
if force then
  local id = cjson.decode(element)['i']
  local items = redis.call('LRANGE', KEYS[1], 0, -1)
  for j = 1, #items do
    local ok, old = pcall(cjson.decode, items[j])
    if ok and type(old) == 'table' and old['i'] == id then
      redis.call('LSET', KEYS[1], j - 1, element)
      redis.call('EXPIRE', KEYS[1], httl)
      return 1
    end
  end
end
redis.call('LPUSH', KEYS[1], element)
redis.call('LTRIM', KEYS[1], 0, hlen - 1)
redis.call('EXPIRE', KEYS[1], httl)
return 1
"""


# The catalogue fields of many products in one command (instead of a pipeline of HMGETs, whose per-command
# packing and parsing in redis-py cost more than Redis itself). KEYS = product hashes; ARGV = field names.
_PRODUCTS_LUA = """
local out = {}
for i = 1, #KEYS do out[i] = redis.call('HMGET', KEYS[i], unpack(ARGV)) end
return out
"""

# A cache hit in one round trip: the cached list and the catalogue fields of the products of one page.
# KEYS[1] = recommendations:user:{id}; ARGV = first position, end position (exclusive), the product key prefix,
# the field names. Returns nil on a miss, else {blob, fields of each product in the window}. The product ids
# are read from the blob as recsys.encoding lays it out ("RL", version 1, count u16 at byte 4, 13 header
# bytes, 2 bytes of score and 1 of source per item, then the ids joined by NUL). Product keys are built here,
# so the script reads keys it was not given: fine on one Redis, not allowed on a cluster, where the API
# reads the list and then the details (two round trips).
_PAGE_LUA = """
local blob = redis.call('GET', KEYS[1])
if not blob then return false end
local out = {blob}
if #blob < 13 or string.sub(blob, 1, 3) ~= 'RL\1' then return out end
local n = struct.unpack('<H', blob, 4)
local start, stop = tonumber(ARGV[1]), math.min(tonumber(ARGV[2]), n)
local pos, i = 14 + 3 * n, 0
while i < stop do
  local e = string.find(blob, '\0', pos, true)
  if i >= start then
    out[#out + 1] = redis.call('HMGET', ARGV[3] .. string.sub(blob, pos, e and e - 1 or -1), unpack(ARGV, 4))
  end
  if not e then break end
  pos, i = e + 1, i + 1
end
return out
"""


class StoreUnavailable(RuntimeError):
    """Redis could not be reached or answered with an error."""


@dataclass(frozen=True)
class HistoryEvent:
    """One element of ``history:user:{id}`` (newest first in the list)."""

    product_id: str
    event_type: str
    quantity: int
    ts: float


def open_client(cfg: RedisConfig) -> redis.Redis:
    """A client from ``cfg.url`` (``rediss://`` for TLS, the password in the URL); connects lazily.

    ``cfg.cluster`` gives redis-py's ``RedisCluster`` (:func:`recsys.redis_client.open_client`, the factory
    the load job uses too).
    """
    return redis_client.open_client(
        cfg.url, cluster=cfg.cluster, socket_timeout_s=cfg.socket_timeout_s, health_check_interval=30
    )


class RedisStore:
    """Typed reads and writes of the Redis key contract.

    Args:
        client: A redis-py client (``open_client``).
        serving: The serving settings (stream key and caps, TTLs of history and event markers).
        ttl_seconds: TTL of ``recommendations:user:{id}`` written on a miss.
        on_error: Called once per failed Redis call (the metrics hook).
        on_timing: Called with the operation name and its seconds after each Redis call (the metrics hook).
        cluster: The client is a ``RedisCluster``: events are written command by command (see
            :meth:`append_events`) because the one-script write spans several hash slots.
        near: The worker's cache of rendered pages (:mod:`serving.nearcache`); a hit it cannot answer is read
            on its tracked connection (:meth:`cached_page`). ``None`` (and always on a cluster): every hit reads
            Redis with the one-round-trip page script.
    """

    def __init__(
        self,
        client: redis.Redis,
        serving: ServingConfig,
        ttl_seconds: int,
        on_error: Callable[[str], None] | None = None,
        on_timing: Callable[[str, float], None] | None = None,
        *,
        cluster: bool = False,
        near: NearCache | None = None,
    ) -> None:
        self.client = client
        self.cluster = cluster
        self.near = None if cluster else near
        self._on_timing = on_timing or (lambda op, s: None)
        self.serving = serving
        self.ttl_seconds = ttl_seconds
        self._on_error = on_error or (lambda op: None)
        self._append = client.register_script(_APPEND_LUA)
        self._history = client.register_script(_HISTORY_LUA)
        self._products_script = client.register_script(_PRODUCTS_LUA)
        self._page_script = client.register_script(_PAGE_LUA)
        # Last good copy of each popular list: the fallback answer while Redis is down.
        self._last_popular: dict[str, RankedList] = {}
        self._lock = threading.Lock()
        self._down_until = 0.0
        self._version: str | None = None
        self._version_until = 0.0
        # product id -> details, and -> expiry on the monotonic clock; dict operations are atomic under the GIL.
        # Two flat dicts rather than one of (expiry, details) tuples: such a tuple holds a dict, so the
        # garbage collector tracks it, and full collections walked one per cached product (the miss path's
        # tail, docs/serving.md); a details dict of strings and numbers is untracked after its first collection.
        self._products: dict[str, dict[str, Any] | None] = {}
        self._product_expiry: dict[str, float] = {}

    @contextmanager
    def _call(self, op: str) -> Iterator[None]:
        if time.monotonic() < self._down_until:
            self._on_error(op)
            raise StoreUnavailable(f"redis unavailable during {op}: failing fast after a connection error")
        started = time.perf_counter()
        try:
            yield
        except redis.RedisError as exc:
            if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
                self._down_until = time.monotonic() + BREAKER_S
            self._on_error(op)
            log.warning("redis %s failed: %s", op, exc)
            raise StoreUnavailable(f"redis unavailable during {op}: {type(exc).__name__}") from exc
        finally:
            self._on_timing(op, time.perf_counter() - started)

    def ping(self) -> bool:
        with self._call("ping"):
            return bool(self.client.ping())

    # --- reads --------------------------------------------------------------------------------------------
    def cached_recs(self, user_id: str) -> tuple[RankedList | None, str | None]:
        """The cached list of ``user_id`` (``None`` on a miss) and ``model:current``'s model_version."""
        with self._call("get_recs"):
            blob = self.client.get(keys.user_recs_key(user_id))
        return _decode(blob, keys.user_recs_key(user_id)), self._loaded_version()

    def cached_page(
        self, user_id: str, start: int, stop: int
    ) -> tuple[RankedList | None, dict[int, dict[str, Any] | None], str | None]:
        """:meth:`cached_recs` plus the details of the products at positions ``start:stop`` of the list.

        One round trip (a script) on a single Redis; on a cluster the list, then the details (which may come
        from the worker's product cache). The details are keyed by position; empty when the list is absent or
        malformed.
        """
        key = keys.user_recs_key(user_id)
        if self.cluster:
            ranked, version = self.cached_recs(user_id)
            if ranked is None:
                return None, {}, version
            window = range(start, min(stop, len(ranked.product_ids)))
            found = self.products([ranked.product_ids[i] for i in window])
            return ranked, dict(zip(window, found, strict=True)), version
        if self.near is not None:
            return self._tracked_page(key, start, stop)
        with self._call("get_recs"):
            reply = self._page_script(keys=[key], args=[start, stop, keys.PREFIX_PRODUCT, *PRODUCT_FIELDS])
        ranked = _decode(reply[0], key) if reply else None
        details: dict[int, dict[str, Any] | None] = {}
        if ranked is not None and len(reply) - 1 == max(0, min(stop, len(ranked.product_ids)) - start):
            details = {start + j: _product(values) for j, values in enumerate(reply[1:])}
        return ranked, details, self._loaded_version()

    def _tracked_page(
        self, key: str, start: int, stop: int
    ) -> tuple[RankedList | None, dict[int, dict[str, Any] | None], str | None]:
        """:meth:`cached_page` on the near cache's tracked connection, so Redis reports later changes of the list
        and of the page's product hashes. Two round trips: Redis (7.0) tracks the keys a script declares, not
        those it reads inside, so the details are read by a script given the product keys once the list is
        known. One connection per worker, hence the lock."""
        assert self.near is not None
        with self._call("get_recs"), self.near.lock:
            tracked = self.near.tracked()
            ranked = _decode(tracked.get(key), key)
            window = range(start, min(stop, len(ranked.product_ids))) if ranked is not None else range(0)
            rows = (
                self._products_script(
                    keys=[keys.product_key(ranked.product_ids[i]) for i in window],  # type: ignore[union-attr]
                    args=list(PRODUCT_FIELDS),
                    client=tracked,
                )
                if window
                else []
            )
        details = {i: _product(values) for i, values in zip(window, rows, strict=True)}
        return ranked, details, self._loaded_version()

    def near_page(self, user_id: str, page: PageId) -> tuple[bytes | None, int]:
        """The page's rendered answer from the worker's near cache (``None`` if absent or stale) and the token to
        pass to :meth:`keep_page` once the page has been read from Redis and rendered. ``user_id`` must have
        been checked already (``serving.params.path_id``).

        Raises :class:`StoreUnavailable` only when ``model:current`` is due to be re-read and Redis fails.
        """
        if self.near is None:
            return None, 0
        return self.near.lookup(keys.PREFIX_USER_RECS + user_id, page, self._loaded_version())

    def keep_page(self, user_id: str, page: PageId, version: str | None, body: bytes, token: int) -> None:
        """Keeps a page rendered from :meth:`cached_page`'s answer in the near cache (if nothing changed since)."""
        if self.near is not None:
            self.near.put(keys.user_recs_key(user_id), page, version, body, token)

    def _loaded_version(self) -> str | None:
        # model:current changes once per load: re-read it at most every serving.model_check_s seconds.
        now = time.monotonic()
        if now >= self._version_until:
            with self._call("model_version"):
                self._version = _text(self.client.hget(keys.MODEL_KEY, "model_version"))
            self._version_until = now + self.serving.model_check_s
        return self._version

    def store_recs(self, user_id: str, ranked: RankedList) -> None:
        """``SET recommendations:user:{id} EX ttl`` in one command."""
        blob = encode_list(
            ranked.product_ids, ranked.scores.tolist(), ranked.sources.tolist(), created_at=ranked.created_at
        )
        with self._call("set_recs"):
            self.client.set(keys.user_recs_key(user_id), blob, ex=self.ttl_seconds)

    def ttl(self, key: str) -> int:
        with self._call("ttl"):
            return int(self.client.ttl(key))

    def ranked(self, key: str) -> RankedList | None:
        """The decoded list at ``key`` (similar or popular), ``None`` when absent."""
        with self._call("get_list"):
            blob = self.client.get(key)
        return _decode(blob, key)

    def ranked_many(self, key_list: Sequence[str]) -> list[RankedList | None]:
        """Pipelined GET of several lists."""
        if not key_list:
            return []
        with self._call("get_lists"):
            pipe = self.client.pipeline(transaction=False)
            for key in key_list:
                pipe.get(key)
            blobs = pipe.execute()
        return [_decode(b, k) for b, k in zip(blobs, key_list, strict=True)]

    def popular(self, category: str | None = None) -> RankedList | None:
        """``popular:global`` or ``popular:category:{slug}``; the last good copy when Redis is down."""
        key = keys.popular_key(category)
        try:
            found = self.ranked(key)
        except StoreUnavailable:
            with self._lock:
                if key in self._last_popular:
                    return self._last_popular[key]
            raise
        self._remember_popular(key, found)
        return found

    def _remember_popular(self, key: str, found: RankedList | None) -> None:
        if found is not None:
            with self._lock:
                if key in self._last_popular or len(self._last_popular) < 1000:
                    self._last_popular[key] = found

    def last_popular(self, category: str | None = None) -> RankedList | None:
        """The in-process copy of a popular list (no Redis call)."""
        with self._lock:
            return self._last_popular.get(keys.popular_key(category))

    def products(self, product_ids: Sequence[str]) -> list[dict[str, Any] | None]:
        """Catalogue fields of each product, ``None`` for a product without a hash.

        Details read within the last ``serving.product_cache_s`` seconds come from this worker's memory; the
        others from Redis in one command (a script of HMGETs; a pipeline of them on a cluster). Catalogue
        changes therefore show within that many seconds.
        """
        if not product_ids:
            return []
        now = time.monotonic()
        found: dict[str, dict[str, Any] | None] = {}
        cache, expiry = self._products, self._product_expiry
        for pid in product_ids:
            if expiry.get(pid, 0.0) > now:
                found[pid] = cache.get(pid)
        missing = [pid for pid in dict.fromkeys(product_ids) if pid not in found]
        if missing:
            with self._call("products"):
                if self.cluster:  # the keys live in many hash slots: one pipelined HMGET each
                    pipe = self.client.pipeline(transaction=False)
                    for pid in missing:
                        pipe.hmget(keys.product_key(pid), PRODUCT_FIELDS)
                    rows = pipe.execute()
                else:
                    rows = self._products_script(
                        keys=[keys.product_key(pid) for pid in missing], args=list(PRODUCT_FIELDS)
                    )
            ttl = self.serving.product_cache_s
            if ttl > 0 and len(cache) + len(missing) > self.serving.product_cache_size:
                expiry.clear()  # rare: a full cache starts over rather than paying LRU bookkeeping per read
                cache.clear()
            for pid, values in zip(missing, rows, strict=True):
                found[pid] = _product(values)
                if ttl > 0:
                    cache[pid] = found[pid]
                    expiry[pid] = now + ttl
        return [found[pid] for pid in product_ids]

    def history(self, user_id: str) -> list[HistoryEvent]:
        """The user's recent events, newest first (malformed elements are skipped and logged)."""
        key = keys.history_key(user_id)
        with self._call("history"):
            raw = self.client.lrange(key, 0, self.serving.history_length - 1)
        return _parse_history(raw, key)

    def history_and_popular(self, user_id: str) -> tuple[list[HistoryEvent], RankedList | None]:
        """:meth:`history` and ``popular:global`` (kept as the fallback copy) in one pipelined round trip."""
        key, popular_key = keys.history_key(user_id), keys.popular_key()
        with self._call("history"):
            pipe = self.client.pipeline(transaction=False)
            pipe.lrange(key, 0, self.serving.history_length - 1)
            pipe.get(popular_key)
            raw, blob = pipe.execute()
        popular = _decode(blob, popular_key)
        self._remember_popular(popular_key, popular)
        return _parse_history(raw, key), popular

    def model_pointer(self) -> str | None:
        """``model:current``'s ``als_bundle`` field (the bundle the cached lists were built from)."""
        with self._call("model_pointer"):
            return _text(self.client.hget(keys.MODEL_KEY, "als_bundle"))

    def stream_backlog(self, group: str) -> int:
        """Entries of the interactions stream that ``group`` has not acknowledged yet.

        The group's ``lag`` (never delivered) plus ``pending`` (delivered, not acknowledged); the whole stream
        length when the group does not exist yet or its lag is unknown (after an XDEL or a trim past it).
        """
        stream = self.serving.stream_key
        with self._call("stream_backlog"):
            groups = self.client.xinfo_groups(stream) if self.client.exists(stream) else []
            for info in groups:
                name = _text(info.get("name"))
                if name == group and info.get("lag") is not None:
                    return int(info["lag"]) + int(info.get("pending") or 0)
            return int(self.client.xlen(stream))

    # --- writes -------------------------------------------------------------------------------------------
    def append_events(self, events: Sequence[dict[str, Any]], *, replace: bool = False) -> list[bool]:
        """Appends validated events atomically (stream, history, invalidation); True where newly appended.

        Args:
            events: Validated events (``recsys.schema.validate_event`` output) with ``event_id`` set.
            replace: PUT semantics: append even when the event id is known, replacing its history element.

        On a cluster (``redis.cluster``) the keys of one event live in different hash slots, so instead of the
        one script each event is written as separate commands in the script's order: ``SET event:{id} NX``,
        ``XADD``, the history update (a one-key script), ``DEL`` of the cached list. That is not atomic: if
        a later command fails, the marker is deleted again (best effort) so the client's retry is not taken
        for a duplicate; a crash of the API between the commands can still leave a marker without its entry.
        """
        if not events:
            return []
        if self.cluster:
            return [self._append_one(ev, replace=replace) for ev in events]
        key_args: list[str] = [self.serving.stream_key]
        argv: list[Any] = [
            self.serving.stream_maxlen,
            self.serving.history_length,
            self.serving.history_ttl_s,
            self.serving.event_ttl_s,
            "1" if replace else "0",
        ]
        for ev in events:
            key_args += [
                keys.event_key(ev["event_id"]),
                keys.history_key(ev["user_id"]),
                keys.user_recs_key(ev["user_id"]),
            ]
            argv += [
                json.dumps(stream_fields(ev)),
                history_element(ev),
                "1" if (replace or ev["event_type"] in INVALIDATING_EVENTS) else "0",
            ]
        with self._call("append_events"):
            result = self._append(keys=key_args, args=argv)
        return [bool(r) for r in result]


    def _append_one(self, ev: dict[str, Any], *, replace: bool) -> bool:
        """The cluster-mode write of one event (the steps of ``_APPEND_LUA`` as separate commands)."""
        marker = keys.event_key(ev["event_id"])
        with self._call("append_events"):
            fresh = bool(self.client.set(marker, "1", nx=True, ex=self.serving.event_ttl_s))
            if not fresh and not replace:
                return False
        try:
            with self._call("append_events"):
                if not fresh:
                    self.client.expire(marker, self.serving.event_ttl_s)
                fields = stream_fields(ev)
                self.client.xadd(
                    self.serving.stream_key,
                    dict(zip(fields[::2], fields[1::2], strict=True)),
                    maxlen=self.serving.stream_maxlen,
                    approximate=True,
                )
        except StoreUnavailable:
            if fresh:
                with contextlib.suppress(redis.RedisError):
                    self.client.delete(marker)
            raise
        with self._call("append_events"):
            self._history(
                keys=[keys.history_key(ev["user_id"])],
                args=[
                    history_element(ev),
                    self.serving.history_length,
                    self.serving.history_ttl_s,
                    "1" if replace else "0",
                ],
            )
            if replace or ev["event_type"] in INVALIDATING_EVENTS:
                self.client.delete(keys.user_recs_key(ev["user_id"]))
        return True


def stream_fields(ev: dict[str, Any]) -> list[str]:
    """The stream entry of an event: alternating names and string values (null fields left out)."""
    out: list[str] = []
    for name, value in ev.items():
        if value is None:
            continue
        out += [name, value.isoformat() if hasattr(value, "isoformat") else str(value)]
    return out


def history_element(ev: dict[str, Any]) -> str:
    """``{"p","e","q","t","i"}`` compact JSON; ``i`` (the event id) lets a PUT replace the element."""
    return json.dumps(
        {
            "p": ev["product_id"],
            "e": ev["event_type"],
            "q": ev["quantity"],
            "t": ev["ts"].timestamp(),
            "i": ev["event_id"],
        },
        separators=(",", ":"),
    )


def _parse_history(raw: Sequence[bytes], key: str) -> list[HistoryEvent]:
    """History elements, newest first; a malformed element is skipped and logged."""
    try:
        # One parse for the whole list (the usual case); element by element when one of them is not JSON.
        parsed: list[Any] = json.loads(b"[" + b",".join(raw) + b"]")
        if len(parsed) != len(raw):  # an element holding "a, b" would otherwise count as two events
            raise ValueError("element count differs")
    except ValueError:
        parsed = []
        for item in raw:
            try:
                parsed.append(json.loads(item))
            except ValueError:
                parsed.append(None)
    out = []
    for d in parsed:
        try:
            out.append(HistoryEvent(str(d["p"]), str(d["e"]), int(d.get("q", 1)), float(d["t"])))
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("skipping a malformed element of %s", key)
    return out


def _decode(blob: bytes | None, key: str) -> RankedList | None:
    if blob is None:
        return None
    try:
        return decode_list(blob)
    except EncodingError as exc:
        # A corrupt value is treated as a miss (and recomputed) rather than failing the request.
        log.warning("ignoring the malformed value of %s: %s", key, exc)
        return None


def _text(value: bytes | str | None) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _product(values: Sequence[bytes | None]) -> dict[str, Any] | None:
    # _text inlined: a cache hit parses 20 products, and a call per field was most of its cost.
    title, category, brand, price_text, available = [
        None if v is None else v.decode() if isinstance(v, bytes) else str(v) for v in values
    ]
    if title is None and category is None and brand is None and price_text is None and available is None:
        return None
    price: float | None
    try:
        price = float(price_text) if price_text not in (None, "") else None
    except ValueError:
        price = None
    return {
        "title": title,
        "category": category,
        "brand": brand or None,
        "price": price,
        "available": available not in ("0", "false", "False"),
    }
