"""Whole-key chunks and integer codes of key-clustered ``mapInArrow`` streams, without Python objects.

The Arrow counterpart of :mod:`jobs.common.chunks`: a kernel fed by ``mapInArrow`` after
:func:`jobs.common.chunks.cluster_by_key` gets record batches that ignore key boundaries;
:func:`whole_key_tables` regroups them into tables of whole keys, and :func:`run_codes` and
:func:`sorted_codes` turn string columns into numpy integer codes with Arrow compute, so that millions of ids
never become Python strings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def whole_key_tables(batches: Iterable[pa.RecordBatch], key: str, chunk_rows: int) -> Iterator[pa.Table]:
    """Regroups key-clustered batches into tables of whole keys: once ``chunk_rows`` rows are buffered, all but
    the buffer's last key are yielded (so a table may hold fewer rows than ``chunk_rows``) and the last key
    waits for the next batch. The key column must hold no nulls.

    Example:
        >>> batches = [pa.record_batch({"u": ["a", "b"]}), pa.record_batch({"u": ["b", "c"]})]
        >>> [t.column("u").to_pylist() for t in whole_key_tables(batches, "u", 2)]
        [['a'], ['b', 'b'], ['c']]
    """
    if chunk_rows <= 0:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        rows += batch.num_rows
        if rows < chunk_rows:
            continue
        table = pa.Table.from_batches(pending)
        col = table.column(key)
        tail = pc.equal(col, col[-1]).combine_chunks().to_numpy(zero_copy_only=False)
        cut = int(np.argmax(tail))
        pending = table.slice(cut).to_batches()
        rows = table.num_rows - cut
        if cut:
            yield table.slice(0, cut)
    if rows:
        yield pa.Table.from_batches(pending)


def run_codes(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Run number (0, 1, ...) of each value of a column whose equal values are contiguous.

    Example:
        >>> run_codes(pa.array(["b", "b", "a", "c"])).tolist()
        [0, 0, 1, 2]
    """
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks()
    if len(col) < 2:
        return np.zeros(len(col), dtype=np.int64)
    changed = pc.not_equal(col.slice(1), col.slice(0, len(col) - 1))
    return np.concatenate([[0], np.cumsum(changed.to_numpy(zero_copy_only=False))]).astype(np.int64)


def sorted_codes(col: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, pa.Array]:
    """Code of each value in the sorted order of the column's distinct values, and those values.

    Example:
        >>> codes, values = sorted_codes(pa.array(["b", "a", "b"]))
        >>> codes.tolist(), values.to_pylist()
        ([1, 0, 1], ['a', 'b'])
    """
    uniq = pc.unique(col)
    uniq = uniq.take(pc.sort_indices(uniq))
    codes = pc.index_in(col, value_set=uniq)
    if isinstance(codes, pa.ChunkedArray):
        codes = codes.combine_chunks()
    return codes.to_numpy(zero_copy_only=False).astype(np.int64), uniq
