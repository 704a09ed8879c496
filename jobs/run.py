"""Entry point of every batch job: ``spark-submit jobs/run.py JOB [--conf-file F] [job args]``.

Each job module exposes ``DESCRIPTION`` (one line), ``add_arguments(parser)`` and
``run(args, cfg, spark) -> int``. This file parses the common arguments, loads the configuration once,
builds the SparkSession and hands both to the job. ``--help`` never starts Spark.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from types import ModuleType

# Job name -> module. Order is the order of `./spark-submit.sh --help`.
JOBS: dict[str, str] = {
    "generate": "jobs.generate.main",
    "ingest": "jobs.ingest.main",
    "summary": "jobs.summary.main",
    "optimize": "jobs.optimize.main",
    "als": "jobs.als.main",
    "content": "jobs.content.main",
    "evaluate": "jobs.evaluate.main",
    "blend": "jobs.blend.main",
    "load": "jobs.load.main",
    "pipeline": "jobs.pipeline.main",
    "stream-ingest": "jobs.stream_ingest.main",
}

log = logging.getLogger("recsys.run")


def available_jobs() -> dict[str, ModuleType]:
    """The jobs whose module exists in this checkout, imported."""
    found = {}
    for name, module in JOBS.items():
        try:
            found[name] = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name is None or not module.startswith(exc.name):
                raise
    return found


def usage(jobs: dict[str, ModuleType]) -> str:
    lines = ["usage: ./spark-submit.sh JOB [--conf-file F] [--master M] [job args]", "", "jobs:"]
    lines += [f"  {name:<14} {mod.DESCRIPTION}" for name, mod in jobs.items()]
    lines += ["", "Run `./spark-submit.sh JOB --help` for a job's own arguments."]
    return "\n".join(lines)


def build_parser(name: str, job: ModuleType) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"./spark-submit.sh {name}", description=job.DESCRIPTION)
    parser.add_argument(
        "--conf-file", default="conf/local.yaml", help="environment config overlaying conf/base.yaml"
    )
    job.add_arguments(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    from jobs.common.progress import setup_logging

    argv = list(sys.argv[1:] if argv is None else argv)
    jobs = available_jobs()
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(jobs))
        return 0
    name, rest = argv[0], argv[1:]
    if name not in jobs:
        print(f"unknown job {name!r}\n\n{usage(jobs)}", file=sys.stderr)
        return 2
    args = build_parser(name, jobs[name]).parse_args(rest)
    setup_logging()

    from jobs.common.errors import JobError
    from jobs.common.spark import build_spark
    from recsys.config import ConfigError, load_config

    try:
        cfg = load_config(args.conf_file)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    spark = build_spark(cfg.spark, f"{cfg.spark.app_name}-{name}")
    try:
        return int(jobs[name].run(args, cfg, spark) or 0)
    except JobError as exc:
        log.error("%s failed: %s", name, exc)
        return 1
    finally:
        spark.stop()


if __name__ == "__main__":
    sys.exit(main())
