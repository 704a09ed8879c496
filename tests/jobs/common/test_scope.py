"""Scoped candidate tables: the users table read at a version, the commit tag, and the blend's check."""

from __future__ import annotations

import pytest

from jobs.common import lake
from jobs.common.errors import JobError
from jobs.common.scope import check_scope, read_scope, written_scope

pytestmark = [pytest.mark.spark]

CANDS = "user_id string, product_ids array<string>, scores array<float>"


def test_read_scope_tags_the_users_table_with_its_version(spark, lake_root) -> None:
    path = str(lake_root / "rescored_users")
    lake.overwrite_version(spark.createDataFrame([("u1",), ("u2",), ("u1",)], "user_id string"), path)
    lake.overwrite_version(spark.createDataFrame([("u3",), ("u3",)], "user_id string"), path)
    scope = read_scope(spark, path)
    assert scope.tag == f"users:{path}@v1"
    assert sorted(r["user_id"] for r in scope.users.collect()) == ["u3"]


def test_read_scope_names_the_path_and_the_missing_column(spark, lake_root) -> None:
    missing = str(lake_root / "nothing")
    with pytest.raises(JobError, match=f"--users {missing}: no Delta table there"):
        read_scope(spark, missing)
    path = str(lake_root / "wrong")
    lake.overwrite_version(spark.createDataFrame([("u1", 1)], "customer string, n int"), path)
    with pytest.raises(JobError, match=r"no column 'user_id' \(it has customer, n\)"):
        read_scope(spark, path)


def test_written_scope_is_the_tag_of_the_last_write(spark, lake_root) -> None:
    path = str(lake_root / "cf_candidates")
    rows = spark.createDataFrame([("u1", ["p1"], [0.5])], CANDS)
    lake.overwrite_version(rows, path)
    assert written_scope(spark, path) is None
    lake.overwrite_version(rows, path, user_metadata="users:/lake/rescored_users@v4")
    assert written_scope(spark, path) == "users:/lake/rescored_users@v4"
    lake.overwrite_version(rows, path, user_metadata="a note of somebody else")
    assert written_scope(spark, path) is None


def test_check_scope_stops_a_blend_of_other_users(spark, lake_root) -> None:
    path = str(lake_root / "content_candidates")
    rows = spark.createDataFrame([("u1", ["p1"], [0.5])], CANDS)
    lake.overwrite_version(rows, path)
    # Every user's candidates: fine for any blend, and the written scope returned is None.
    assert check_scope(spark, path, table="content_candidates", job="content", scope=None) is None
    assert check_scope(spark, path, table="content_candidates", job="content", scope="users:/x@v1") is None
    lake.overwrite_version(rows, path, user_metadata="users:/x@v1")
    assert check_scope(spark, path, table="content_candidates", job="content", scope="users:/x@v1") == "users:/x@v1"
    message = (
        rf"content_candidates at {path} holds only the candidates of the users in /x@v1 .*"
        r"run `./spark-submit.sh content` to score every user"
    )
    with pytest.raises(JobError, match=message):
        check_scope(spark, path, table="content_candidates", job="content", scope=None)
    with pytest.raises(JobError, match=message):
        check_scope(spark, path, table="content_candidates", job="content", scope="users:/x@v2")
