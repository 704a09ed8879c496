#!/usr/bin/env bash
# Runs a batch job through spark-submit, shipping the project code and the Delta jars, so the same command
# works on local[*], spark://, yarn and k8s:// masters.
#
#   ./spark-submit.sh JOB [--conf-file F] [--master M] [job args]
#   ./spark-submit.sh --help          lists the jobs
#   ./spark-submit.sh JOB --help      a job's own arguments
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PY="$ROOT/.venv/bin/python"
[ -x "$PY" ] || { echo "error: $ROOT/.venv is missing: run 'make setup' first" >&2; exit 2; }
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export SPARK_HOME=${SPARK_HOME:-$("$PY" -c 'import os, pyspark; print(os.path.dirname(pyspark.__file__))')}
export PYSPARK_PYTHON=${PYSPARK_PYTHON:-$PY}
export SPARK_LOCAL_IP=${SPARK_LOCAL_IP:-127.0.0.1}

if [ $# -eq 0 ] || [[ "$1" == "-h" || "$1" == "--help" || "$1" == "help" ]]; then
  exec "$PY" "$ROOT/jobs/run.py" --help
fi

job=$1; shift
master=""; conf_file="$ROOT/conf/local.yaml"; args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --master) master=$2; shift 2 ;;
    --master=*) master=${1#*=}; shift ;;
    --conf-file) conf_file=$2; shift 2 ;;
    --conf-file=*) conf_file=${1#*=}; shift ;;
    -h|--help) exec "$PY" "$ROOT/jobs/run.py" "$job" --help ;;
    *) args+=("$1"); shift ;;
  esac
done

read -r cfg_master driver_memory < <("$PY" -m jobs.common.submit_settings --conf-file "$conf_file") \
  || { "$PY" -m jobs.common.submit_settings --conf-file "$conf_file"; exit 2; }
master=${master:-$cfg_master}

jars=$(ls "$ROOT"/.jars/*.jar 2>/dev/null | paste -sd, -)
[ -n "$jars" ] || { echo "error: no jars in $ROOT/.jars: run 'make setup' first" >&2; exit 2; }

# The project's packages as one zip for the executors, named by a hash of its contents and never rewritten, so
# jobs running side by side never read a zip another run is writing (jobs/common/source_zip.py).
src_zip=$("$PY" -m jobs.common.source_zip "$ROOT")

extra=()
if [[ "$master" == local* ]]; then
  # Local runs use the venv's interpreter; on a cluster set spark.pyspark.python in the config's spark.extra.
  extra+=(--conf "spark.pyspark.python=$PY" --conf "spark.pyspark.driver.python=$PY")
fi

exec "$SPARK_HOME/bin/spark-submit" \
  --master "$master" \
  --name "recsys-$job" \
  --driver-memory "$driver_memory" \
  --jars "$jars" \
  --py-files "$src_zip" \
  --driver-java-options "-Dlog4j.configurationFile=file:$ROOT/conf/log4j2.properties" \
  --conf "spark.ui.showConsoleProgress=false" \
  "${extra[@]}" \
  "$ROOT/jobs/run.py" "$job" --conf-file "$conf_file" "${args[@]}"
