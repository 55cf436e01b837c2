"""Cross-sell tiers: each article's recommended customers split by how high they rank.

Within each group (by default: each article and the customers it is recommended to), rows are
ranked by score with Spark's ``percent_rank`` semantics and the percent rank is cut into named
tiers. The Spark path *is* the window ``percent_rank().over(partitionBy(by).orderBy(score desc))``;
pandas and polars compute the same doubles with the same division, so every format gives the
same numbers row for row.
"""

from __future__ import annotations

import itertools
import math
import numbers
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rusket._optional import require
from rusket.interactions import _kind

__all__ = ["potential_tiers"]

FrameT = TypeVar("FrameT")

PERCENT_RANK = "percent_rank"
POTENTIAL = "potential"


def potential_tiers(
    recommendations: FrameT,
    by: str | Sequence[str] = "item_id",
    score_col: str = "score",
    cuts: Sequence[float] = (0.2, 0.6),
    labels: Sequence[str] = ("High", "Medium", "Low"),
) -> FrameT:
    """Split each group's rows into tiers by the percent rank of their score.

    Within each group of ``by`` (by default each article, with the customers it is recommended
    to), rows are ranked by ``score_col`` from the highest down, as Spark's ``percent_rank``
    does: ``(rank - 1) / (rows in the group - 1)``, where ``rank`` is the SQL ``RANK`` (tied
    scores share the lowest rank and the next rank skips past them) and a group of one row gets
    0. A row whose percent rank is ``<= cuts[0]`` gets ``labels[0]``, else ``<= cuts[1]`` gets
    ``labels[1]``, and so on; above the last cut it gets ``labels[-1]``.

    Parameters
    ----------
    recommendations : pandas, polars (eager or lazy) or Spark DataFrame, or pyarrow Table
        One row per (customer, article) recommendation, e.g. the output of
        ``model.batch_recommend`` or ``rusket.spark.batch_recommend``. It is not modified.
    by : str or sequence of str, default "item_id"
        The column(s) that form the groups ranked separately. Use ``"user_id"`` to tier each
        customer's own recommendations instead.
    score_col : str, default "score"
        The numeric column to rank by, highest first. NaN or missing scores are a ``ValueError``
        (Spark would rank NaN above every number): drop or fill them first.
    cuts : sequence of float, default (0.2, 0.6)
        Strictly increasing percent-rank thresholds within [0, 1]; ``k`` cuts make ``k + 1``
        tiers. With the default, the top 20% of each group is ``"High"``, the next 40%
        ``"Medium"`` and the rest ``"Low"``.
    labels : sequence of str, default ("High", "Medium", "Low")
        The tier names, best first; exactly ``len(cuts) + 1`` of them.

    Returns
    -------
    The same kind of frame (a lazy polars frame stays lazy) with every input column and two more:
    ``percent_rank`` (float64, 0 for the best row of each group, 1 for the worst) and
    ``potential`` (string, one of ``labels``). A column of either name already in the input is
    replaced. pandas, polars and Arrow keep the row order; Spark, like any window, does not.

    Raises
    ------
    KeyError
        If ``by`` or ``score_col`` is not a column (the message lists the available ones).
    TypeError
        If the score column is not numeric, or an argument has the wrong type.
    ValueError
        If ``cuts`` are not strictly increasing within [0, 1], ``labels`` do not number
        ``len(cuts) + 1``, or the scores hold NaN or missing values. Checking the scores runs one
        aggregation over the input (a Spark job, a lazy polars ``collect``): cache an expensive
        Spark frame first.

    Examples
    --------
    >>> import pandas as pd
    >>> recs = pd.DataFrame(
    ...     {
    ...         "user_id": [1, 2, 3, 4, 5, 1],
    ...         "item_id": [10, 10, 10, 10, 10, 20],
    ...         "score": [0.9, 0.9, 0.5, 0.1, 0.05, 0.3],
    ...     }
    ... )
    >>> potential_tiers(recs)  # the tied 0.9s share rank 1; item 20 has one row: 0
       user_id  item_id  score  percent_rank potential
    0        1       10   0.90          0.00      High
    1        2       10   0.90          0.00      High
    2        3       10   0.50          0.50    Medium
    3        4       10   0.10          0.75       Low
    4        5       10   0.05          1.00       Low
    5        1       20   0.30          0.00      High

    On Spark this is ``percent_rank().over(Window.partitionBy("item_id").orderBy(desc("score")))``
    followed by ``when(pr <= 0.2, "High").when(pr <= 0.6, "Medium").otherwise("Low")``.
    """
    kind = _kind(recommendations)
    if kind == "arrow-batch":
        raise TypeError(
            "recommendations must be a pandas, polars (eager or lazy) or Spark DataFrame or a "
            "pyarrow Table; got a pyarrow RecordBatch (wrap it: pa.Table.from_batches([batch]))"
        )
    keys = _check_by(by)
    _check_name("score_col", score_col)
    cut_values = _check_cuts(cuts)
    names = _check_labels(labels, len(cut_values))
    _check_columns(recommendations, kind, [*keys, score_col])

    if kind == "spark":
        return _spark_tiers(recommendations, keys, score_col, cut_values, names)
    if kind in ("polars", "polars-lazy"):
        return _polars_tiers(recommendations, keys, score_col, cut_values, names)
    if kind == "pandas":
        return _pandas_tiers(recommendations, keys, score_col, cut_values, names)
    return _arrow_tiers(recommendations, keys, score_col, cut_values, names)


# -- argument checks ------------------------------------------------------------------------------


def _is_name(value: Any) -> bool:
    # pandas frames read without a header name their columns 0, 1, 2, ...
    return isinstance(value, (str, numbers.Integral)) and not isinstance(value, (bool, np.bool_))


def _check_name(arg: str, value: Any) -> None:
    if not _is_name(value):
        raise TypeError(f"{arg} must be a column name (str), got {value!r}")


def _check_by(by: Any) -> list[Any]:
    if _is_name(by):
        return [by]
    if isinstance(by, Iterable) and not isinstance(by, (bytes, dict)):
        keys = list(by)
        if keys and all(_is_name(k) for k in keys):
            if len(set(keys)) != len(keys):
                raise ValueError(f"by names a column twice: {by!r}")
            return keys
    raise TypeError(
        f"by must be a column name or a non-empty list of column names, e.g. 'item_id'; got {by!r}"
    )


def _check_cuts(cuts: Any) -> tuple[float, ...]:
    if isinstance(cuts, (str, bytes)) or not isinstance(cuts, Iterable):
        raise TypeError(f"cuts must be a sequence of numbers, e.g. (0.2, 0.6); got {cuts!r}")
    values = list(cuts)
    if not all(isinstance(c, numbers.Real) and not isinstance(c, (bool, np.bool_)) for c in values):
        raise TypeError(f"cuts must be a sequence of numbers, e.g. (0.2, 0.6); got {cuts!r}")
    out = tuple(float(c) for c in values)
    if not out:
        raise ValueError("cuts must hold at least one threshold, e.g. (0.2, 0.6)")
    if not all(math.isfinite(c) and 0.0 <= c <= 1.0 for c in out):
        raise ValueError(f"cuts must lie within [0, 1] (they are percent ranks); got {cuts!r}")
    if any(a >= b for a, b in itertools.pairwise(out)):
        raise ValueError(f"cuts must be strictly increasing, e.g. (0.2, 0.6); got {cuts!r}")
    return out


def _check_labels(labels: Any, n_cuts: int) -> tuple[str, ...]:
    if isinstance(labels, (str, bytes)) or not isinstance(labels, Iterable):
        raise TypeError(
            f"labels must be a sequence of strings, e.g. ('High', 'Medium', 'Low'); got {labels!r}"
        )
    out = tuple(labels)
    if not all(isinstance(label, str) for label in out):
        raise TypeError(f"labels must all be strings; got {labels!r}")
    if len(out) != n_cuts + 1:
        raise ValueError(
            f"labels must hold len(cuts) + 1 = {n_cuts + 1} names (one tier below each cut and "
            f"one above the last); got {len(out)}: {labels!r}"
        )
    return out


def _column_names(data: Any, kind: str) -> list[Any]:
    if kind == "polars-lazy":
        return list(data.collect_schema().names())
    if kind == "arrow":
        return list(data.schema.names)
    return list(data.columns)


def _check_columns(data: Any, kind: str, columns: list[Any]) -> None:
    available = _column_names(data, kind)
    missing = [c for c in columns if c not in available]
    if missing:
        raise KeyError(
            f"column{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} not in "
            f"recommendations; available columns: {available}. Pass the right names to by / "
            "score_col."
        )
    for c in columns:
        if available.count(c) > 1:
            raise ValueError(
                f"column {c!r} appears {available.count(c)} times in recommendations; rename "
                "the duplicates first"
            )


def _check_scores(score_col: Any, dtype: Any, numeric: bool, n_bad: int) -> None:
    if not numeric:
        raise TypeError(
            f"score_col {score_col!r} must be a numeric column, got dtype {dtype}; cast it "
            "(e.g. to float) first"
        )
    if n_bad:
        raise ValueError(
            f"score_col {score_col!r} holds {n_bad:,} NaN or missing value"
            f"{'s' if n_bad > 1 else ''}, which cannot be ranked; drop or fill them first"
        )


def _label_of(percent_rank: np.ndarray, cuts: tuple[float, ...], labels: tuple[str, ...]) -> Any:
    # side="left": the first cut >= the percent rank, i.e. "percent_rank <= cut" as in Spark.
    return np.asarray(labels, dtype=object)[np.searchsorted(np.asarray(cuts), percent_rank)]


# -- one path per format --------------------------------------------------------------------------


def _pandas_percent_rank(df: Any, keys: list[Any], score_col: Any) -> np.ndarray:
    pd = require("pandas")
    scores = df[score_col]
    numeric = pd.api.types.is_numeric_dtype(scores) and not pd.api.types.is_bool_dtype(scores)
    _check_scores(score_col, scores.dtype, numeric, int(scores.isna().sum()) if numeric else 0)
    # dropna=False: a missing key is a group of its own, as in Spark's partitionBy.
    groups = df.groupby(keys, sort=False, dropna=False, observed=True)[score_col]
    rank = groups.rank(method="min", ascending=False).to_numpy(dtype=np.float64)
    size = groups.transform("size").to_numpy(dtype=np.float64)
    # Spark: if n > 1 then (rank - 1) / (n - 1) else 0, in doubles.
    return np.where(size > 1, (rank - 1.0) / np.maximum(size - 1.0, 1.0), 0.0)


def _pandas_tiers(
    df: Any, keys: list[Any], score_col: Any, cuts: tuple[float, ...], labels: tuple[str, ...]
) -> Any:
    pct = _pandas_percent_rank(df, keys, score_col)
    out = df.copy(deep=False)
    out[PERCENT_RANK] = pct
    out[POTENTIAL] = _label_of(pct, cuts, labels)
    return out


def _polars_tiers(
    df: Any, keys: list[Any], score_col: Any, cuts: tuple[float, ...], labels: tuple[str, ...]
) -> Any:
    pl = require("polars")
    lazy = isinstance(df, pl.LazyFrame)
    dtype = (df.collect_schema() if lazy else df.schema)[score_col]
    numeric = dtype.is_numeric()
    n_bad = 0
    if numeric:
        bad = pl.col(score_col).is_null()
        if dtype.is_float():
            bad = bad | pl.col(score_col).is_nan()
        counted = df.select(bad.sum())
        n_bad = int((counted.collect() if lazy else counted).item())
    _check_scores(score_col, dtype, numeric, n_bad)

    rank = pl.col(score_col).rank("min", descending=True).over(keys).cast(pl.Float64)
    size = pl.len().over(keys).cast(pl.Float64)
    pct = pl.when(size > 1).then((rank - 1.0) / (size - 1.0)).otherwise(0.0)
    pr = pl.col(PERCENT_RANK)
    tier = pl.when(pr <= cuts[0]).then(pl.lit(labels[0]))
    for cut, label in zip(cuts[1:], labels[1:-1]):
        tier = tier.when(pr <= cut).then(pl.lit(label))
    tier = tier.otherwise(pl.lit(labels[-1]))
    return df.with_columns(pct.alias(PERCENT_RANK)).with_columns(
        tier.cast(pl.String).alias(POTENTIAL)
    )


def _arrow_tiers(
    table: pa.Table,
    keys: list[Any],
    score_col: Any,
    cuts: tuple[float, ...],
    labels: tuple[str, ...],
) -> pa.Table:
    scores = table[score_col]
    kind = scores.type
    numeric = pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
    n_bad = 0
    if numeric:
        n_bad = scores.null_count
        if pa.types.is_floating(kind):
            n_bad += int(pc.sum(pc.is_nan(scores)).as_py() or 0)
    _check_scores(score_col, kind, numeric, n_bad)
    # Rank the few columns needed with pandas, then add the results to the table as it is (the
    # input's column types stay untouched).
    require("pandas")
    subset = table.select([*keys, score_col]).to_pandas()
    pct = _pandas_percent_rank(subset, keys, score_col)
    new = {
        PERCENT_RANK: pa.array(pct, type=pa.float64()),
        POTENTIAL: pa.array(_label_of(pct, cuts, labels), type=pa.string()),
    }
    for name, column in new.items():
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name, column)
        else:
            table = table.append_column(name, column)
    return table


def _spark_tiers(
    df: Any, keys: list[Any], score_col: Any, cuts: tuple[float, ...], labels: tuple[str, ...]
) -> Any:
    require("pyspark")
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql.types import DoubleType, FloatType, NumericType

    dtype = df.schema[score_col].dataType
    numeric = isinstance(dtype, NumericType)
    n_bad = 0
    if numeric:
        bad = df[score_col].isNull()
        if isinstance(dtype, (FloatType, DoubleType)):
            bad = bad | F.isnan(df[score_col])
        n_bad = int(df.agg(F.sum(bad.cast("long"))).first()[0] or 0)
    _check_scores(score_col, dtype.simpleString(), numeric, n_bad)

    window = Window.partitionBy(*[df[k] for k in keys]).orderBy(df[score_col].desc())
    out = df.withColumn(PERCENT_RANK, F.percent_rank().over(window))
    pr = F.col(PERCENT_RANK)
    tier = F.when(pr <= cuts[0], F.lit(labels[0]))
    for cut, label in zip(cuts[1:], labels[1:-1]):
        tier = tier.when(pr <= cut, F.lit(label))
    return out.withColumn(POTENTIAL, tier.otherwise(F.lit(labels[-1])))
