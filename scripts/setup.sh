#!/usr/bin/env bash
# Idempotent install of everything the project needs: system packages, the venv, Python packages and the
# JVM jars Spark loads. Safe to rerun; each step skips itself when its work is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
say() { printf '[setup] %s\n' "$*"; }

# --- system packages (Debian): Redis, native BLAS for Spark MLlib, a JRE and Maven when missing ---------------
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-benchmark >/dev/null 2>&1 || need+=(redis-tools)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
dpkg -s libopenblas0-pthread >/dev/null 2>&1 || need+=(libopenblas0-pthread)
command -v java >/dev/null 2>&1 || need+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
command -v dot >/dev/null 2>&1 || need+=(graphviz)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  say "installing Debian packages: ${need[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q "${need[@]}"
fi

# --- Python venv and packages --------------------------------------------------------------------------------
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' \
  || { echo "[setup] Python 3.11 is required (found $("$PYTHON" --version))" >&2; exit 1; }
[ -x .venv/bin/python ] || { say "creating .venv"; "$PYTHON" -m venv .venv; }
stamp=.venv/.installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  say "installing Python packages (pip install -e .[dev])"
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -e '.[dev]'
  touch "$stamp"
fi

# --- JVM jars: Delta Lake from Maven Central, kept in .jars/ so Spark then runs offline ------------------------
if ! ls .jars/delta-spark_*.jar >/dev/null 2>&1 || [ conf/jars.pom.xml -nt .jars ]; then
  say "resolving JVM jars from Maven Central (conf/jars.pom.xml) into .jars/"
  rm -rf .jars
  mvn -q -B -f conf/jars.pom.xml dependency:copy-dependencies \
      -DexcludeTransitive=true -DincludeScope=runtime -DoutputDirectory="$PWD/.jars"
fi
say "ready: $(.venv/bin/python --version), pyspark $(.venv/bin/python -c 'import pyspark; print(pyspark.__version__)'), jars: $(ls .jars | tr '\n' ' ')"
