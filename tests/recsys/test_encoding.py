import json

import numpy as np
import pytest

from recsys.encoding import SOURCE_BITS, EncodingError, decode_list, encode_list, sources_to_bits


def test_round_trip_keeps_order_ids_sources_and_scores():
    ids = ["P000001", "P000002", "SKU-9.x:1"]
    scores = [0.91, 0.5, 0.001]
    sources = [sources_to_bits(["cf", "content"]), SOURCE_BITS["popular"], SOURCE_BITS["itemknn"]]
    got = decode_list(encode_list(ids, scores, sources, created_at=1700000000.5))
    assert got.product_ids == ids
    np.testing.assert_allclose(got.scores, scores, rtol=1e-3, atol=1e-4)
    assert [got.source_names(i) for i in range(3)] == [["cf", "content"], ["popular"], ["itemknn"]]
    assert got.created_at == 1700000000.5


def test_empty_list():
    got = decode_list(encode_list([], [], [], created_at=0.0))
    assert got.product_ids == [] and got.scores.size == 0


def test_compact_against_json():
    ids = [f"P{i:06d}" for i in range(100)]
    blob = encode_list(ids, np.linspace(1, 0, 100), [1] * 100, created_at=0.0)
    as_json = json.dumps([{"product_id": p, "score": 0.123456, "sources": ["cf"]} for p in ids])
    assert len(blob) == 13 + 100 * 2 + 100 + 100 * 7 + 99
    assert len(blob) < len(as_json) / 3


@pytest.mark.parametrize(
    "blob", [b"", b"XX\x01\x00\x00" + b"\x00" * 8, encode_list(["a"], [1.0], [1], created_at=0)[:-1] + b"\x00b"]
)
def test_malformed_payloads_raise(blob):
    with pytest.raises(EncodingError):
        decode_list(blob)


def test_bad_inputs_raise():
    with pytest.raises(EncodingError, match="lengths differ"):
        encode_list(["a", "b"], [1.0], [1, 1], created_at=0)
    with pytest.raises(EncodingError, match="NUL"):
        encode_list(["a\x00b"], [1.0], [1], created_at=0)
    with pytest.raises(EncodingError, match="unknown source"):
        sources_to_bits(["magic"])
