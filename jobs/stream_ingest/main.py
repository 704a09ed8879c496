"""``./spark-submit.sh stream-ingest``: drain the API's Redis Stream into the Delta interactions table.

Delivery is at-least-once and the write idempotent, so nothing is lost and nothing is duplicated:

1. Entries are read through a consumer group (``serving.stream_group``): an entry read but not acknowledged
   stays in the group's pending list. On start the consumer first takes over entries left pending by a dead
   consumer for longer than ``--claim-idle-s`` (XAUTOCLAIM) and re-reads its own pending ones, then reads new
   entries in micro-batches of at most ``serving.stream_batch``.
2. Each micro-batch goes through the bulk ingest's parse and quality rules; accepted rows are MERGEd by
   ``event_id`` (an entry seen twice changes nothing; a PUT's newer entry updates the row), rejected rows are
   appended to the quarantine unless that entry is already there.
3. Only after the Delta commit are the entries acknowledged (XACK). A consumer killed before the ack leaves
   them pending; its restart (or another consumer) commits them again, which the MERGE makes a no-op.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import redis
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import types as T

from jobs.common import lake
from jobs.common.errors import JobError
from jobs.ingest import transforms as TX
from jobs.stream_ingest import transforms as ST
from recsys import schema as S
from recsys.config import Config

DESCRIPTION = "drain the API's Redis Stream into the interactions table (consumer group, ack after commit)"
SOURCE_LABEL = "api"
log = logging.getLogger(__name__)

Entry = tuple[str, dict[str, str]]

ENTRY_SCHEMA = T.StructType(
    [T.StructField(name, T.StringType(), True) for name in S.INTERACTION_FIELDS]
    + [
        T.StructField(TX.SOURCE_FILE_COL, T.StringType(), False),
        T.StructField(ST.COL_STREAM_MS, T.LongType(), False),
        T.StructField(ST.COL_STREAM_SEQ, T.LongType(), False),
    ]
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--until-empty",
        action="store_true",
        help="exit once the stream has no pending or new entry (default: run until stopped)",
    )
    parser.add_argument(
        "--consumer",
        default=None,
        help="consumer name in the group (default: host-pid); reuse it to resume its pending",
    )
    parser.add_argument(
        "--claim-idle-s",
        type=float,
        default=60.0,
        help="take over entries another consumer left unacknowledged this long",
    )
    parser.add_argument("--block-ms", type=int, default=2000, help="wait this long for new entries per read")
    parser.add_argument(
        "--max-batches", type=int, default=0, help="stop after this many batches (0: no limit)"
    )


@dataclass
class StreamCounts:
    """Totals of a run; ``entries == accepted_rows + quarantined + superseded`` per batch."""

    batches: int = 0
    entries: int = 0
    inserted: int = 0
    updated: int = 0
    quarantined: int = 0
    rules: dict[str, int] = field(default_factory=dict)


class StreamReader:
    """The consumer-group side of the stream: claim, read, acknowledge.

    Args:
        client: A redis-py client (``decode_responses=True``).
        stream: The stream key (``serving.stream_key``).
        group: The consumer group (``serving.stream_group``).
        consumer: This consumer's name.
    """

    def __init__(self, client: redis.Redis, stream: str, group: str, consumer: str) -> None:
        self.client = client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self._own_pending_done = False

    def ensure_group(self) -> None:
        """Creates the group at the start of the stream (``MKSTREAM``) unless it exists."""
        try:
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    def claim(self, min_idle_ms: int, count: int) -> list[Entry]:
        """Takes over entries pending in other consumers for at least ``min_idle_ms``."""
        out: list[Entry] = []
        start = "0-0"
        while len(out) < count:
            reply = self.client.xautoclaim(
                self.stream, self.group, self.consumer, min_idle_ms, start, count=count - len(out)
            )
            start, entries = reply[0], reply[1]
            out += [(i, f) for i, f in entries if f is not None]
            if start in ("0-0", b"0-0"):
                break
        return out

    def next_batch(self, count: int, block_ms: int) -> list[Entry]:
        """This consumer's own pending entries first (a restart after a crash), then new ones."""
        if not self._own_pending_done:
            own = self._read("0", count, None)
            if own:
                return own
            self._own_pending_done = True
        return self._read(">", count, block_ms or None)

    def _read(self, start: str, count: int, block_ms: int | None) -> list[Entry]:
        reply = self.client.xreadgroup(
            self.group, self.consumer, {self.stream: start}, count=count, block=block_ms
        )
        if not reply:
            return []
        return [(i, f) for i, f in reply[0][1] if f]

    def ack(self, ids: Sequence[str]) -> int:
        return int(self.client.xack(self.stream, self.group, *ids)) if ids else 0


def entries_frame(spark: SparkSession, entries: Sequence[Entry], *, stream: str) -> DataFrame:
    """One string row per entry, with the entry id as ``_source_file`` and its stream order."""
    rows = []
    for entry_id, fields in entries:
        ms, seq = entry_id.split("-")
        rows.append(
            (
                *[fields.get(name) for name in S.INTERACTION_FIELDS],
                f"redis-stream:{stream}/{entry_id}",
                int(ms),
                int(seq),
            )
        )
    return spark.createDataFrame(rows, ENTRY_SCHEMA)


def commit_batch(
    spark: SparkSession, cfg: Config, entries: Sequence[Entry], *, run_id: str, now: datetime
) -> dict[str, int]:
    """Validates and MERGEs one micro-batch, quarantining rejects; returns its counts. Idempotent."""
    df = ST.latest_per_event(entries_frame(spark, entries, stream=cfg.serving.stream_key))
    tagged = ST.tag_batch(df, now=now, max_age_days=cfg.lake.max_event_age_days, source=SOURCE_LABEL)
    tagged = tagged.localCheckpoint()
    naive_now = now.astimezone(UTC).replace(tzinfo=None)
    accepted = TX.interaction_rows(tagged, ingested_at=naive_now, user_buckets=cfg.lake.user_buckets)
    merged = lake.merge_upsert(
        spark, accepted, cfg.table_path(lake.INTERACTIONS), lake.TABLES[lake.INTERACTIONS]
    )
    rejects = TX.quarantine_rows(tagged, table=lake.INTERACTIONS, run_id=run_id, quarantined_at=naive_now)
    qpath = cfg.table_path(lake.QUARANTINE)
    if lake.table_exists(spark, qpath):
        rejects = ST.new_quarantine_rows(rejects, lake.read_table(spark, qpath))
    rejects = rejects.localCheckpoint()
    quarantined = rejects.count()
    if quarantined:
        lake.append(spark, rejects, qpath, lake.TABLES[lake.QUARANTINE])
    rules = {r["rule"]: int(r["rows"]) for r in TX.rule_counts(tagged).collect()}
    return {
        "inserted": merged["inserted"],
        "updated": merged["updated"],
        "quarantined": quarantined,
        **{f"rule:{k}": v for k, v in rules.items()},
    }


def drain(
    spark: SparkSession,
    cfg: Config,
    reader: StreamReader,
    *,
    until_empty: bool,
    claim_idle_ms: int,
    block_ms: int,
    max_batches: int = 0,
    run_id: str | None = None,
    after_commit: Callable[[list[Entry]], None] | None = None,
) -> StreamCounts:
    """Reads, commits and acknowledges micro-batches until the stream is empty (or forever).

    Args:
        after_commit: Called between the Delta commit and the ack (tests kill the consumer there).
    """
    run_id = run_id or f"stream-ingest-{uuid.uuid4().hex[:12]}"
    counts = StreamCounts()
    reader.ensure_group()
    size = cfg.serving.stream_batch
    claimed = reader.claim(claim_idle_ms, size)
    while not max_batches or counts.batches < max_batches:
        batch = claimed or reader.next_batch(size, 0 if until_empty else block_ms)
        claimed = []
        if not batch:
            # Idle: take over what a dead consumer left behind in the meantime, if anything.
            claimed = reader.claim(claim_idle_ms, size)
            if not claimed and until_empty:
                break
            continue
        started = time.monotonic()
        result = commit_batch(spark, cfg, batch, run_id=run_id, now=datetime.now(UTC))
        if after_commit is not None:
            after_commit(batch)
        reader.ack([entry_id for entry_id, _ in batch])
        counts.batches += 1
        counts.entries += len(batch)
        counts.inserted += result["inserted"]
        counts.updated += result["updated"]
        counts.quarantined += result["quarantined"]
        for key, value in result.items():
            if key.startswith("rule:"):
                counts.rules[key[5:]] = counts.rules.get(key[5:], 0) + value
        log.info(
            "stream-ingest batch %d: %d entries, %d inserted, %d updated, %d quarantined (%.1fs)",
            counts.batches,
            len(batch),
            result["inserted"],
            result["updated"],
            result["quarantined"],
            time.monotonic() - started,
        )
    return counts


def open_reader(cfg: Config, consumer: str | None) -> StreamReader:
    client = redis.Redis.from_url(
        cfg.redis.url, decode_responses=True, socket_connect_timeout=cfg.redis.socket_timeout_s
    )
    name = consumer or f"{socket.gethostname()}-{os.getpid()}"
    S.check_id("--consumer", name)
    return StreamReader(client, cfg.serving.stream_key, cfg.serving.stream_group, name)


def run(args: argparse.Namespace, cfg: Config, spark: SparkSession) -> int:
    reader = open_reader(cfg, args.consumer)
    try:
        counts = drain(
            spark,
            cfg,
            reader,
            until_empty=args.until_empty,
            claim_idle_ms=int(args.claim_idle_s * 1000),
            block_ms=args.block_ms,
            max_batches=args.max_batches,
        )
    except redis.RedisError as exc:
        raise JobError(f"redis at {cfg.redis.url.split('@')[-1]} failed: {exc}") from exc
    print(
        f"stream-ingest: {counts.batches} batches, {counts.entries} entries, {counts.inserted} inserted, "
        f"{counts.updated} updated, {counts.quarantined} quarantined"
        + (
            f" (rules: {', '.join(f'{k}={v}' for k, v in sorted(counts.rules.items()))})"
            if counts.rules
            else ""
        )
    )
    return 0
