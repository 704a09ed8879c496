"""The worker's near cache: rendered cache-hit pages kept in memory, invalidated by Redis itself.

A cache hit read from Redis costs the worker a round trip, the decode of the list and the rendering of its
page (docs/serving.md, Benchmark). The near cache keeps the rendered JSON of recently answered pages, keyed by
the list's Redis key, and answers a repeated request without Redis. It stays correct because the reads that
fill it are made with Redis' client-side caching (``CLIENT TRACKING``, default mode): Redis remembers every
key the worker's tracked connection read, the list and the product hashes of its page alike, and when one of
them changes (a purchase's invalidation, an on-demand store, a load, an expiry, an eviction, a flush) it
sends the key's name to the worker's listener connection. The listener is read before every lookup, so an
answer never predates a change that Redis had sent before the request arrived:

- ``recommendations:user:{id}`` changed: that user's pages are dropped;
- a ``product:{id}`` hash changed, or Redis flushed everything: every page is dropped (product hashes are
  only written by the load, which rewrites the lists too);
- the listener or the tracked connection broke, or reconnected (a Redis restart, a network error): every
  page is dropped, because Redis forgot what it was tracking for them;
- ``model:current``'s ``model_version`` differs from the one a page was rendered with: the page is a miss.

``serving.page_cache_s`` bounds a page's age whatever happens (a silent network partition that delivers no
invalidation and no error), and ``serving.page_cache_size`` the number of pages (the oldest leaves first).
Both connections use RESP2 (redis-py 8 speaks RESP3 by default, where a subscribed connection's messages are
push replies that its parser hands to a handler instead of returning them): the tracked connection redirects
its invalidations (``REDIRECT``) to the listener, subscribed to ``__redis__:invalidate``. Redis (7.0) tracks the
keys a script declares, not those it reads inside, so the pages are read with declared keys
(:meth:`serving.store.RedisStore.cached_page`). Not used with Redis Cluster, where a page's keys live on several
nodes.

Example:
    >>> near = NearCache(lambda: redis.Redis.from_url(url, protocol=2), max_pages=20_000, max_age_s=60.0)
    >>> body, token = near.lookup("recommendations:user:u1", (1, 20), version="v3")
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable
from typing import Any

import hiredis
import redis

from recsys import keys

log = logging.getLogger(__name__)

INVALIDATE_CHANNEL = b"__redis__:invalidate"
USER_KEY_PREFIX = keys.PREFIX_USER_RECS.encode()

_READ_CHUNK = 1 << 16
PageId = tuple[int, int]  # (page, page_size): serving.params.Page is one


class NearCache:
    """Rendered pages by Redis key and page, valid until Redis says one of the keys read for them changed.

    Args:
        open_client: Returns a new, lazily connecting single-node client speaking RESP2 with the app's
            settings (URL, password, TLS, timeouts); the near cache's two connections come from it and
            connect on first use.
        max_pages: Most pages kept (the oldest leaves first).
        max_age_s: Longest a page is served after it was rendered.
        on_event: Called with ``"hit"``, ``"miss"``, ``"stale"`` (version or age) or ``"reset"`` (for metrics).

    Thread-safe: one lock around the lookups, the tracked reads and the listener (gthread workers).
    """

    def __init__(
        self,
        open_client: Callable[[], redis.Redis],
        *,
        max_pages: int,
        max_age_s: float,
        on_event: Callable[[str], None] | None = None,
    ) -> None:
        if max_pages <= 0 or max_age_s <= 0:
            raise ValueError(f"max_pages and max_age_s must be positive, got {max_pages} and {max_age_s}")
        self._open_client = open_client
        self.max_pages = max_pages
        self.max_age_s = max_age_s
        self._on_event = on_event or (lambda event: None)
        self._pages: dict[bytes, dict[PageId, tuple[float, str | None, bytes]]] = {}
        self._order: dict[tuple[bytes, PageId], None] = {}  # insertion order, for eviction
        self._listener: Any = None
        self._tracked: redis.Redis | None = None
        self._tracked_conn: Any = None  # the tracked client's one connection
        self._generation = 0
        self.lock = threading.RLock()

    # --- the pages ----------------------------------------------------------------------------------------
    def lookup(self, key: str, page: PageId, version: str | None) -> tuple[bytes | None, int]:
        """The rendered page of ``key`` (``None`` if absent, stale or invalidated) and a token for :meth:`put`.

        The token changes whenever an invalidation or a reset is processed, so a page read from Redis after
        this call is kept only if nothing changed in between.
        """
        with self.lock:
            self._drain()
            raw = key.encode()
            entry = self._pages.get(raw, {}).get(page)
            if entry is None:
                self._on_event("miss")
                return None, self._generation
            rendered_at, rendered_version, body = entry
            if rendered_version != version or time.monotonic() - rendered_at > self.max_age_s:
                self._drop_page(raw, page)
                self._on_event("stale")
                return None, self._generation
            self._on_event("hit")
            return body, self._generation

    def put(self, key: str, page: PageId, version: str | None, body: bytes, generation: int) -> bool:
        """Keeps ``body`` unless an invalidation arrived since ``generation`` was taken (before the read)."""
        with self.lock:
            self._drain()
            if generation != self._generation or self._tracked is None:
                return False
            raw = key.encode()
            pages = self._pages.setdefault(raw, {})
            if page not in pages:
                while len(self._order) >= self.max_pages:
                    old_key, old_page = next(iter(self._order))
                    self._drop_page(old_key, old_page)
            pages[page] = (time.monotonic(), version, body)
            self._order[(raw, page)] = None
            return True

    def __len__(self) -> int:
        return len(self._order)

    def clear(self) -> None:
        with self.lock:
            self._reset("cleared")

    def _drop_page(self, raw: bytes, page: PageId) -> None:
        pages = self._pages.get(raw)
        if pages is not None and pages.pop(page, None) is not None:
            self._order.pop((raw, page), None)
            if not pages:
                del self._pages[raw]

    def _drop_key(self, raw: bytes) -> None:
        for page in self._pages.pop(raw, {}):
            self._order.pop((raw, page), None)

    def _reset(self, why: str) -> None:
        if self._order:
            log.info("near cache: dropping %d pages (%s)", len(self._order), why)
        self._pages.clear()
        self._order.clear()
        self._generation += 1
        self._on_event("reset")

    # --- the connections ----------------------------------------------------------------------------------
    def tracked(self) -> redis.Redis:
        """A client on one connection whose reads Redis tracks for this cache (connects the listener first).

        Only its own commands (and scripts run with ``client=``) are tracked: a ``pipeline()`` of it takes another
        connection of its pool, which is not. Raises redis-py's errors when Redis cannot be reached; the caller
        treats them like any Redis failure.
        """
        with self.lock:
            if self._listener is None:
                self._connect_listener()
            if self._tracked is None:
                client = redis.Redis(connection_pool=self._open_client().connection_pool, single_connection_client=True)
                # A new client holds no pages yet (they were dropped with the previous one): enable tracking
                # now, and on each later reconnect drop the pages read before it.
                conn = client.connection  # type: ignore[attr-defined]  # set by single_connection_client
                self._enable_tracking(conn)
                conn.register_connect_callback(self._on_tracked_connect)
                self._tracked, self._tracked_conn = client, conn
            return self._tracked

    def _connect_listener(self) -> None:
        conn = self._open_client().connection_pool.make_connection()
        try:
            conn.connect()
            conn.send_command("CLIENT", "ID")
            listener_id = int(conn.read_response())
            conn.send_command("SUBSCRIBE", INVALIDATE_CHANNEL)
            conn.read_response()
        except BaseException:
            conn.disconnect()
            raise
        # From here on its socket is read here, with a reader of our own: nothing can be buffered in
        # redis-py's parser yet, since no connection redirects its invalidations here before this returns.
        self._listener, self._listener_id, self._reader = conn, listener_id, hiredis.Reader()
        if self._tracked_conn is not None:  # tracking pointed at the old listener: reconnect it
            self._tracked_conn.disconnect()

    def _on_tracked_connect(self, connection: Any) -> None:
        # Runs on every reconnect of the tracked connection: what Redis tracked for the old one is gone.
        self._enable_tracking(connection)
        self._reset("tracked connection reconnected")

    def _enable_tracking(self, connection: Any) -> None:
        connection.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", self._listener_id)
        reply = connection.read_response()
        if reply not in (b"OK", "OK"):
            raise redis.ResponseError(f"CLIENT TRACKING answered {reply!r}")

    def _drain(self) -> None:
        """Applies the invalidations waiting on the listener; resets everything if either connection broke.

        One ``select`` without a timeout over both sockets (a few microseconds when nothing is waiting, the
        cost every lookup pays). Redis tells a RESP2 client nothing when the other side of a redirect goes
        away, so the tracked connection, which never has anything to read between commands, is watched for
        its end as well.
        """
        listener = self._listener
        if listener is None:
            return
        lsock = listener._sock
        tconn = self._tracked_conn
        tsock = tconn._sock if tconn is not None else None
        try:
            ready = select.select((lsock,) if tsock is None else (lsock, tsock), (), (), 0)[0]
        except (OSError, ValueError, TypeError):  # a socket closed under us
            ready = [lsock]
        if not ready:
            return
        if tsock is not None and tsock in ready:  # its end (or a stray reply): what it tracked is forgotten
            tconn.disconnect()
            self._reset("tracked connection lost")
        if lsock in ready:
            try:
                # Everything waiting, not one read's worth: an unread invalidation could be the page's own.
                while True:
                    data = lsock.recv(_READ_CHUNK)
                    if not data:
                        raise redis.ConnectionError("the server closed the connection")
                    self._reader.feed(data)
                    while (message := self._reader.gets()) is not False:
                        self._apply(message)
                    if not select.select((lsock,), (), (), 0)[0]:
                        break
            except (redis.RedisError, OSError, hiredis.ProtocolError) as exc:
                log.warning("near cache: the invalidation listener failed (%s); dropping every page", exc)
                listener.disconnect()
                self._listener = None
                if self._tracked_conn is not None:
                    self._tracked_conn.disconnect()
                    self._tracked, self._tracked_conn = None, None
                self._reset("listener failed")

    def _apply(self, message: Any) -> None:
        # RESP2 pub/sub: [b"message", b"__redis__:invalidate", [key, ...] or None (a flush)].
        if not isinstance(message, list) or len(message) != 3 or message[0] != b"message":
            return
        invalidated = message[2]
        self._generation += 1
        if invalidated is None:
            self._reset("redis flushed its keys")
            return
        for raw in invalidated if isinstance(invalidated, list) else [invalidated]:
            if raw.startswith(USER_KEY_PREFIX):
                self._drop_key(raw)
            else:  # a product hash a page showed
                self._reset(f"{raw.decode(errors='replace')} changed")
                return
