"""Whole-key Arrow chunks and integer codes against plain-Python versions."""

from __future__ import annotations

import pyarrow as pa
import pytest

from jobs.common.arrow_chunks import run_codes, sorted_codes, whole_key_tables


def test_whole_key_tables_never_split_a_key():
    batches = [pa.record_batch({"u": list(s), "n": list(range(len(s)))}) for s in ("aab", "bbb", "c", "", "cd")]
    chunks = [t.column("u").to_pylist() for t in whole_key_tables(batches, "u", 3)]
    assert chunks == [["a", "a"], ["b", "b", "b", "b"], ["c", "c"], ["d"]]
    with pytest.raises(ValueError, match="chunk_rows"):
        list(whole_key_tables(batches, "u", 0))


def test_run_codes_number_the_runs_of_a_chunked_column():
    col = pa.chunked_array([["u9", "u9", "u1"], ["u1", "u5"], ["u5"]])
    assert run_codes(col).tolist() == [0, 0, 1, 1, 2, 2]
    assert run_codes(pa.array([], pa.string())).tolist() == []


def test_sorted_codes_follow_the_sorted_distinct_values():
    values = ["p10", "p2", "p10", "a", "p2"]
    codes, uniq = sorted_codes(pa.chunked_array([values[:2], values[2:]]))
    assert uniq.to_pylist() == sorted(set(values))
    assert codes.tolist() == [sorted(set(values)).index(v) for v in values]
