"""Whole-key chunks of a key-clustered ``mapInPandas`` stream, for vectorised per-user work in pandas.

:func:`cluster_by_key` puts every row of a key in one partition, contiguously; Spark then hands
``mapInPandas`` Arrow batches of about 10k rows that ignore key boundaries, and :func:`whole_key_chunks`
regroups them into chunks of at least ``chunk_rows`` rows that never split a key: the last key of a buffer
is held back until the next batch, so memory stays one chunk plus one key.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pandas as pd
from pyspark.sql import DataFrame
from pyspark.sql import functions as F

_PART = "_cluster_part"


def cluster_by_key(df: DataFrame, key: str, partitions: int) -> DataFrame:
    """``df`` with all rows of a key in one partition and contiguous there (sorted by key).

    Not ``df.repartition(n, key).sortWithinPartitions(key)``: when ``df`` comes out of a sort-merge join on
    ``key`` with ``n`` shuffle partitions, the planner drops that repartition and sort as redundant, and
    adaptive execution may then turn the join into a broadcast join that reads its input with a local
    shuffle reader, so a key ends up split across partitions (seen at 1M events: each user's rows arrived in
    four runs, one per candidate source; the class of bug of SPARK-33551). Repartitioning on a column of our
    own, ``pmod(xxhash64(key), n)``, is a shuffle no join output can satisfy, so it is always kept.

    Example:
        >>> cluster_by_key(enriched, "user_id", 8).mapInPandas(run, schema)
    """
    if partitions <= 0:
        raise ValueError(f"partitions must be positive, got {partitions}")
    part = F.pmod(F.xxhash64(key), F.lit(partitions))
    return df.withColumn(_PART, part).repartition(partitions, _PART).sortWithinPartitions(_PART, key).drop(_PART)


def whole_key_chunks(batches: Iterable[pd.DataFrame], key: str, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """Regroups key-clustered batches into chunks of whole keys: once ``chunk_rows`` rows are buffered, all
    but the buffer's last key are yielded (so a chunk may hold fewer rows than ``chunk_rows``) and the last
    key waits for the next batch.

    Example:
        >>> parts = [pd.DataFrame({"u": ["a", "b"]}), pd.DataFrame({"u": ["b", "c"]})]
        >>> [list(c["u"]) for c in whole_key_chunks(parts, "u", 2)]
        [['a'], ['b', 'b'], ['c']]
    """
    if chunk_rows <= 0:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    pending: list[pd.DataFrame] = []
    rows = 0
    for pdf in batches:
        if pdf.empty:
            continue
        pending.append(pdf)
        rows += len(pdf)
        if rows < chunk_rows:
            continue
        buf = pd.concat(pending, ignore_index=True)
        tail = (buf[key] == buf[key].iat[-1]).to_numpy()
        pending, rows = [buf[tail]], int(tail.sum())
        if not tail.all():
            yield buf[~tail].reset_index(drop=True)
    if rows:
        yield pd.concat(pending, ignore_index=True)
