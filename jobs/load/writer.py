"""The executor-side Redis writer of the load job: pipelined, one command per key, retried on disconnects.

Every key is written by exactly one command, so a reader sees the old value or the new one, never a part:

- lists (``recommendations:user``, ``similar:item``, ``popular:*``): ``SET key value EX ttl``; an empty
  user list is a ``DEL`` (the API then computes the user on demand);
- ``product:{id}``: one ``HSET`` of every field (no TTL: catalogue reference data, rewritten by each load);
- ``history:user:{id}``: one ``EVAL`` of :data:`SEED_HISTORY`, which fills the list and sets its TTL only
  when the key does not exist, so events the API pushed since the last lake ingest are never overwritten.

Lists are encoded a whole Arrow batch at a time (:func:`recsys.batch_encoding.encode_lists`). On a single
node their ``SET``/``DEL`` commands go out as pre-built RESP, one ``sendall`` per pipeline of
``pipeline_size`` commands, replies read in bulk (:mod:`jobs.load.resp`), and so do the history seeds'
``EVAL`` commands; in cluster mode, and for product hashes (a small share of the keys), through redis-py
pipelines (``transaction=False``: no MULTI, no cross-key atomicity, which the contract does not need). A
connection error or timeout (a Redis restart, a failover) retries the whole pipeline with exponential
backoff; every command is idempotent, so a replay is harmless.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from jobs.load import resp
from jobs.load.transforms import COL_ELEMENTS, COL_IDS_JOINED
from recsys import keys, redis_client
from recsys import schema as S
from recsys.batch_encoding import encode_lists, list_counts
from recsys.config import RedisConfig

log = logging.getLogger(__name__)

KINDS: tuple[str, ...] = ("user", "similar", "popular", "product", "history")
LIST_KINDS: tuple[str, ...] = ("user", "similar", "popular")
# Key prefixes of the kinds whose key is prefix + a checked id (built for a whole batch at once).
_ID_PREFIXES: dict[str, str] = {
    "user": keys.PREFIX_USER_RECS,
    "similar": keys.PREFIX_SIMILAR,
    "history": keys.PREFIX_HISTORY,
}
STATS_COLUMNS: tuple[str, ...] = ("keys", "deleted", "value_bytes", "retries", "server_ids")
STATS_ARROW_SCHEMA = pa.schema([(c, pa.int64()) for c in STATS_COLUMNS[:-1]] + [("server_ids", pa.string())])
Frame = pd.DataFrame | pa.RecordBatch

# KEYS[1] = history key; ARGV[1] = ttl seconds, ARGV[2..] = elements newest first.
SEED_HISTORY = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('RPUSH', KEYS[1], unpack(ARGV, 2))
redis.call('EXPIRE', KEYS[1], tonumber(ARGV[1]))
return 1
"""
_SEED_HISTORY_BYTES = SEED_HISTORY.encode()


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
    """The Redis command (as ``execute_command`` arguments) of each row of a product or history frame.

    Example:
        >>> next(commands(rows, kind="product", ttl=None))
        ('HSET', 'product:p1', 'title', 'Mug', 'category', 'kitchen', ...)
    """
    key_of = _key_fn(kind)
    if kind == "product":
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
        raise ValueError(f"commands() writes product and history rows; {kind!r} goes through write_lists")


def list_keys(ids: pa.Array, *, kind: str) -> pa.Array:
    """The key of each row of a batch, as binary; a bad id raises ``ValidationError`` naming it.

    ``user``, ``similar`` and ``history`` keys are built for the whole batch when every id passes the id rule
    checked by Arrow; otherwise (and for ``popular``, a handful of rows) each key comes from :mod:`recsys.keys`.
    """
    prefix = _ID_PREFIXES.get(kind)
    if prefix is not None and not ids.null_count and len(ids):
        text = ids.cast(pa.string())
        if (
            pc.all(pc.match_substring_regex(text, S.ID_PATTERN)).as_py()
            and pc.max(pc.utf8_length(text)).as_py() <= S.ID_MAX_LEN
        ):
            return pc.binary_join_element_wise(prefix, text, "").cast(pa.binary())
    key_of = _key_fn(kind)
    return pa.array([key_of(i).encode() for i in ids.to_pylist()], pa.binary())


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
        """Sends ``batch`` in one redis-py pipeline (cluster mode, product hashes)."""
        if not batch:
            return

        def send() -> None:
            pipe = self.client.pipeline(transaction=False)
            for cmd in batch:
                pipe.execute_command(*cmd)
            pipe.execute(raise_on_error=True)

        self.attempt(send)

    def attempt(self, send: Callable[[], None]) -> None:
        """Runs ``send`` (one idempotent pipeline), retrying it with backoff on connection errors."""
        delay = self.target.backoff_s
        for attempt in range(self.target.retries + 1):
            try:
                send()
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


def _as_batch(frame: Frame) -> pa.RecordBatch:
    return frame if isinstance(frame, pa.RecordBatch) else pa.RecordBatch.from_pandas(frame, preserve_index=False)


def _as_pandas(frame: Frame) -> pd.DataFrame:
    return frame.to_pandas() if isinstance(frame, pa.RecordBatch) else frame


def _write_lists(
    batch: pa.RecordBatch, *, kind: str, ttl: int, flusher: _Flusher, sender: resp.RespSender | None
) -> tuple[int, int, int]:
    """Encodes and writes one batch of list rows; returns keys set, keys deleted and value bytes."""
    names = batch.schema.names
    ids = batch.column(COL_IDS_JOINED if COL_IDS_JOINED in names else "product_ids")
    values = encode_lists(ids, batch.column("scores"), batch.column("sources"), batch.column("created_at"))
    keys_ = list_keys(batch.column("id"), kind=kind)
    nonempty = list_counts(batch.column("scores")) > 0
    if nonempty.all():
        set_keys, set_values, del_keys = keys_, values, keys_.slice(0, 0)
    else:
        mask = pa.array(nonempty)
        set_keys, set_values, del_keys = keys_.filter(mask), values.filter(mask), keys_.filter(pc.invert(mask))
    size = flusher.target.pipeline_size
    if sender is not None:
        for chunk, n in resp.chunks(resp.set_commands(set_keys, set_values, ttl=ttl), size):
            flusher.attempt(functools.partial(sender.send, chunk, n=n, reply=resp.OK))
        for chunk, n in resp.chunks(resp.del_commands(del_keys), size):
            flusher.attempt(functools.partial(sender.send, chunk, n=n, reply=resp.COUNT))
    else:
        cmds: list[tuple[Any, ...]] = [
            ("SET", k, v, "EX", ttl) for k, v in zip(set_keys.to_pylist(), set_values.to_pylist(), strict=True)
        ]
        cmds += [("DEL", k) for k in del_keys.to_pylist()]
        for s in range(0, len(cmds), size):
            flusher.flush(cmds[s : s + size])
    nbytes = int(pc.sum(pc.binary_length(set_values)).as_py() or 0)
    return len(set_keys), len(del_keys), nbytes


def _write_history(
    batch: pa.RecordBatch, *, ttl: int, flusher: _Flusher, sender: resp.RespSender
) -> int:
    """Seeds one batch of ``id, elements`` rows as pre-built ``EVAL`` RESP; returns the keys sent.

    A row without elements sends nothing (``RPUSH`` needs one), as in :func:`commands`.
    """
    elements = batch.column(COL_ELEMENTS)
    if elements.null_count:
        elements = pc.fill_null(elements, pa.scalar([], elements.type))
    nonempty = pc.greater(pc.list_value_length(elements), 0)
    ids = batch.column("id")
    if not pc.all(nonempty).as_py():
        ids, elements = ids.filter(nonempty), elements.filter(nonempty)
    cmds = resp.eval_commands(_SEED_HISTORY_BYTES, list_keys(ids, kind="history"), elements, ttl=ttl)
    for chunk, n in resp.chunks(cmds, flusher.target.pipeline_size):
        flusher.attempt(functools.partial(sender.send, chunk, n=n, reply=resp.COUNT))
    return len(ids)


def write_rows(
    frames: Iterable[Frame], *, kind: str, ttl: int | None, target: Target, client: Any | None = None
) -> dict[str, Any]:
    """Writes every row of ``frames`` (one transform's output) and returns the counts.

    Args:
        frames: Batches of rows of :mod:`jobs.load.transforms` output for ``kind``, as Arrow record batches
            (what Spark's ``mapInArrow`` gives) or pandas frames. List rows may carry ``product_ids`` as a
            list or ``product_ids_joined`` (:func:`jobs.load.transforms.wire_lists`).
        kind: One of :data:`KINDS`.
        ttl: The TTL of each key (``None`` for product hashes).
        target: Connection and pipeline settings.
        client: An open client (tests); by default one is opened from ``target``.

    Returns:
        ``keys`` written, ``deleted``, ``value_bytes`` (payload bytes of list values), ``retries`` and the
        comma-joined ``server_ids`` seen (a restart shows as two ids).
    """
    _key_fn(kind)
    flusher = _Flusher(target, client)
    written = deleted = nbytes = 0
    if kind in LIST_KINDS:
        if ttl is None or ttl <= 0:
            raise ValueError(f"lists need a positive ttl, got {ttl}")
        sender = None if target.cluster else resp.RespSender(flusher.client)
        try:
            for frame in frames:
                w, d, b = _write_lists(_as_batch(frame), kind=kind, ttl=ttl, flusher=flusher, sender=sender)
                written, deleted, nbytes = written + w, deleted + d, nbytes + b
        finally:
            if sender is not None:
                sender.close()
    elif kind == "history" and not target.cluster:
        if ttl is None or ttl <= 0:
            raise ValueError(f"history needs a positive ttl, got {ttl}")
        history_sender = resp.RespSender(flusher.client)
        try:
            for frame in frames:
                written += _write_history(_as_batch(frame), ttl=ttl, flusher=flusher, sender=history_sender)
        finally:
            history_sender.close()
    else:
        batch: list[tuple[Any, ...]] = []
        for frame in frames:
            for cmd in commands(_as_pandas(frame), kind=kind, ttl=ttl):
                written += 1
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
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """A ``mapInArrow`` function writing its partition and yielding one row of counts.

    Example:
        >>> df.mapInArrow(partition_writer(kind="user", ttl=3600, target=t), STATS_SCHEMA)
    """
    _key_fn(kind)

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        stats = write_rows(batches, kind=kind, ttl=ttl, target=target)
        yield pa.RecordBatch.from_pylist([stats], schema=STATS_ARROW_SCHEMA)

    return run
