"""The Arrow batch encoder against the per-row encoder: the same bytes for every row, read by the API's decoder."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from recsys.batch_encoding import encode_lists
from recsys.encoding import EncodingError, decode_list, encode_list

IDS = pa.list_(pa.string())


def _random_lists(seed: int, rows: int, score_type: pa.DataType) -> tuple[list, list, list, list]:
    rng = np.random.default_rng(seed)
    alphabet = ["P0", "sku-9.x:1", "Ä", "商品", "a", "Z_z"]
    ids, scores, sources, created = [], [], [], []
    for r in range(rows):
        n = int(rng.choice([0, 1, 2, 7, 100, 300]))
        if r % 11 == 5:
            for column in (ids, scores, sources):
                column.append(None)  # a null list is an empty one
        else:
            ids.append([f"{alphabet[int(rng.integers(len(alphabet)))]}{int(rng.integers(1e6))}" for _ in range(n)])
            # float16 edge cases: overflow to inf, subnormals, negative zero, ties in rounding.
            pool = np.array([70000.0, 6e-8, 1e-5, -0.0, 1.0009765625, 0.333, np.nan, -2.5], dtype=np.float64)
            s = np.where(rng.random(n) < 0.2, rng.choice(pool, n), rng.normal(0, 3, n))
            scores.append([float(np.float32(x)) if score_type == pa.float32() else float(x) for x in s])
            sources.append([int(x) for x in rng.integers(0, 256, n)])
        created.append(float(rng.integers(0, 2_000_000_000)) + 0.25)
    return ids, scores, sources, created


def _reference(ids, scores, sources, created, score_type: pa.DataType) -> list[bytes]:
    dtype = np.float32 if score_type == pa.float32() else np.float64
    with np.errstate(over="ignore"):  # 70000 does not fit a float16: inf in both encoders
        return [
            encode_list(i or [], np.asarray(s or [], dtype=dtype), x or [], created_at=c)
            for i, s, x, c in zip(ids, scores, sources, created, strict=True)
        ]


@pytest.mark.parametrize("score_type", [pa.float32(), pa.float64()])
@pytest.mark.parametrize("joined", [False, True], ids=["list", "joined"])
def test_every_row_is_byte_identical_to_encode_list_and_decodes(score_type: pa.DataType, joined: bool) -> None:
    ids, scores, sources, created = _random_lists(7, 60, score_type)
    id_arr = pa.array(ids, IDS)
    if joined:
        id_arr = pc.binary_join(id_arr, "\x00")  # what Spark's concat_ws ships
    got = encode_lists(
        id_arr, pa.array(scores, pa.list_(score_type)), pa.array(sources, pa.list_(pa.int32())), pa.array(created)
    ).to_pylist()
    assert got == _reference(ids, scores, sources, created, score_type)
    for value, i, c in zip(got, ids, created, strict=True):
        decoded = decode_list(value)
        assert decoded.product_ids == (i or []) and decoded.created_at == c


def test_slices_of_a_batch_encode_their_own_rows() -> None:
    ids, scores, sources, created = _random_lists(3, 40, pa.float32())
    cols = [
        pa.array(ids, IDS),
        pa.array(scores, pa.list_(pa.float32())),
        pa.array(sources, pa.list_(pa.int32())),
        pa.array(created),
    ]
    whole = encode_lists(*cols).to_pylist()
    joined = pc.binary_join(cols[0], "\x00")
    for start, length in [(0, 13), (13, 1), (14, 26), (39, 1), (5, 0)]:
        part = [c.slice(start, length) for c in cols]
        assert encode_lists(*part).to_pylist() == whole[start : start + length]
        part[0] = joined.slice(start, length)  # a slice keeps the parent's buffers, with an offset
        assert encode_lists(*part).to_pylist() == whole[start : start + length]


@pytest.mark.parametrize(
    ("ids", "message"),
    [
        (pa.array([["a", "b\x00c"]], IDS), "NUL"),
        (pa.array([["a", ""]], IDS), "non-empty"),
        (pa.array([["a", None]], IDS), "null element"),
        (pa.array([["a"]], IDS), "lengths differ"),
        (pa.array(["a\x00b\x00c"]), "lengths differ or an id holds NUL"),
        (pa.array(["a"]), "lengths differ"),
        (pa.array(["a\x00"]), "non-empty"),
        (pa.array(["\x00a"]), "non-empty"),
    ],
)
def test_bad_ids_raise(ids: pa.Array, message: str) -> None:
    with pytest.raises(EncodingError, match=message):
        encode_lists(ids, pa.array([[1.0, 0.5]]), pa.array([[1, 2]]), pa.array([0.0]))


def test_a_joined_row_whose_extra_and_missing_ids_cancel_out_is_still_caught() -> None:
    # Row 0 has one id too many (an id with a NUL), row 1 one too few: the batch's NUL total is right.
    ids = pa.array(["a\x00b\x00c", "d"])
    with pytest.raises(EncodingError, match="row 0"):
        encode_lists(ids, pa.array([[1.0, 0.5], [1.0, 0.5]]), pa.array([[1, 2], [1, 2]]), pa.array([0.0, 0.0]))


def test_bad_scores_sources_and_columns_raise() -> None:
    one = pa.array([["a"]], IDS)
    with pytest.raises(EncodingError, match="0-255"):
        encode_lists(one, pa.array([[1.0]]), pa.array([[256]]), pa.array([0.0]))
    with pytest.raises(EncodingError, match="lengths differ"):
        encode_lists(one, pa.array([[1.0]]), pa.array([[1, 2]]), pa.array([0.0]))
    with pytest.raises(EncodingError, match="null element"):
        encode_lists(one, pa.array([[None]], pa.list_(pa.float32())), pa.array([[1]]), pa.array([0.0]))
    with pytest.raises(EncodingError, match="columns differ"):
        encode_lists(one, pa.array([[1.0]]), pa.array([[1]]), pa.array([0.0, 1.0]))
    with pytest.raises(EncodingError, match="65535"):
        big = ["p"] * 65536
        encode_lists(pa.array([big], IDS), pa.array([[0.0] * 65536]), pa.array([[1] * 65536]), pa.array([0.0]))
