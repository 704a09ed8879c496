"""``./spark-submit.sh load``: bulk-load the blended lists, similar items, popular lists, products, history.

Rows are written from the executors (``mapInArrow`` over the lake tables, pipelined ``SET ... EX``), only
per-partition counts come back to the driver. User lists are read by pyarrow in the tasks instead
(:mod:`jobs.load.direct`) when ``redis.load_direct_read`` is on and the table's files are plain Parquet.
``model:current`` is written last, once every other key is.
If the Redis server restarted during the load (its ``run_id`` changed, so keys written before the restart
may be gone when it has no persistence), the load is replayed, at most :data:`MAX_ROUNDS` times.
"""

from __future__ import annotations

import argparse
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pyspark.errors import PythonException
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F
from pyspark.sql import types as T

from jobs.blend.main import SIMILAR_ITEMS
from jobs.common import lake
from jobs.common.errors import JobError
from jobs.common.progress import Stages
from jobs.load import direct
from jobs.load import transforms as tr
from jobs.load.writer import KINDS, LIST_KINDS, STATS_COLUMNS, Target, open_client, partition_writer, server_id
from recsys import keys
from recsys import schema as S
from recsys.bundle import CURRENT
from recsys.config import Config
from recsys.encoding import SOURCE_BITS

DESCRIPTION = "bulk-load recommendations, similar items, popular lists, products and history into Redis"
log = logging.getLogger(__name__)

MAX_ROUNDS = 3
STATS_SCHEMA = T.StructType(
    [
        T.StructField("keys", T.LongType()),
        T.StructField("deleted", T.LongType()),
        T.StructField("value_bytes", T.LongType()),
        T.StructField("retries", T.LongType()),
        T.StructField("server_ids", T.StringType()),
    ]
)
MEMORY_SAMPLE = 200
# The kinds that read no blend output: the pipeline loads them alongside the ALS fit.
EARLY_KINDS: tuple[str, ...] = ("similar", "popular", "product", "history")


@dataclass
class LoadOutcome:
    """What a load wrote: keys per kind, user keys, bytes and seconds."""

    keys: dict[str, int] = field(default_factory=dict)
    deleted: int = 0
    users: int = 0
    value_bytes_per_user: float = 0.0
    memory_bytes_per_user: float = 0.0
    retries: int = 0
    rounds: int = 0
    model_version: str = ""
    server_id: str = ""
    kinds: tuple[str, ...] = ()

    @property
    def total_keys(self) -> int:
        return sum(self.keys.values())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--version",
        default=None,
        help="load only the users rescored by this blend model_version (incremental)",
    )
    parser.add_argument(
        "--only",
        default=",".join(KINDS),
        help=f"comma-separated key kinds to load (default: all of {','.join(KINDS)})",
    )


def redis_error(exc: Exception) -> str | None:
    """The Redis error a write task ended with (``ResponseError: MISCONF ...``), read from the worker's traceback
    that Spark reports; ``None`` when the task failed for another reason.

    The writers retry what a retry can fix (a dropped connection, a restart); an error reply is Redis refusing
    the write (out of memory under ``noeviction``, a failed snapshot with ``stop-writes-on-bgsave-error``, a
    read-only replica), which only its operator can fix, so the job stops on it with that one line.
    """
    found = re.findall(r"^redis\.exceptions\.(\w+): (.+)$", str(exc), flags=re.MULTILINE)
    if not found:
        return None
    name, message = found[-1]
    return f"{name}: {message.strip()}"


def write_kind(df: DataFrame, *, kind: str, ttl: int | None, target: Target) -> dict[str, object]:
    """Writes one transform's rows from the executors; returns the summed counts (one small row).

    Each partition is one task with its own connection, fed Arrow batches of
    ``spark.sql.execution.arrow.maxRecordsPerBatch`` rows; the write runs on as many cores as the
    transform has partitions (a table read gives at least ``spark.default.parallelism`` of them).
    """
    if kind in LIST_KINDS:
        df = tr.wire_lists(df)
    stats = df.mapInArrow(partition_writer(kind=kind, ttl=ttl, target=target), STATS_SCHEMA)
    row = stats.agg(
        *[F.sum(c).alias(c) for c in STATS_COLUMNS if c != "server_ids"],
        F.concat_ws(",", F.collect_set("server_ids")).alias("server_ids"),
    ).first()
    return {c: (row[c] or 0) if c != "server_ids" else row[c] for c in STATS_COLUMNS}


def _frames(
    spark: SparkSession,
    cfg: Config,
    kinds: Sequence[str],
    version: str | None,
    now: float,
    *,
    history_users: DataFrame | None = None,
    needs_recs: bool = True,
) -> tuple[dict[str, tuple[DataFrame, int | None]], str]:
    """The rows and TTL of each kind, and the model version the load reports.

    ``needs_recs`` False: the recommendations table is read only when a kind needs it (a load of the keys that
    read no blend output, which runs before the blend of the run has written it).
    """
    rpath = cfg.table_path(lake.RECOMMENDATIONS)
    scoped_history = "history" in kinds and version is not None and history_users is None
    recs = None
    if needs_recs or "user" in kinds or scoped_history:
        if not lake.table_exists(spark, rpath):
            raise JobError(f"no recommendations table at {rpath}: run blend first")
        recs = lake.read_table(spark, rpath)
        if version is not None:
            recs = recs.where(F.col("model_version") == version)
    model_version = version or ("" if recs is None else recs.agg(F.max("model_version")).first()[0] or "")
    events = lake.read_table(spark, cfg.table_path(lake.INTERACTIONS))
    ttl, long_ttl = cfg.redis.ttl_seconds, cfg.redis.long_ttl_seconds
    frames: dict[str, tuple[DataFrame, int | None]] = {}
    if "user" in kinds:
        assert recs is not None  # read above whenever "user" is loaded
        frames["user"] = (tr.user_lists(recs), ttl)
    if "similar" in kinds and lake.table_exists(spark, cfg.table_path(SIMILAR_ITEMS)):
        frames["similar"] = (
            tr.similar_lists(lake.read_table(spark, cfg.table_path(SIMILAR_ITEMS)), created_at=now),
            long_ttl,
        )
    if "popular" in kinds and lake.table_exists(spark, cfg.table_path(lake.POPULAR)):
        frames["popular"] = (
            tr.popular_lists(
                lake.read_table(spark, cfg.table_path(lake.POPULAR)),
                source_bit=SOURCE_BITS["popular"],
                created_at=now,
            ),
            long_ttl,
        )
    if "product" in kinds:
        frames["product"] = (tr.product_hashes(lake.read_table(spark, cfg.table_path(lake.PRODUCTS))), None)
    if "history" in kinds:
        if history_users is not None:
            scope = events.join(history_users.select(S.COL_USER), S.COL_USER, "left_semi")
        elif version is not None and recs is not None:
            scope = events.join(recs.select(S.COL_USER), S.COL_USER, "left_semi")
        else:
            scope = events
        frames["history"] = (
            tr.history_seeds(scope, length=cfg.redis.history_seed_length),
            cfg.serving.history_ttl_s,
        )
    return frames, model_version


def _user_files(spark: SparkSession, cfg: Config) -> list[str] | None:
    """The recommendations files for the direct read of user lists, or ``None`` for the Spark path."""
    if not cfg.redis.load_direct_read:
        log.info("load user: Spark reads the recommendations table (redis.load_direct_read is false)")
        return None
    return direct.plain_files(spark, cfg.table_path(lake.RECOMMENDATIONS))


def _als_bundle(cfg: Config) -> str:
    pointer = Path(cfg.model_path("als")) / CURRENT
    return pointer.read_text().strip() if pointer.is_file() else ""


def memory_per_user(client: object, user_ids: Sequence[str]) -> float:
    """Mean ``MEMORY USAGE`` (key, value and overhead) of the given users' recommendation keys."""
    sizes = [client.memory_usage(keys.user_recs_key(u), samples=0) for u in user_ids]  # type: ignore[attr-defined]
    sizes = [s for s in sizes if s]
    return float(sum(sizes) / len(sizes)) if sizes else 0.0


def run_load(
    spark: SparkSession,
    cfg: Config,
    *,
    stages: Stages,
    version: str | None = None,
    kinds: Sequence[str] = KINDS,
    history_users: DataFrame | None = None,
    after: LoadOutcome | None = None,
    finish: bool = True,
) -> LoadOutcome:
    """Loads the lake's serving tables into Redis and writes ``model:current`` last.

    A load can come in two parts (the pipeline loads the keys that read no blend output, :data:`EARLY_KINDS`,
    alongside the ALS fit, and the user lists after the blend): the first with ``finish=False``, the second
    with the first's outcome as ``after``. The second loads the first's kinds again when the server restarted
    since the first began (its ``run_id`` changed) or restarts during the second, and writes ``model:current``
    only once both are complete.

    Args:
        spark: The session.
        cfg: The configuration (``redis`` section: url, cluster, TTLs, pipeline size, direct read).
        stages: Progress and timings.
        version: Load only the users of this blend ``model_version`` (an incremental run).
        kinds: The key kinds to load (:data:`jobs.load.writer.KINDS`).
        history_users: ``user_id`` of the users whose history seeds to load (default: the users of
            ``version``, or everyone).
        after: The outcome of the first part of this load, whose counts are part of the outcome.
        finish: Write ``model:current`` and sample the memory per user (False for a first part).

    Returns:
        Counts, bytes per user, the number of rounds, and the kinds and server id of the load.
    """
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise JobError(f"--only names unknown kind(s) {', '.join(unknown)} (known: {', '.join(KINDS)})")
    target = Target.from_config(cfg.redis)
    client = open_client(target)
    try:
        before = server_id(client)
    except Exception as exc:  # noqa: BLE001 - any failure to reach Redis ends the job with one line
        raise JobError(f"cannot reach Redis at {cfg.redis.url}: {exc}") from exc
    earlier = [k for k in (after.kinds if after is not None else ()) if k not in kinds]
    frames, model_version = _frames(
        spark, cfg, [*kinds, *earlier], version, time.time(), history_users=history_users, needs_recs=finish
    )
    # Listed once, so a replayed round writes the same snapshot.
    user_files = _user_files(spark, cfg) if "user" in frames else None
    out = LoadOutcome(model_version=model_version, kinds=tuple(kinds))
    if after is not None:  # a first part writes no user key: its keys and retries are all it adds
        out.keys, out.retries = dict(after.keys), after.retries
    todo = [k for k in kinds if k in frames]
    if after is not None and before != after.server_id:
        log.warning(
            "Redis restarted since the load of %s began (server ids %s -> %s): loading them again",
            ",".join(earlier),
            after.server_id,
            before,
        )
        todo += [k for k in earlier if k in frames]
    for round_no in range(1, MAX_ROUNDS + 1):
        out.rounds = round_no
        seen = {before}
        for kind in todo:
            df, ttl = frames[kind]
            try:
                with stages(f"load_{kind}" if round_no == 1 else f"load_{kind}_round{round_no}"):
                    if kind == "user" and user_files is not None:
                        stats = direct.write_user_lists(spark, user_files, ttl=ttl, target=target, version=version)
                    else:
                        stats = write_kind(df, kind=kind, ttl=ttl, target=target)
            except PythonException as exc:
                reason = redis_error(exc)
                if reason is None:
                    raise
                raise JobError(f"Redis at {cfg.redis.url} refused the {kind} keys: {reason}") from exc
            out.keys[kind] = int(stats["keys"])  # type: ignore[call-overload]
            out.retries += int(stats["retries"])  # type: ignore[call-overload]
            if kind == "user":
                out.deleted = int(stats["deleted"])  # type: ignore[call-overload]
                out.users = out.keys[kind]
                out.value_bytes_per_user = int(stats["value_bytes"]) / max(out.users, 1)  # type: ignore[call-overload]
            seen.update(s for s in str(stats["server_ids"]).split(",") if s)
        now_id = server_id(client)
        if seen == {before} and now_id == before:
            break
        log.warning(
            "Redis restarted during the load (server ids %s -> %s): loading again", sorted(seen), now_id
        )
        before = now_id
        # The first part's keys were lost with the others: this round writes them too.
        todo += [k for k in earlier if k in frames and k not in todo]
    else:
        raise JobError(f"Redis restarted during each of {MAX_ROUNDS} load rounds: the load is incomplete")
    out.server_id = before  # the server the complete round wrote to (a later part compares with it)
    if not finish:
        client.close()
        return out
    if "user" in frames and out.users:
        sample = [
            r[0]
            for r in frames["user"][0]
            .where(F.size(tr.COL_PRODUCT_IDS) > 0)
            .select(tr.COL_ID)
            .limit(MEMORY_SAMPLE)
            .collect()
        ]
        out.memory_bytes_per_user = memory_per_user(client, sample)
    with stages("model_current"):
        client.hset(
            keys.MODEL_KEY,
            mapping={
                "model_version": model_version,
                "als_bundle": _als_bundle(cfg),
                "loaded_at": f"{time.time():.3f}",
                "users": str(out.users),
                "keys": str(out.total_keys),
            },
        )
    out.keys["model"] = 1
    client.close()
    return out


def run(args: argparse.Namespace, cfg: Config, spark: SparkSession) -> int:
    stages = Stages("load")
    kinds = [k.strip() for k in args.only.split(",") if k.strip()]
    out = run_load(spark, cfg, stages=stages, version=args.version, kinds=kinds)
    per_kind = ", ".join(f"{k} {v:,}" for k, v in out.keys.items())
    print(
        f"load {out.model_version or '-'}: {out.total_keys:,} keys ({per_kind}); "
        f"{out.deleted:,} emptied users deleted; {out.value_bytes_per_user:,.0f} B value and "
        f"{out.memory_bytes_per_user:,.0f} B Redis memory "
        f"per user; {out.retries} retries, {out.rounds} round(s); {sum(stages.seconds.values()):.1f}s"
    )
    return 0
