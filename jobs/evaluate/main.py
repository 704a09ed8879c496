"""``./spark-submit.sh evaluate``: offline evaluation of the models and baselines on one split protocol."""

from __future__ import annotations

import argparse
import json
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.common import lake
from jobs.common.errors import JobError
from jobs.evaluate import harness as H
from jobs.evaluate import protocols as P
from jobs.evaluate.models import FAMILIES, MODELS, resolve
from recsys import schema as S
from recsys.config import Config

DESCRIPTION = "offline evaluation: split protocols, ranking metrics, baselines beside ALS, an ALS grid"
log = logging.getLogger(__name__)
# Under spark-submit this file is read from build/recsys-src-<hash>.zip: the root is the first folder with conf/.
PROJECT_ROOT = next(
    (p for p in Path(__file__).resolve().parents if (p / "conf" / "base.yaml").is_file()), Path.cwd()
)
PRESETS = {
    "online-retail": PROJECT_ROOT.parent / "shared" / "datasets" / "online-retail" / "online_retail.csv.gz"
}
EVENT_COLUMNS = (S.COL_USER, S.COL_ITEM, S.COL_EVENT_TYPE, S.COL_QUANTITY, S.COL_TS)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    src = parser.add_argument_group("data source (one of)")
    src.add_argument("--preset", choices=sorted(PRESETS), help="a public data set read from its raw file")
    src.add_argument("--input", help="the preset's raw file (default: ../shared/datasets/...)")
    src.add_argument(
        "--lake",
        help="a lake folder with Delta tables interactions and products "
        "(default when no other source is given: lake.root of the config)",
    )
    src.add_argument("--events", help="raw events (parquet folder) in the ingest input schema")
    src.add_argument("--products", help="raw products (parquet folder), with --events")
    parser.add_argument("--protocol", choices=P.PROTOCOLS, default="temporal")
    parser.add_argument("--split-date", help="temporal protocol: first day of the test period (ISO date)")
    parser.add_argument("--ratio", type=float, default=0.75, help="stratified protocol: training share")
    parser.add_argument("--seed", type=int, default=42, help="stratified protocol: split seed")
    parser.add_argument("--k", type=int, default=10, help="cut-off of the ranking metrics")
    parser.add_argument(
        "--models",
        default="popularity,popularity-recent,itemknn,als,als-weighted",
        help=(
            f"comma-separated, any of: {', '.join(MODELS)}; or a parametrised name such as "
            + ", ".join(f"{f}:<spec>" for f in FAMILIES)
            + " (e.g. hybrid:cf1-knn0.5-ct0.3-pop0.1-cap5, als-foldin:7; see docs/evaluation.md)"
        ),
    )
    parser.add_argument(
        "--grid",
        action="store_true",
        help="tune ALS rank/reg_param/alpha on a validation split of the training side first",
    )
    parser.add_argument("--grid-rank", default=",".join(map(str, H.GRID_RANK)), help="grid ranks")
    parser.add_argument("--grid-reg", default=",".join(map(str, H.GRID_REG)), help="grid regParam values")
    parser.add_argument("--grid-alpha", default=",".join(map(str, H.GRID_ALPHA)), help="grid alpha values")
    parser.add_argument("--grid-output", help="chosen grid values (JSON); default: <output>.chosen.json")
    parser.add_argument("--output", default="report.json", help="JSON report; a .md table is written beside")


def load_source(
    args: argparse.Namespace, cfg: Config, spark: SparkSession
) -> tuple[DataFrame, DataFrame | None, str]:
    """``(events, products, label)`` from the preset, raw parquet files or a lake."""
    if args.preset:
        path = Path(args.input) if args.input else PRESETS[args.preset]
        if not path.is_file():
            raise JobError(f"--input {path}: file not found")
        from jobs.ingest.presets import online_retail

        products, events = online_retail(spark, str(path))
        label = f"{args.preset} ({path.name})"
    elif args.events:
        events = spark.read.parquet(args.events)
        products = spark.read.parquet(args.products) if args.products else None
        label = f"raw events {args.events}"
    else:
        root = args.lake or cfg.lake.root
        base = str(Path(root).absolute()) if "://" not in root else root
        ipath, ppath = f"{base}/{lake.INTERACTIONS}", f"{base}/{lake.PRODUCTS}"
        if not lake.table_exists(spark, ipath):
            raise JobError(f"--lake {root}: no Delta table {lake.INTERACTIONS} there (ingest first)")
        events = lake.read_table(spark, ipath)
        products = lake.read_table(spark, ppath) if lake.table_exists(spark, ppath) else None
        label = f"lake {root}"
    missing = [c for c in EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise JobError(f"events of {label} lack columns {', '.join(missing)}")
    events = events.select(*EVENT_COLUMNS).where(F.col(S.COL_USER).isNotNull() & F.col(S.COL_TS).isNotNull())
    return events, products, label


def _spec(args: argparse.Namespace) -> H.SplitSpec:
    split_time = None
    if args.split_date:
        try:
            split_time = datetime.fromisoformat(args.split_date)
        except ValueError as exc:
            raise JobError(f"--split-date {args.split_date!r} is not an ISO date") from exc
    if args.protocol == "temporal" and split_time is None:
        raise JobError("--protocol temporal needs --split-date")
    return H.SplitSpec(args.protocol, split_time, args.ratio, args.seed)


def run(args: argparse.Namespace, cfg: Config, spark: SparkSession) -> int:
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    for m in names:
        try:
            resolve(m)
        except ValueError as exc:
            raise JobError(f"--models: {exc}") from exc
    if args.k <= 0:
        raise JobError(f"--k must be positive, got {args.k}")
    spark.sparkContext.setCheckpointDir(cfg.lake.checkpoint_dir)
    spec = _spec(args)
    events, products, label = load_source(args, cfg, spark)
    events = events.cache()
    split = H.make_split(events, spec)
    split = P.Split(split.train.cache(), split.test.cache(), split.split_time)
    stats = H.split_stats(split)
    print(f"{label}, {spec.protocol} split: {json.dumps(stats)}", flush=True)
    if stats["eval_users"] == 0:
        raise JobError("the split leaves no user to evaluate (check --split-date / --protocol)")
    report: dict[str, Any] = {
        "source": label,
        "protocol": spec.protocol,
        "k": args.k,
        "split": stats,
        "config": {"als": vars_of(cfg.als), "events_half_life_days": cfg.events.half_life_days},
    }
    als_params: dict[str, Any] = {}
    grid_md = ""
    if args.grid:
        try:
            ranks = [int(v) for v in args.grid_rank.split(",")]
            regs = [float(v) for v in args.grid_reg.split(",")]
            alphas = [float(v) for v in args.grid_alpha.split(",")]
        except ValueError as exc:
            raise JobError(f"--grid-rank/--grid-reg/--grid-alpha: {exc}") from exc
        results, chosen = H.run_grid(
            split.train, products, spec, cfg=cfg, k=args.k, ranks=ranks, regs=regs, alphas=alphas
        )
        als_params = {k: chosen[k] for k in ("rank", "reg_param", "alpha")}
        grid_path = Path(args.grid_output or Path(args.output).with_suffix(".chosen.json"))
        grid_path.write_text(json.dumps(chosen, indent=2) + "\n")
        print(
            f"grid: chose {als_params} (validation nDCG@{args.k} {chosen['validation']['ndcg']:.4f}) "
            f"-> {grid_path}"
        )
        report["grid"] = {
            "points": [{**r.params, **r.metrics, "fit_seconds": r.fit_seconds} for r in results],
            "chosen": chosen,
        }
        grid_md = (
            f"\n\nALS grid on the validation split ({chosen['validation']['split_time']}):\n\n"
            + H.grid_table(results, args.k)
        )
    results = []
    for name in names:
        params = als_params if name.startswith("als") else {}
        res = H.evaluate_model(
            name, split, products, cfg=cfg, k=args.k, n_catalogue=stats["train_items"], params=params
        )
        print(
            f"{name:<18} "
            + " ".join(f"{m}={v:.4f}" for m, v in res.metrics.items())
            + f" fit={res.fit_seconds}s",
            flush=True,
        )
        results.append(res)
    report["models"] = {
        r.model: {**r.metrics, "fit_seconds": r.fit_seconds, "params": r.params} for r in results
    }
    title = (
        f"{label}, protocol {spec.protocol}"
        + (f" at {spec.split_time:%Y-%m-%d}" if spec.split_time else "")
        + f", k={args.k}: {stats['eval_users']:,} evaluated users, {stats['test_pairs']:,} test pairs "
        f"({stats['test_pairs_unseen_items']:,} on products absent from training)"
    )
    md = f"{title}\n\n{H.markdown_table(results, args.k)}{grid_md}"
    out, md_path = H.write_report(report, md, args.output)
    print(md)
    print(f"report: {out} and {md_path}")
    return 0


def vars_of(obj: Any) -> dict[str, Any]:
    import dataclasses

    return dataclasses.asdict(obj)
