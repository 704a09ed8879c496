"""The ALS bundle of a worker, reloaded (memory-mapped) when the batch publishes a new version.

A worker checks at most every ``serving.model_check_s`` seconds which version is current: the ``als_bundle``
field of ``model:current`` in Redis (the bundle the cached lists were built from) when set and present on
disk, else the ``CURRENT`` file under ``cfg.model_path("als")``. A change swaps in the new bundle; requests in
flight keep the old object, so no lock is held while scoring.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from recsys.bundle import AlsBundle, BundleError, current_bundle_dir, load_bundle

log = logging.getLogger(__name__)


class ModelHolder:
    """Holds the current :class:`AlsBundle` and reloads it on change.

    Args:
        root: The bundles folder (``cfg.model_path("als")``).
        check_interval_s: Minimum seconds between two checks for a new version.
        pointer: Returns the version named in Redis (``None`` when unset or Redis is down).
        on_load: Called with each newly loaded bundle (the metrics hook).

    Example:
        >>> holder = ModelHolder("data/models/als", 5.0)
        >>> holder.get().model_version
        '20260101T000000'
    """

    def __init__(
        self,
        root: str | Path,
        check_interval_s: float,
        pointer: Callable[[], str | None] | None = None,
        on_load: Callable[[AlsBundle], None] | None = None,
    ) -> None:
        if check_interval_s < 0:
            raise ValueError(f"check_interval_s must be >= 0, got {check_interval_s}")
        self.root = Path(root)
        self.check_interval_s = check_interval_s
        self._pointer = pointer or (lambda: None)
        self._on_load = on_load or (lambda b: None)
        self._bundle: AlsBundle | None = None
        self._checked_at = float("-inf")
        self._lock = threading.Lock()
        self.last_error: str | None = None

    def get(self) -> AlsBundle | None:
        """The current bundle (``None`` when none is published), checking for a new one when due."""
        now = time.monotonic()
        if now - self._checked_at >= self.check_interval_s and self._lock.acquire(blocking=False):
            try:
                self._checked_at = now
                self._refresh()
            finally:
                self._lock.release()
        return self._bundle

    def _target(self) -> Path:
        try:
            named = self._pointer()
        except Exception as exc:  # noqa: BLE001 - Redis down must not stop the file check
            log.debug("model pointer unavailable: %s", exc)
            named = None
        if named and (self.root / named / "meta.json").is_file():
            return self.root / named
        return current_bundle_dir(self.root)

    def _refresh(self) -> None:
        try:
            target = self._target()
            if self._bundle is not None and self._bundle.path == target:
                return
            bundle = load_bundle(target)
        except (BundleError, OSError, ValueError) as exc:
            if self.last_error != str(exc):
                log.warning("ALS bundle not loaded: %s", exc)
            self.last_error = str(exc)
            return
        previous = self._bundle.model_version if self._bundle else None
        self._bundle = bundle
        self.last_error = None
        log.info(
            "loaded ALS bundle %s (was %s): %d items, rank %d",
            bundle.model_version,
            previous,
            len(bundle.item_ids),
            bundle.rank,
        )
        self._on_load(bundle)
