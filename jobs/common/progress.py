"""Progress lines for long jobs: one line per stage with its duration, and a closing summary."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger("recsys.progress")


def setup_logging(level: int = logging.INFO) -> None:
    """Job progress to stderr in one readable format; Spark's JVM logs stay at their own level."""
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True
    )
    logging.getLogger("py4j").setLevel(logging.WARNING)


class Stages:
    """Times named stages of a job and keeps their seconds for the run record.

    Example:
        >>> stages = Stages("als")
        >>> with stages("fit"):
        ...     pass
        >>> stages.seconds["fit"] >= 0
        True
    """

    def __init__(self, job: str) -> None:
        self.job = job
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        log.info("[%s] %s ...", self.job, name)
        start = time.perf_counter()
        yield
        took = time.perf_counter() - start
        # A stage run in parts (the pipeline's blend: its inputs alongside als, then the lists) adds them up.
        self.seconds[name] = round(self.seconds.get(name, 0.0) + took, 3)
        log.info("[%s] %s done in %.1fs", self.job, name, took)
