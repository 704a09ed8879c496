"""Data-quality rules of the lake, defined once and used twice.

Each :class:`Rule` becomes both a great-expectations expectation (the suite validated against the batch,
which gates and reports the ingest) and a Spark column expression that names the rule on every row breaking
it (the row-level quarantine, computed in Spark so it scales with the data rather than with what GE
collects). The bounds come from :mod:`recsys.schema`, the same constants the API's ``validate_event`` uses.

A rule passes on a null value unless it is a ``not_null`` rule, as in great-expectations, so a missing
value is reported once, under ``<column>_missing``, and an unparseable one once, under
``<column>_unparseable``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pyspark.sql import Column, DataFrame, Window
from pyspark.sql import functions as F

from recsys import schema as S

log = logging.getLogger(__name__)

RAW_PREFIX = "_raw_"
RULES_COL = "_failed_rules"
MAX_PRICE = 1e9
KINDS = ("not_null", "parses", "length", "regex", "in_set", "between", "unique")


@dataclass(frozen=True)
class Rule:
    """One data-quality rule on one column.

    Attributes:
        name: Reported in the quarantine's ``rule`` column and the job's counts.
        column: The (parsed) column checked.
        kind: One of :data:`KINDS`.
        params: ``min``/``max`` for ``length`` and ``between``, ``pattern`` for ``regex``, ``values`` for
            ``in_set``.
    """

    name: str
    column: str
    kind: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"rule {self.name}: kind must be one of {', '.join(KINDS)}, got {self.kind!r}")


def raw_col(column: str) -> str:
    """Name under which the batch keeps the input value of ``column`` as it was read."""
    return RAW_PREFIX + column


def _id_rules(column: str, *, required: bool) -> list[Rule]:
    rules = [Rule(f"{column}_missing", column, "not_null")] if required else []
    return rules + [
        Rule(f"{column}_length", column, "length", {"min": 1, "max": S.ID_MAX_LEN}),
        Rule(f"{column}_charset", column, "regex", {"pattern": S.ID_PATTERN}),
    ]


def interaction_rules(*, now: datetime, max_age_days: int) -> list[Rule]:
    """The rules of the interactions table, with the time window ending ``now``.

    Args:
        now: Reference time (timezone-aware UTC) for the future and too-old bounds.
        max_age_days: Events older than this many days break ``ts_range``.

    Example:
        >>> [r.name for r in interaction_rules(now=datetime.now(UTC), max_age_days=3650)][:3]
        ['event_id_missing', 'event_id_length', 'event_id_charset']
    """
    return [
        *_id_rules(S.COL_EVENT_ID, required=True),
        Rule("duplicate_event_id", S.COL_EVENT_ID, "unique"),
        *_id_rules(S.COL_USER, required=True),
        *_id_rules(S.COL_ITEM, required=True),
        Rule("event_type_missing", S.COL_EVENT_TYPE, "not_null"),
        Rule("event_type_unknown", S.COL_EVENT_TYPE, "in_set", {"values": list(S.EVENT_TYPES)}),
        Rule("quantity_unparseable", S.COL_QUANTITY, "parses"),
        Rule("quantity_range", S.COL_QUANTITY, "between", {"min": 1, "max": S.MAX_QUANTITY}),
        # Checked on the input value, so an unparseable ts is reported once, as unparseable.
        Rule("ts_missing", raw_col(S.COL_TS), "not_null"),
        Rule("ts_unparseable", S.COL_TS, "parses"),
        Rule(
            "ts_range",
            S.COL_TS,
            "between",
            {"min": now - timedelta(days=max_age_days), "max": now + S.MAX_FUTURE_SKEW},
        ),
        *_id_rules(S.COL_SESSION, required=False),
        Rule("source_length", S.COL_SOURCE, "length", {"min": 1, "max": S.TEXT_MAX_LEN}),
    ]


def product_rules() -> list[Rule]:
    """The rules of the products table.

    Example:
        >>> product_rules()[0].name
        'product_id_missing'
    """
    return [
        *_id_rules(S.COL_ITEM, required=True),
        Rule("duplicate_product_id", S.COL_ITEM, "unique"),
        Rule("title_length", S.COL_TITLE, "length", {"min": 1, "max": S.TITLE_MAX_LEN}),
        Rule("category_length", S.COL_CATEGORY, "length", {"min": 1, "max": S.TEXT_MAX_LEN}),
        Rule("brand_length", S.COL_BRAND, "length", {"min": 1, "max": S.TEXT_MAX_LEN}),
        Rule("price_unparseable", S.COL_PRICE, "parses"),
        Rule("price_range", S.COL_PRICE, "between", {"min": 0.0, "max": MAX_PRICE}),
        Rule("available_unparseable", S.COL_AVAILABLE, "parses"),
    ]


# --- Spark: the row-level tags ------------------------------------------------------------------------


def _dup_count_col(column: str) -> str:
    return f"_n_{column}"


def failure(rule: Rule) -> Column:
    """True on the rows that break ``rule`` (never null).

    Example:
        >>> df.where(failure(Rule("q", "quantity", "between", {"min": 1, "max": 9})))
    """
    c = F.col(rule.column)
    p = rule.params
    if rule.kind == "not_null":
        cond = c.isNull()
    elif rule.kind == "parses":
        cond = F.col(raw_col(rule.column)).isNotNull() & c.isNull()
    elif rule.kind == "length":
        n = F.length(c)
        cond = (n < p["min"]) | (n > p["max"])
    elif rule.kind == "regex":
        cond = ~c.rlike(p["pattern"])
    elif rule.kind == "in_set":
        cond = ~c.isin(list(p["values"]))
    elif rule.kind == "between":
        cond = ~c.between(F.lit(p["min"]), F.lit(p["max"]))
    else:  # unique: the window count is added by tag_failures
        cond = c.isNotNull() & (F.col(_dup_count_col(rule.column)) > 1)
    return F.coalesce(cond, F.lit(False))


def tag_failures(df: DataFrame, *, rules: Sequence[Rule]) -> DataFrame:
    """Adds :data:`RULES_COL`: the names of the rules each row breaks (empty when it passes all).

    Args:
        df: The parsed batch (``parses`` rules also read the ``_raw_<column>`` input values).
        rules: The table's rules.

    Example:
        >>> tag_failures(batch, rules=product_rules()).where(F.size("_failed_rules") > 0)
    """
    unique_cols = sorted({r.column for r in rules if r.kind == "unique"})
    for column in unique_cols:
        df = df.withColumn(_dup_count_col(column), F.count(F.lit(1)).over(Window.partitionBy(column)))
    tags = F.array_compact(F.array(*[F.when(failure(r), F.lit(r.name)) for r in rules]))
    return df.withColumn(RULES_COL, tags).drop(*[_dup_count_col(c) for c in unique_cols])


# --- great-expectations: the suite ---------------------------------------------------------------------


def _gx() -> Any:
    # great-expectations takes seconds to import: only the ingest pays for it, and only when it validates.
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx

    return gx


def expectation(rule: Rule) -> Any:
    """The great-expectations expectation equivalent to ``rule``; its ``meta`` carries the rule name."""
    gx = _gx()
    from great_expectations.expectations.row_conditions import Column as GxColumn

    ex = gx.expectations
    p = rule.params
    meta = {"rule": rule.name}
    col = rule.column
    if rule.kind == "not_null":
        return ex.ExpectColumnValuesToNotBeNull(column=col, meta=meta)
    if rule.kind == "parses":
        return ex.ExpectColumnValuesToNotBeNull(
            column=col, row_condition=GxColumn(raw_col(col)).is_not_null(), meta=meta
        )
    if rule.kind == "length":
        return ex.ExpectColumnValueLengthsToBeBetween(
            column=col, min_value=p["min"], max_value=p["max"], meta=meta
        )
    if rule.kind == "regex":
        return ex.ExpectColumnValuesToMatchRegex(column=col, regex=p["pattern"], meta=meta)
    if rule.kind == "in_set":
        return ex.ExpectColumnValuesToBeInSet(column=col, value_set=list(p["values"]), meta=meta)
    if rule.kind == "between":
        return ex.ExpectColumnValuesToBeBetween(column=col, min_value=p["min"], max_value=p["max"], meta=meta)
    return ex.ExpectColumnValuesToBeUnique(column=col, meta=meta)


def build_suite(name: str, rules: Sequence[Rule]) -> Any:
    """An ``ExpectationSuite`` named ``name`` with one expectation per rule.

    Example:
        >>> len(build_suite("products", product_rules()).expectations) == len(product_rules())
        True
    """
    gx = _gx()
    suite = gx.ExpectationSuite(name=name)
    for rule in rules:
        suite.add_expectation(expectation(rule))
    return suite


@dataclass(frozen=True)
class SuiteResult:
    """What great-expectations found: overall success and the unexpected-row count of each rule."""

    success: bool
    unexpected: dict[str, int]
    evaluated: int


def validate(df: DataFrame, *, name: str, rules: Sequence[Rule]) -> SuiteResult:
    """Validates the Spark DataFrame ``df`` against the suite of ``rules`` in an ephemeral GX context.

    Args:
        df: The parsed batch (the columns the rules name, and ``_raw_<column>`` for ``parses`` rules).
        name: Name of the suite and the data asset.
        rules: The rules to validate.

    Returns:
        The suite's success and the unexpected count per rule name.

    Example:
        >>> validate(batch, name="products", rules=product_rules()).success
        True
    """
    gx = _gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    context = gx.get_context(mode="ephemeral", project_config=config)
    source = context.data_sources.add_spark(name="lake")
    batch_def = source.add_dataframe_asset(name=name).add_batch_definition_whole_dataframe("batch")
    suite = context.suites.add(build_suite(name, rules))
    batch = batch_def.get_batch(batch_parameters={"dataframe": df})
    # Counts only: the rows themselves go to the quarantine table, and fetching GX's sample of unexpected
    # values costs one more scan per expectation (it halved the validation time at 300k rows).
    result = batch.validate(suite, result_format={"result_format": "BASIC", "partial_unexpected_count": 0})
    unexpected: dict[str, int] = {}
    for r in result.results:
        rule_name = (r.expectation_config.meta or {}).get("rule", r.expectation_config.type)
        if r.exception_info and r.exception_info.get("raised_exception"):
            message = r.exception_info.get("exception_message")
            raise RuntimeError(f"great-expectations could not evaluate rule {rule_name}: {message}")
        unexpected[rule_name] = int(r.result.get("unexpected_count") or 0)
    return SuiteResult(bool(result.success), unexpected, len(result.results))
