"""The ingest job end to end on tiny files: MERGE idempotence and updates, quarantine, counts, errors."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from chispa import assert_df_equality
from delta.tables import DeltaTable

from jobs.common import lake
from jobs.common.errors import JobError
from jobs.ingest import main as ingest
from recsys.config import Config, LakeConfig

pytestmark = pytest.mark.spark

EVENTS_CSV = """eid,customer,sku,event_type,quantity,ts,session_id
e1,u1,p1,view,1,2025-06-01T10:00:00Z,s1
e1,u1,p1,view,1,2025-06-01T10:00:00Z,s1
e2,u2,p2,purchase,3,2025-06-02 11:00:00,
e3,u3,p3,purchase,x,2025-06-02 11:00:00,
e4,u 4,p4,click,1,2025-06-02 11:00:00,
e5,u5,p5,view,,2025-06-03 09:00:00,
"""
MAPPING = "eid=event_id,customer=user_id,sku=product_id"
INTERACTIONS_DDL = (
    "event_id string, user_id string, product_id string, event_type string, quantity int, ts timestamp,"
    " session_id string, source string"
)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    ingest.add_arguments(parser)
    return parser.parse_args(["--skip-gx", *argv])


@pytest.fixture
def cfg(lake_root: Path):
    return Config(lake=LakeConfig(root=str(lake_root), user_buckets=4))


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def interactions(spark, cfg):
    return lake.read_table(spark, cfg.table_path("interactions")).select(*INTERACTIONS_DDL_COLS)


INTERACTIONS_DDL_COLS = [c.split()[0] for c in INTERACTIONS_DDL.split(", ")]


def test_csv_with_mapping_lands_accepted_rows_and_quarantines_the_rest(spark, cfg, tmp_path, capsys):
    path = write(tmp_path, "events.csv", EVENTS_CSV)

    code = ingest.run(parse("--table", "interactions", "--input", path, "--map", MAPPING), cfg, spark)

    out = capsys.readouterr().out
    assert code == 1  # 2 of 5 distinct rows quarantined > 5 %
    assert "the 3 accepted rows were written" in out
    expected = spark.createDataFrame(
        [
            ("e1", "u1", "p1", "view", 1, datetime(2025, 6, 1, 10), "s1", "bulk"),
            ("e2", "u2", "p2", "purchase", 3, datetime(2025, 6, 2, 11), None, "bulk"),
            ("e5", "u5", "p5", "view", 1, datetime(2025, 6, 3, 9), None, "bulk"),
        ],
        INTERACTIONS_DDL,
    )
    assert_df_equality(interactions(spark, cfg), expected, ignore_row_order=True, ignore_nullable=True)
    quarantine = lake.read_table(spark, cfg.table_path("quarantine")).select(
        "table", "rule", "source_file", "raw"
    )
    expected_q = spark.createDataFrame(
        [
            (
                "interactions",
                "quantity_unparseable",
                f"file:{path}",
                json.dumps(
                    {
                        "event_id": "e3",
                        "user_id": "u3",
                        "product_id": "p3",
                        "event_type": "purchase",
                        "quantity": "x",
                        "ts": "2025-06-02 11:00:00",
                    },
                    separators=(",", ":"),
                ),
            ),
            (
                "interactions",
                "user_id_charset",
                f"file:{path}",
                json.dumps(
                    {
                        "event_id": "e4",
                        "user_id": "u 4",
                        "product_id": "p4",
                        "event_type": "click",
                        "quantity": "1",
                        "ts": "2025-06-02 11:00:00",
                    },
                    separators=(",", ":"),
                ),
            ),
        ],
        "table string, rule string, source_file string, raw string",
    )
    assert_df_equality(quarantine, expected_q, ignore_row_order=True, ignore_nullable=True)


def test_counts_identity_and_printed_report(spark, cfg, tmp_path, capsys):
    path = write(tmp_path, "events.csv", EVENTS_CSV)
    todo, _ = ingest.batches(spark, cfg, parse("--table", "interactions", "--input", path, "--map", MAPPING))
    [batch] = todo
    assert [f.path for f in batch.files] == [f"file:{path}"] and batch.files[0].size == len(EVENTS_CSV)
    report = ingest.ingest_batch(
        spark,
        cfg,
        batch.rows,
        report=ingest.IngestReport(batch.table, batch.label),
        now=datetime.now(UTC),
        run_id="r1",
        source="bulk",
        use_gx=False,
    )
    assert (report.read, report.accepted, report.quarantined, report.exact_duplicates) == (6, 3, 2, 1)
    assert report.read == report.accepted + report.quarantined + report.exact_duplicates
    assert report.by_rule == {"quantity_unparseable": 1, "user_id_charset": 1}
    ingest.print_report(report)
    out = capsys.readouterr().out
    assert "read                         6" in out and "exact duplicates             1" in out


def test_rerun_changes_nothing_and_a_changed_row_updates(spark, cfg, tmp_path, capsys):
    first = write(
        tmp_path,
        "a.csv",
        "event_id,user_id,product_id,event_type,ts\n"
        "e1,u1,p1,view,2025-06-01 10:00:00\ne2,u2,p2,view,2025-06-01 11:00:00\n",
    )
    args = parse("--table", "interactions", "--input", first)
    assert ingest.run(args, cfg, spark) == 0
    table = DeltaTable.forPath(spark, cfg.table_path("interactions"))
    version = table.history(1).first()["version"]

    assert ingest.run(args, cfg, spark) == 0
    assert "(inserted 0, updated 0, unchanged 2)" in capsys.readouterr().out
    assert table.history(1).first()["operation"] == "MERGE"
    assert lake.read_table(spark, cfg.table_path("interactions")).count() == 2

    second = write(
        tmp_path,
        "b.csv",
        "event_id,user_id,product_id,event_type,ts\n"
        "e2,u2,p2,click,2025-06-01 11:00:00\ne3,u3,p3,view,2025-06-01 12:00:00\n",
    )
    assert ingest.run(parse("--table", "interactions", "--input", second), cfg, spark) == 0
    assert "(inserted 1, updated 1, unchanged 0)" in capsys.readouterr().out
    assert table.history(1).first()["version"] > version
    expected = spark.createDataFrame(
        [
            ("e1", "u1", "p1", "view", 1, datetime(2025, 6, 1, 10), None, "bulk"),
            ("e2", "u2", "p2", "click", 1, datetime(2025, 6, 1, 11), None, "bulk"),
            ("e3", "u3", "p3", "view", 1, datetime(2025, 6, 1, 12), None, "bulk"),
        ],
        INTERACTIONS_DDL,
    )
    assert_df_equality(interactions(spark, cfg), expected, ignore_row_order=True, ignore_nullable=True)


HEADER = "event_id,user_id,product_id,event_type,ts\n"


def recorded(spark, cfg) -> dict[str, tuple[int, str]]:
    """The ingested_files rows of interactions: file name -> (size, run id)."""
    rows = lake.read_table(spark, cfg.table_path(lake.INGESTED_FILES)).where("table = 'interactions'").collect()
    return {r["path"].rsplit("/", 1)[1]: (r["size"], r["run_id"]) for r in rows}


def run_ids(out: str) -> list[str]:
    return [line.split()[1].rstrip(";") for line in out.splitlines() if line.startswith("run ingest-")]


def test_new_files_only_reads_each_file_once_and_again_when_it_changes(spark, cfg, tmp_path, capsys):
    folder = tmp_path / "events"
    for day in ("day=1", "day=2"):
        (folder / day).mkdir(parents=True)
    part0 = folder / "day=1" / "part-0.csv"
    part0.write_text(HEADER + "e1,u1,p1,view,2025-06-01 10:00:00\ne2,u2,p2,view,2025-06-01 11:00:00\n")
    args = parse("--table", "interactions", "--input", str(folder), "--new-files-only")
    assert ingest.run(args, cfg, spark) == 0
    first = capsys.readouterr().out
    assert "read                         2" in first
    assert recorded(spark, cfg) == {"part-0.csv": (part0.stat().st_size, run_ids(first)[0])}

    # A new file, in another partition folder: only its row is read.
    (folder / "day=2" / "part-1.csv").write_text(HEADER + "e3,u3,p3,view,2025-06-02 10:00:00\n")
    assert ingest.run(args, cfg, spark) == 0
    assert "read                         1" in capsys.readouterr().out
    assert sorted(recorded(spark, cfg)) == ["part-0.csv", "part-1.csv"]
    assert sorted(r["event_id"] for r in interactions(spark, cfg).collect()) == ["e1", "e2", "e3"]

    # Nothing new: nothing read, no table gets a new version.
    tables = {name: DeltaTable.forPath(spark, cfg.table_path(name)) for name in ("interactions", "ingested_files")}
    before = {name: t.history(1).first()["version"] for name, t in tables.items()}
    assert ingest.run(args, cfg, spark) == 0
    assert "no new files (2 files, each ingested before" in capsys.readouterr().out
    assert {name: t.history(1).first()["version"] for name, t in tables.items()} == before

    # A rewritten file is read again: e1 becomes a click.
    part0.write_text(HEADER + "e1,u1,p1,click,2025-06-01 10:00:00\ne2,u2,p2,view,2025-06-01 11:00:00\n")
    assert ingest.run(args, cfg, spark) == 0
    assert "read                         2" in capsys.readouterr().out
    assert recorded(spark, cfg)["part-0.csv"][0] == part0.stat().st_size
    types = {r["event_id"]: r["event_type"] for r in interactions(spark, cfg).collect()}
    assert types == {"e1": "click", "e2": "view", "e3": "view"}

    # Without the option every file is read; the record, already complete, is not rewritten.
    version = tables["ingested_files"].history(1).first()["version"]
    assert ingest.run(parse("--table", "interactions", "--input", str(folder)), cfg, spark) == 0
    assert "read                         3" in capsys.readouterr().out
    assert tables["ingested_files"].history(1).first()["version"] == version


def test_a_batch_over_the_quarantine_share_leaves_its_files_unrecorded(spark, cfg, tmp_path, capsys):
    folder = tmp_path / "events"
    folder.mkdir()
    (folder / "bad.csv").write_text(HEADER + "e1,u1,p1,view,2025-06-01 10:00:00\ne2,u 2,p2,view,2025-06-01\n")
    args = parse("--table", "interactions", "--input", str(folder), "--new-files-only")
    assert ingest.run(args, cfg, spark) == 1
    assert "--new-files-only reads them again" in capsys.readouterr().out
    assert not lake.table_exists(spark, cfg.table_path(lake.INGESTED_FILES))
    assert ingest.run(args, cfg, spark) == 1  # read again, not skipped
    assert "read                         2" in capsys.readouterr().out


def test_tables_have_their_schema_and_partitions(spark, cfg, tmp_path):
    events = write(
        tmp_path,
        "e.json",
        json.dumps(
            {"event_id": "e1", "user_id": "u1", "product_id": "p1", "event_type": "view", "ts": "2025-06-01"}
        )
        + "\n",
    )
    products = write(
        tmp_path, "p.jsonl", json.dumps({"product_id": "p1", "title": "Mug", "price": 2.5}) + "\n"
    )
    assert ingest.run(parse("--table", "interactions", "--input", events), cfg, spark) == 0
    assert ingest.run(parse("--table", "products", "--input", products), cfg, spark) == 0
    for name in ("interactions", "products"):
        detail = DeltaTable.forPath(spark, cfg.table_path(name)).detail().first()
        assert list(detail["partitionColumns"]) == list(lake.TABLES[name].partition_by)
        schema = lake.read_table(spark, cfg.table_path(name)).schema
        assert [(f.name, f.dataType) for f in schema] == [
            (f.name, f.dataType) for f in lake.TABLES[name].schema
        ]
    got = lake.read_table(spark, cfg.table_path("products")).drop("updated_at")
    expected = spark.createDataFrame(
        [("p1", "Mug", "unknown", None, 2.5, True)],
        "product_id string, title string, category string, brand string, price double, available boolean",
    )
    assert_df_equality(got, expected, ignore_nullable=True)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--input", "x.csv"], "--table is required"),
        (["--table", "products"], "--input is required"),
        (["--table", "products", "--input", "{dir}/missing.csv"], "no such file"),
        (["--table", "products", "--input", "{dir}/p.txt"], "cannot infer one format"),
        (["--table", "products", "--input", "{dir}/p.csv", "--map", "sku"], "expected theirs=ours"),
        (
            ["--table", "products", "--input", "{dir}/p.csv", "--map", "sku=sku_id"],
            "'sku_id' is not a column",
        ),
        (
            ["--table", "products", "--input", "{dir}/p.csv", "--map", "nope=product_id"],
            "'nope', which is not in",
        ),
        (
            ["--table", "products", "--input", "{dir}/p.csv"],
            "required column 'product_id' of products is missing",
        ),
        (["--table", "products", "--input", "{dir}/p.csv", "--max-quarantine-share", "2"], "between 0 and 1"),
        (["--preset", "online-retail", "--input", "{dir}/none.csv.gz"], "input file not found"),
        (["--preset", "online-retail", "--new-files-only"], "--new-files-only does not apply to --preset"),
    ],
)
def test_config_errors_name_the_argument_file_or_column(spark, cfg, tmp_path, argv, message):
    write(tmp_path, "p.csv", "sku,title\np1,Mug\n")
    write(tmp_path, "p.txt", "sku,title\n")
    args = parse(*[a.format(dir=tmp_path) for a in argv])
    with pytest.raises(JobError, match=message) as err:
        ingest.run(args, cfg, spark)
    if "{dir}/p.csv" in argv and "required" in message:
        assert str(tmp_path / "p.csv") in str(err.value)


def test_an_unreadable_parquet_file_is_named_with_its_column_and_writes_nothing(spark, cfg, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "events"
    folder.mkdir()
    rows = pa.table(
        {
            "event_id": ["e1"],
            "user_id": ["u1"],
            "product_id": ["p1"],
            "event_type": ["view"],
            "ts": pa.array([datetime(2025, 6, 1, 10)], pa.timestamp("ns")),
        }
    )
    # The schema comes from part-0's footer; the nanosecond timestamps of part-1 (as pandas and pyarrow may
    # write them) fail only when the rows are read.
    pq.write_table(rows, folder / "part-0.parquet", coerce_timestamps="us")
    pq.write_table(rows, folder / "part-1-nanos.parquet", version="2.6")
    args = parse("--table", "interactions", "--input", str(folder))
    message = (
        rf"--input {folder}: cannot read file:\S*/part-1-nanos\.parquet: Data type mismatches when reading "
        r"Parquet column \[ts\]\. .*coerce_timestamps='us'"
    )
    with pytest.raises(JobError, match=message):
        ingest.run(args, cfg, spark)
    assert not lake.table_exists(spark, cfg.table_path("interactions"))
    assert not lake.table_exists(spark, cfg.table_path("quarantine"))
    # A folder of such files alone fails at the schema, with the same advice.
    (folder / "part-0.parquet").unlink()
    with pytest.raises(JobError, match=r"cannot read as parquet: .*TIMESTAMP\(NANOS.*coerce_timestamps='us'"):
        ingest.run(args, cfg, spark)


def _hash_shuffles(df) -> int:
    return df._jdf.queryExecution().executedPlan().toString().count("Exchange hashpartitioning")


@pytest.mark.parametrize("id_type", ["string", "int"])
def test_tag_batch_collapses_copies_and_flags_reused_ids_after_one_shuffle_on_text_ids(spark, id_type):
    rows = [
        (1, "u1", "p1", "view", "2025-06-01T10:00:00Z"),
        (1, "u1", "p1", "view", "2025-06-01T10:00:00Z"),  # an exact copy: collapsed, not flagged
        (2, "u2", "p2", "view", "2025-06-01T10:00:00Z"),
        (2, "u2", "p2", "click", "2025-06-01T10:00:00Z"),  # the same id, another event: both flagged
        (3, "u3", "p3", "view", "2025-06-01T10:00:00Z"),
    ]
    df = spark.createDataFrame(
        [(i if id_type == "int" else f"{i}", *r) for i, *r in rows],
        f"event_id {id_type}, user_id string, product_id string, event_type string, ts string",
    ).repartition(3)
    rules = ingest.rules_for("interactions", now=datetime(2025, 6, 2, tzinfo=UTC), max_age_days=3650)
    tagged = ingest.tag_batch(df, table="interactions", rules=rules, source="bulk", derive_event_id=False)
    got = sorted(
        (r["event_id"], r["event_type"], r["_copies"], list(r["_failed_rules"]))
        for r in tagged.select("event_id", "event_type", "_copies", "_failed_rules").collect()
    )
    assert got == [
        ("1", "view", 2, []),
        ("2", "click", 1, ["duplicate_event_id"]),
        ("2", "view", 1, ["duplicate_event_id"]),
        ("3", "view", 1, []),
    ]
    # Text ids: the collapse and the id count share one shuffle by the id; other types parse through a cast.
    assert _hash_shuffles(tagged) == (1 if id_type == "string" else 2)


def test_tag_batch_with_derived_ids_collapses_copies_into_one_id(spark):
    df = spark.createDataFrame(
        [("u1", "p1", "view", "2025-06-01")] * 3 + [("u1", "p1", "click", "2025-06-01")],
        "user_id string, product_id string, event_type string, ts string",
    ).repartition(2)
    rules = ingest.rules_for("interactions", now=datetime(2025, 6, 2, tzinfo=UTC), max_age_days=3650)
    tagged = ingest.tag_batch(df, table="interactions", rules=rules, source="bulk", derive_event_id=True)
    got = sorted((r["event_type"], r["_copies"], list(r["_failed_rules"])) for r in tagged.collect())
    assert got == [("click", 1, []), ("view", 3, [])]
    assert tagged.select("event_id").distinct().count() == 2
