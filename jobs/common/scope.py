"""Candidate tables scoped to a set of users: how an incremental pipeline run scores only the changed users.

An incremental pipeline run writes the users it rescores to the ``rescored_users`` table and passes its path
to the als and content jobs (``--users PATH``). They then write candidates for those users only, and tag the
Delta commit of the candidate table with the scope ``users:<path>@v<version>`` (the commit's
``userMetadata``). The blend reads a candidate table only when it holds every user (no tag) or the tag is the
scope of its own users, so a blend of everyone never reads the candidates of a few; it stops with a message
naming the table and the job to run instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from delta.tables import DeltaTable
from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from jobs.common import lake
from jobs.common.errors import JobError
from recsys import schema as S

PREFIX = "users:"
# Commits read back to find the one that wrote the table's rows (a later OPTIMIZE commit carries no tag).
HISTORY_DEPTH = 20


@dataclass(frozen=True)
class Scope:
    """The users of a scoped run and the tag of the candidate tables written for them.

    Attributes:
        users: Distinct ``user_id`` rows, read at the version in ``tag``.
        tag: ``users:<path>@v<version>``.
    """

    users: DataFrame
    tag: str


def read_scope(spark: SparkSession, path: str) -> Scope:
    """The users table at ``path`` (a Delta table with a ``user_id`` column) at its current version.

    Raises:
        JobError: No Delta table at ``path``, or no ``user_id`` column in it.

    Example:
        >>> scope = read_scope(spark, cfg.table_path(lake.RESCORED_USERS))
    """
    if not lake.table_exists(spark, path):
        raise JobError(f"--users {path}: no Delta table there (it needs a {S.COL_USER} column)")
    version = lake.latest_version(spark, path)
    users = lake.read_table(spark, path, version=version)
    if S.COL_USER not in users.columns:
        raise JobError(f"--users {path}: the table has no column {S.COL_USER!r} (it has {', '.join(users.columns)})")
    return Scope(users.select(S.COL_USER).distinct(), f"{PREFIX}{path}@v{version}")


def written_scope(spark: SparkSession, path: str) -> str | None:
    """The scope tag of the commit that wrote the current rows of the table at ``path``; None: every user."""
    row = (
        DeltaTable.forPath(spark, path)
        .history(HISTORY_DEPTH)
        .where(F.col("operation") == "WRITE")  # lake.overwrite_version, new table or not
        .orderBy(F.col("version").desc())
        .select("userMetadata")
        .first()
    )
    meta = None if row is None else row["userMetadata"]
    return meta if meta and meta.startswith(PREFIX) else None


def check_scope(spark: SparkSession, path: str, *, table: str, job: str, scope: str | None) -> str | None:
    """Stops when the candidate table at ``path`` holds the candidates of other users than ``scope``'s.

    Args:
        spark: The session.
        path: The candidate table.
        table: Its name, for the message.
        job: The job that writes it for every user (``als`` or ``content``).
        scope: The tag of the users being scored, None when they are not a scoped set (a full blend).

    Returns:
        The table's :func:`written_scope`: ``scope``, or None when it was written for every user.

    Raises:
        JobError: The table was written for a scope other than ``scope``.
    """
    written = written_scope(spark, path)
    if written is not None and written != scope:
        raise JobError(
            f"{table} at {path} holds only the candidates of the users in {written[len(PREFIX):]} (an "
            f"incremental pipeline run wrote it); run `./spark-submit.sh {job}` to score every user, or the "
            f"pipeline without --skip {job}, before this blend"
        )
    return written
