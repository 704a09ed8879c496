"""Prints the spark-submit settings that must be known before the JVM starts (used by spark-submit.sh)."""

from __future__ import annotations

import argparse
import sys

from recsys.config import ConfigError, load_config


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--conf-file", default="conf/local.yaml")
    args = parser.parse_args()
    try:
        cfg = load_config(args.conf_file)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(cfg.spark.master, cfg.spark.driver_memory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
