"""Example Airflow DAG: the recommendation pipeline every night at 02:30 (off-peak), one task per stage.

Copy into the Airflow ``dags/`` folder and set ``RECSYS_HOME`` (the checkout) and ``RECSYS_CONF`` (the
environment config, e.g. conf/cluster.yaml) as Airflow Variables. One task per stage gives per-stage
retries and timings in the Airflow UI; ``./spark-submit.sh pipeline`` runs the same stages in one Spark
session and is what the cron example in docs/schedule.md uses.

The stages are safe to rerun: ingest MERGEs, the model jobs replace their tables, the load is idempotent.
``catchup=False``: a missed night is not replayed, the next run picks up every new interaction anyway
(incremental mode rescoring works from the watermark in the runs table, not from the schedule date).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from airflow import DAG
from airflow.models import Variable
from airflow.operators.bash import BashOperator

HOME = Variable.get("RECSYS_HOME", default_var="/opt/recsys")
CONF = Variable.get("RECSYS_CONF", default_var="conf/cluster.yaml")
SUBMIT = f"cd {HOME} && ./spark-submit.sh {{job}} --conf-file {CONF} {{args}}"

default_args = {
    "owner": "recsys",
    "retries": 2,
    "retry_delay": timedelta(minutes=10),
    "retry_exponential_backoff": True,
    "execution_timeout": timedelta(hours=3),
}

with DAG(
    dag_id="recsys_nightly",
    description="ingest -> als -> content -> blend -> load",
    schedule="30 2 * * *",
    start_date=datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["recsys"],
) as dag:
    # --new-files-only: each night reads the files it has not ingested yet (the ingested_files table), not the
    # whole history of the folder; a task that fails or quarantines too much records nothing, so a retry
    # reads the same files again.
    ingest_products = BashOperator(
        task_id="ingest_products",
        bash_command=SUBMIT.format(
            job="ingest", args="--table products --input {{ var.value.RECSYS_PRODUCTS }} --new-files-only"
        ),
    )
    ingest_events = BashOperator(
        task_id="ingest_events",
        bash_command=SUBMIT.format(
            job="ingest", args="--table interactions --input {{ var.value.RECSYS_EVENTS }} --new-files-only"
        ),
    )
    # The pipeline job decides between incremental and nothing-to-do from the watermark; its own ingest stage
    # is skipped because the two tasks above did it (it would find no new file anyway). Sunday nights run
    # it with --full: every user rescored with the new models (the other nights rescore changed users only,
    # and their candidate tables hold those users only, so a full rescore runs the als and content stages too).
    pipeline = BashOperator(
        task_id="models_blend_load",
        bash_command=SUBMIT.format(
            job="pipeline", args="--skip ingest {{ '--full' if logical_date.weekday() == 6 else '' }}"
        ),
    )

    ingest_products >> ingest_events >> pipeline
