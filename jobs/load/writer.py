"""The executor-side Redis writer of the load job: pipelined, one command per key, retried on disconnects.

Every key is written by exactly one command, so a reader sees the old value or the new one, never a part:

- lists (``recommendations:user``, ``similar:item``, ``popular:*``): ``SET key value EX ttl``; an empty
  user list is a ``DEL`` (the API then computes the user on demand);
- ``product:{id}``: one ``HSET`` of every field (no TTL: catalogue reference data, rewritten by each load);
- ``history:user:{id}``: one ``EVAL`` of :data:`SEED_HISTORY`, which fills the list and sets its TTL only
  when the key does not exist, so events the API pushed since the last lake ingest are never overwritten.

Commands go out in pipelines of ``pipeline_size`` (``transaction=False``: no MULTI, no cross-key
atomicity, which the contract does not need). A connection error or timeout (a Redis restart, a failover)
retries the whole batch with exponential backoff; every command is idempotent, so a replay is harmless.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from recsys import keys, redis_client
from recsys.config import RedisConfig
from recsys.encoding import encode_list

log = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("user", "similar", "popular", "product", "history")
STATS_COLUMNS: tuple[str, ...] = ("keys", "deleted", "value_bytes", "retries", "server_ids")

# KEYS[1] = history key; ARGV[1] = ttl seconds, ARGV[2..] = elements newest first.
SEED_HISTORY = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('RPUSH', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""


@dataclass(frozen=True)
class Target:
    """Where and how to write (picklable: it travels to the executors)."""

    url: str
    cluster: bool
    socket_timeout_s: float
    pipeline_size: int
    retries: int = 10
    backoff_s: float = 0.1
    max_backoff_s: float = 5.0

    @classmethod
    def from_config(cls, cfg: RedisConfig) -> Target:
        if cfg.pipeline_size <= 0:
            raise ValueError(f"redis.pipeline_size must be positive, got {cfg.pipeline_size}")
        return cls(cfg.url, cfg.cluster, cfg.socket_timeout_s, cfg.pipeline_size)


def open_client(target: Target) -> Any:
    """A redis-py client (``RedisCluster`` when ``target.cluster``); connects lazily."""
    return redis_client.open_client(
        target.url, cluster=target.cluster, socket_timeout_s=target.socket_timeout_s
    )


def server_id(client: Any) -> str:
    """The server's ``run_id`` (joined over the primaries of a cluster): it changes on a restart."""
    info = client.info("server")
    if "run_id" in info:
        return str(info["run_id"])
    return ",".join(sorted(str(v.get("run_id", "")) for v in info.values() if isinstance(v, dict)))


def _key_fn(kind: str) -> Callable[[Any], str]:
    if kind == "user":
        return keys.user_recs_key
    if kind == "similar":
        return keys.similar_key
    if kind == "popular":
        return lambda category: keys.popular_key(None if category is None or pd.isna(category) else category)
    if kind == "product":
        return keys.product_key
    if kind == "history":
        return keys.history_key
    raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")


def commands(pdf: pd.DataFrame, *, kind: str, ttl: int | None) -> Iterator[tuple[Any, ...]]:
    """The Redis command (as ``execute_command`` arguments) of each row of a transform's output.

    Example:
        >>> next(commands(rows, kind="user", ttl=3600))
        ('SET', 'recommendations:user:u1', b'RL...', 'EX', 3600)
    """
    key_of = _key_fn(kind)
    if kind in ("user", "similar", "popular"):
        if ttl is None or ttl <= 0:
            raise ValueError(f"lists need a positive ttl, got {ttl}")
        for pid, ids, scores, sources, created in zip(
            pdf["id"], pdf["product_ids"], pdf["scores"], pdf["sources"], pdf["created_at"], strict=True
        ):
            key = key_of(pid)
            if ids is None or len(ids) == 0:
                yield ("DEL", key)
            else:
                yield ("SET", key, encode_list(ids, scores, sources, created_at=float(created)), "EX", ttl)
    elif kind == "product":
        fields = ("title", "category", "brand", "price", "available")
        for row in zip(pdf["id"], *(pdf[f] for f in fields), strict=True):
            args: list[Any] = ["HSET", key_of(row[0])]
            for name, value in zip(fields, row[1:], strict=True):
                args += [name, value]
            yield tuple(args)
    elif kind == "history":
        if ttl is None or ttl <= 0:
            raise ValueError(f"history needs a positive ttl, got {ttl}")
        for uid, elements in zip(pdf["id"], pdf["elements"], strict=True):
            if elements is not None and len(elements):
                yield ("EVAL", SEED_HISTORY, 1, key_of(uid), ttl, *elements)
    else:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")


class _Flusher:
    """Sends batches of commands with retries; counts what it wrote and the servers it saw."""

    def __init__(self, target: Target, client: Any | None = None) -> None:
        self.target = target
        self.client = client if client is not None else open_client(target)
        self.retries = 0
        self.server_ids: set[str] = set()
        self._note_server()

    def _note_server(self) -> None:
        with contextlib.suppress(RedisConnectionError, RedisTimeoutError):
            self.server_ids.add(server_id(self.client))

    def flush(self, batch: list[tuple[Any, ...]]) -> None:
        if not batch:
            return
        delay = self.target.backoff_s
        for attempt in range(self.target.retries + 1):
            try:
                pipe = self.client.pipeline(transaction=False)
                for cmd in batch:
                    pipe.execute_command(*cmd)
                pipe.execute(raise_on_error=True)
                if attempt:
                    self._note_server()
                return
            except (RedisConnectionError, RedisTimeoutError) as exc:
                if attempt == self.target.retries:
                    raise
                self.retries += 1
                log.warning("redis write failed (%s); retry %d in %.1fs", exc, attempt + 1, delay)
                time.sleep(delay)
                delay = min(delay * 2, self.target.max_backoff_s)


def write_rows(
    frames: Iterable[pd.DataFrame], *, kind: str, ttl: int | None, target: Target, client: Any | None = None
) -> dict[str, Any]:
    """Writes every row of ``frames`` (one transform's output) and returns the counts.

    Args:
        frames: Batches of rows of :mod:`jobs.load.transforms` output for ``kind``.
        kind: One of :data:`KINDS`.
        ttl: The TTL of each key (``None`` for product hashes).
        target: Connection and pipeline settings.
        client: An open client (tests); by default one is opened from ``target``.

    Returns:
        ``keys`` written, ``deleted``, ``value_bytes`` (payload bytes of list values), ``retries`` and the
        comma-joined ``server_ids`` seen (a restart shows as two ids).
    """
    flusher = _Flusher(target, client)
    batch: list[tuple[Any, ...]] = []
    written = deleted = nbytes = 0
    for pdf in frames:
        for cmd in commands(pdf, kind=kind, ttl=ttl):
            if cmd[0] == "DEL":
                deleted += 1
            else:
                written += 1
                if cmd[0] == "SET":
                    nbytes += len(cmd[2])
            batch.append(cmd)
            if len(batch) >= target.pipeline_size:
                flusher.flush(batch)
                batch = []
    flusher.flush(batch)
    return {
        "keys": written,
        "deleted": deleted,
        "value_bytes": nbytes,
        "retries": flusher.retries,
        "server_ids": ",".join(sorted(flusher.server_ids)),
    }


def partition_writer(
    *, kind: str, ttl: int | None, target: Target
) -> Callable[[Iterator[pd.DataFrame]], Iterator[pd.DataFrame]]:
    """A ``mapInPandas`` function writing its partition and yielding one row of counts.

    Example:
        >>> df.mapInPandas(partition_writer(kind="user", ttl=3600, target=t), STATS_SCHEMA)
    """
    _key_fn(kind)

    def run(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        stats = write_rows(batches, kind=kind, ttl=ttl, target=target)
        yield pd.DataFrame([stats], columns=list(STATS_COLUMNS))

    return run
