"""The evaluation harness: load events, split, run registered models, compute metrics, tune, report."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import product
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from jobs.evaluate import protocols as P
from jobs.evaluate.metrics import METRIC_ORDER, ranking_metrics
from jobs.evaluate.models import ModelContext, resolve
from recsys import schema as S
from recsys.config import Config

log = logging.getLogger(__name__)

GRID_RANK = (32, 64)
GRID_REG = (0.01, 0.1)
GRID_ALPHA = (1.0, 10.0)


@dataclass(frozen=True)
class SplitSpec:
    """A protocol and its parameters."""

    protocol: str
    split_time: datetime | None = None
    ratio: float = 0.75
    seed: int = 42


@dataclass
class EvalResult:
    """Metrics and timing of one model on one split."""

    model: str
    metrics: dict[str, float]
    fit_seconds: float
    params: dict[str, Any] = field(default_factory=dict)


def make_split(events: DataFrame, spec: SplitSpec) -> P.Split:
    """Applies ``spec`` to ``events``; the training data ends at ``spec.split_time`` or the last event."""
    if spec.protocol == "temporal":
        if spec.split_time is None:
            raise ValueError("the temporal protocol needs a split date (--split-date)")
        train, test = P.temporal_split(events, split_time=spec.split_time)
        return P.Split(train, test, spec.split_time)
    if spec.protocol == "stratified":
        train, test = P.stratified_split(events, ratio=spec.ratio, seed=spec.seed)
    elif spec.protocol == "leave-last-out":
        train, test = P.leave_last_out(events)
    else:
        raise ValueError(f"unknown protocol {spec.protocol!r} (known: {', '.join(P.PROTOCOLS)})")
    last = events.agg(F.max(S.COL_TS)).first()[0]
    return P.Split(train, test, last)


def validation_spec(spec: SplitSpec, *, days: int = 30) -> SplitSpec:
    """The same protocol applied to the training side only: temporal moves ``days`` earlier."""
    if spec.protocol == "temporal":
        assert spec.split_time is not None
        return SplitSpec("temporal", spec.split_time - timedelta(days=days))
    return SplitSpec(spec.protocol, None, spec.ratio, spec.seed + 1)


def split_stats(split: P.Split) -> dict[str, Any]:
    """Sizes of a split: evaluated users, test pairs, and test pairs on products absent from training."""
    train_items = split.train.select(S.COL_ITEM).distinct()
    return {
        "train_events": split.train.count(),
        "train_users": split.train.select(S.COL_USER).distinct().count(),
        "train_items": train_items.count(),
        "eval_users": split.test.select(S.COL_USER).distinct().count(),
        "test_pairs": split.test.count(),
        "test_pairs_unseen_items": split.test.join(train_items, S.COL_ITEM, "left_anti").count(),
        "split_time": split.split_time.isoformat(),
    }


def evaluate_model(
    name: str,
    split: P.Split,
    products: DataFrame | None,
    *,
    cfg: Config,
    k: int,
    n_catalogue: int,
    params: Mapping[str, Any] | None = None,
) -> EvalResult:
    """Fits model ``name`` on ``split.train``, recommends for the test users, returns metrics at ``k``."""
    model = resolve(name)
    users = split.test.select(S.COL_USER).distinct().cache()
    ctx = ModelContext(cfg=cfg, k=k, split_time=split.split_time, users=users, params=dict(params or {}))
    start = time.perf_counter()
    recs = model(split.train, products, ctx).cache()
    n = recs.count()
    took = time.perf_counter() - start
    log.info("model %s: %d recommendations in %.1fs", name, n, took)
    metrics = ranking_metrics(recs, split.test, k=k, n_catalogue=n_catalogue)
    recs.unpersist()
    return EvalResult(name, metrics, round(took, 2), dict(params or {}))


def run_grid(
    events_train: DataFrame,
    products: DataFrame | None,
    spec: SplitSpec,
    *,
    cfg: Config,
    k: int,
    model: str = "als",
    ranks: Sequence[int] = GRID_RANK,
    regs: Sequence[float] = GRID_REG,
    alphas: Sequence[float] = GRID_ALPHA,
) -> tuple[list[EvalResult], dict[str, Any]]:
    """Grid over rank x reg_param x alpha on a validation split carved from the training events only.

    Returns:
        Every grid point's result and the chosen parameters (best validation nDCG@k).
    """
    vspec = validation_spec(spec)
    vsplit = make_split(events_train, vspec)
    vsplit = P.Split(vsplit.train.cache(), vsplit.test.cache(), vsplit.split_time)
    n_cat = vsplit.train.select(S.COL_ITEM).distinct().count()
    results = []
    for rank, reg, alpha in product(ranks, regs, alphas):
        res = evaluate_model(
            model,
            vsplit,
            products,
            cfg=cfg,
            k=k,
            n_catalogue=n_cat,
            params={"rank": rank, "reg_param": reg, "alpha": alpha},
        )
        print(
            f"grid {model} rank={rank:<3} reg={reg:<5} alpha={alpha:<5} "
            f"ndcg@{k}={res.metrics['ndcg']:.4f} hr@{k}={res.metrics['hit_rate']:.4f} fit={res.fit_seconds}s",
            flush=True,
        )
        results.append(res)
    best = max(results, key=lambda r: r.metrics["ndcg"])
    chosen = {
        **best.params,
        "model": model,
        "validation": {
            "protocol": vspec.protocol,
            "split_time": vsplit.split_time.isoformat(),
            "ndcg": best.metrics["ndcg"],
        },
    }
    return results, chosen


def markdown_table(results: Sequence[EvalResult], k: int) -> str:
    """Models side by side: HR, P, R, nDCG, MAP at k, coverage and fit seconds."""
    heads = {
        "hit_rate": "HR",
        "precision": "P",
        "recall": "R",
        "ndcg": "nDCG",
        "map": "MAP",
        "coverage": "coverage",
    }
    cols = [f"{heads[m]}@{k}" if m != "coverage" else "coverage" for m in METRIC_ORDER]
    lines = ["| model | " + " | ".join(cols) + " | fit s |", "|---" * (len(cols) + 2) + "|"]
    for r in results:
        vals = " | ".join(f"{r.metrics[m]:.3f}" for m in METRIC_ORDER)
        lines.append(f"| {r.model} | {vals} | {r.fit_seconds:.1f} |")
    return "\n".join(lines)


def grid_table(results: Sequence[EvalResult], k: int) -> str:
    """Every grid point with its validation metrics."""
    lines = [f"| rank | reg_param | alpha | HR@{k} | nDCG@{k} | MAP@{k} | fit s |", "|---" * 7 + "|"]
    for r in results:
        p = r.params
        lines.append(
            f"| {p['rank']} | {p['reg_param']} | {p['alpha']} | {r.metrics['hit_rate']:.3f} | "
            f"{r.metrics['ndcg']:.4f} | {r.metrics['map']:.4f} | {r.fit_seconds:.1f} |"
        )
    return "\n".join(lines)


def write_report(report: Mapping[str, Any], markdown: str, output: str) -> tuple[Path, Path]:
    """Writes ``output`` (JSON) and the Markdown table next to it (same name, ``.md``)."""
    out = Path(output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, sort_keys=False, default=str) + "\n")
    md = out.with_suffix(".md")
    md.write_text(markdown + "\n")
    return out, md
