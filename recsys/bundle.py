"""The ALS serving bundle: versioned files that the API memory-maps for on-demand scoring.

Layout under ``<models_root>/als/``::

    CURRENT                      the active version's name (replaced atomically when a new bundle is published)
    <model_version>/meta.json    rank, reg_param, alpha, binary_confidence, counts, created_at
    <model_version>/item_ids.npy          fixed-width unicode, row i names the product of item_factors[i]
    <model_version>/item_factors.npy      float32 [n_items, rank]
    <model_version>/gram.npy              float64 [rank, rank] = item_factors.T @ item_factors
    <model_version>/user_ids.npy          fixed-width unicode, sorted (binary search, no dict in memory)
    <model_version>/user_factors.npy      float32 [n_users, rank], row i belongs to user_ids[i]

``.npy`` files open with ``mmap_mode="r"``: gunicorn workers share the pages through the OS page cache, and a
user's vector is one binary search away without loading every id into a Python dict.

Example:
    >>> bundle = load_bundle(current_bundle_dir("data/models/als"))
    >>> bundle.user_vector("U0000001").shape
    (64,)
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

CURRENT = "CURRENT"
FILES = ("meta.json", "item_ids.npy", "item_factors.npy", "gram.npy", "user_ids.npy", "user_factors.npy")


class BundleError(RuntimeError):
    """A bundle is missing, incomplete or inconsistent."""


@dataclass(frozen=True)
class AlsBundle:
    """A loaded (memory-mapped) ALS bundle."""

    path: Path
    meta: Mapping[str, Any]
    item_ids: np.ndarray
    item_factors: np.ndarray
    gram: np.ndarray
    user_ids: np.ndarray
    user_factors: np.ndarray
    item_index: Mapping[str, int]

    @property
    def model_version(self) -> str:
        return str(self.meta["model_version"])

    @property
    def rank(self) -> int:
        return int(self.meta["rank"])

    def user_vector(self, user_id: str) -> np.ndarray | None:
        """The batch factor of ``user_id``, or ``None`` when the user was not in the training data."""
        i = int(np.searchsorted(self.user_ids, user_id))
        if i < len(self.user_ids) and self.user_ids[i] == user_id:
            return np.asarray(self.user_factors[i], dtype=np.float64)
        return None


def write_bundle(
    root: str | os.PathLike[str],
    model_version: str,
    *,
    item_ids: Iterable[str],
    item_factors: np.ndarray,
    user_ids: Iterable[str],
    user_factors: np.ndarray,
    meta: Mapping[str, Any],
    publish: bool = True,
) -> Path:
    """Writes a bundle under ``root/model_version`` and (by default) points ``root/CURRENT`` at it.

    The files are written into a temporary folder that is renamed into place, and ``CURRENT`` is replaced
    atomically, so a reader sees either the previous complete bundle or the new complete bundle.

    Args:
        root: The bundles folder (``cfg.model_path("als")``).
        model_version: Name of the version folder.
        item_ids: Product ids in the row order of ``item_factors``.
        item_factors: ``[n_items, rank]`` factors.
        user_ids: User ids in the row order of ``user_factors`` (any order; they are sorted here).
        user_factors: ``[n_users, rank]`` factors.
        meta: Extra metadata (must include rank, reg_param and alpha).
        publish: Update ``CURRENT`` to this version.

    Returns:
        The bundle folder.
    """
    for key in ("rank", "reg_param", "alpha"):
        if key not in meta:
            raise BundleError(f"meta is missing {key!r}")
    items = np.asarray(list(item_ids), dtype=np.str_)
    users = np.asarray(list(user_ids), dtype=np.str_)
    y = np.ascontiguousarray(item_factors, dtype=np.float32)
    x = np.ascontiguousarray(user_factors, dtype=np.float32)
    rank = int(meta["rank"])
    if y.ndim != 2 or y.shape != (len(items), rank):
        raise BundleError(f"item_factors has shape {y.shape}, expected ({len(items)}, {rank})")
    if x.ndim != 2 or x.shape != (len(users), rank):
        raise BundleError(f"user_factors has shape {x.shape}, expected ({len(users)}, {rank})")
    order = np.argsort(users, kind="stable")
    root_path = Path(root)
    root_path.mkdir(parents=True, exist_ok=True)
    final = root_path / model_version
    tmp = Path(tempfile.mkdtemp(prefix=f".{model_version}.", dir=root_path))
    np.save(tmp / "item_ids.npy", items)
    np.save(tmp / "item_factors.npy", y)
    np.save(tmp / "gram.npy", y.astype(np.float64).T @ y.astype(np.float64))
    np.save(tmp / "user_ids.npy", users[order])
    np.save(tmp / "user_factors.npy", x[order])
    full_meta = {**meta, "model_version": model_version, "n_items": len(items), "n_users": len(users)}
    (tmp / "meta.json").write_text(json.dumps(full_meta, indent=2, sort_keys=True, default=str))
    if final.exists():
        raise BundleError(f"bundle {final} exists already; model versions are never overwritten")
    os.replace(tmp, final)
    if publish:
        publish_bundle(root_path, model_version)
    return final


def publish_bundle(root: str | os.PathLike[str], model_version: str) -> None:
    """Points ``root/CURRENT`` at ``model_version`` with an atomic rename."""
    root_path = Path(root)
    if not (root_path / model_version / "meta.json").is_file():
        raise BundleError(f"no bundle {model_version!r} under {root_path}")
    tmp = root_path / f".{CURRENT}.{os.getpid()}"
    tmp.write_text(model_version + "\n")
    os.replace(tmp, root_path / CURRENT)


def current_bundle_dir(root: str | os.PathLike[str]) -> Path:
    """The folder of the published bundle under ``root``."""
    pointer = Path(root) / CURRENT
    if not pointer.is_file():
        raise BundleError(f"no published ALS bundle: {pointer} does not exist (run the als job)")
    return Path(root) / pointer.read_text().strip()


def load_bundle(path: str | os.PathLike[str]) -> AlsBundle:
    """Memory-maps the bundle in ``path``; checks that every file is there and the shapes agree."""
    folder = Path(path)
    missing = [f for f in FILES if not (folder / f).is_file()]
    if missing:
        raise BundleError(f"bundle {folder} is incomplete: missing {', '.join(missing)}")
    meta = json.loads((folder / "meta.json").read_text())
    item_ids = np.load(folder / "item_ids.npy", mmap_mode="r")
    item_factors = np.load(folder / "item_factors.npy", mmap_mode="r")
    user_ids = np.load(folder / "user_ids.npy", mmap_mode="r")
    user_factors = np.load(folder / "user_factors.npy", mmap_mode="r")
    gram = np.load(folder / "gram.npy")
    if item_factors.shape[0] != item_ids.shape[0] or user_factors.shape[0] != user_ids.shape[0]:
        raise BundleError(f"bundle {folder}: ids and factors disagree in length")
    return AlsBundle(
        path=folder,
        meta=meta,
        item_ids=item_ids,
        item_factors=item_factors,
        gram=gram,
        user_ids=user_ids,
        user_factors=user_factors,
        item_index={str(p): i for i, p in enumerate(item_ids)},
    )
