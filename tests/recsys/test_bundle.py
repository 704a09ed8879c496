"""The ALS serving bundle: write/load round trip, the CURRENT pointer, shape checks, no overwrite."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.bundle import BundleError, current_bundle_dir, load_bundle, write_bundle

META = {"rank": 2, "reg_param": 0.1, "alpha": 1.0}


def _write(root, version="als-20260101T000000Z", **kw):
    y = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 2.0]], dtype=np.float32)
    x = np.array([[3.0, 1.0], [1.0, 3.0]], dtype=np.float32)
    args = {
        "item_ids": ["p1", "p2", "p3"],
        "item_factors": y,
        "user_ids": ["u9", "u1"],
        "user_factors": x,
        "meta": META,
    }
    args.update(kw)
    return write_bundle(root, version, **args), y, x


def test_round_trip_memory_maps_the_same_arrays(tmp_path):
    folder, y, x = _write(tmp_path)
    b = load_bundle(current_bundle_dir(tmp_path))
    assert b.path == folder
    assert b.model_version == "als-20260101T000000Z" and b.rank == 2
    assert isinstance(b.item_factors, np.memmap)
    np.testing.assert_array_equal(b.item_factors, y)
    np.testing.assert_allclose(b.gram, y.astype(np.float64).T @ y.astype(np.float64))
    assert list(b.item_ids) == ["p1", "p2", "p3"] and b.item_index == {"p1": 0, "p2": 1, "p3": 2}
    assert list(b.user_ids) == ["u1", "u9"]  # sorted for binary search
    np.testing.assert_array_equal(b.user_vector("u9"), x[0])
    np.testing.assert_array_equal(b.user_vector("u1"), x[1])
    assert b.user_vector("u5") is None and b.user_vector("zz") is None
    assert b.meta["n_items"] == 3 and b.meta["n_users"] == 2


def test_publishing_a_second_version_moves_current(tmp_path):
    _write(tmp_path, "als-1")
    _write(tmp_path, "als-2")
    assert current_bundle_dir(tmp_path).name == "als-2"
    _write(tmp_path, "als-3", publish=False)
    assert current_bundle_dir(tmp_path).name == "als-2"


def test_versions_are_never_overwritten(tmp_path):
    _write(tmp_path, "als-1")
    with pytest.raises(BundleError, match="exists already"):
        _write(tmp_path, "als-1")


def test_shape_and_meta_errors_name_the_argument(tmp_path):
    with pytest.raises(BundleError, match="item_factors"):
        _write(tmp_path, item_ids=["p1", "p2"])
    with pytest.raises(BundleError, match="alpha"):
        _write(tmp_path, meta={"rank": 2, "reg_param": 0.1})
    with pytest.raises(BundleError, match="no published"):
        current_bundle_dir(tmp_path / "empty")


def test_incomplete_bundle_is_refused(tmp_path):
    folder, _, _ = _write(tmp_path)
    (folder / "gram.npy").unlink()
    with pytest.raises(BundleError, match="gram.npy"):
        load_bundle(folder)
