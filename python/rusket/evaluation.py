"""Hold-out splits of purchase logs and ranking metrics for fitted recommenders.

The three splits (:func:`train_test_split`, :func:`time_split`, :func:`leave_last_out`) take a
pandas, polars (eager or lazy), pyarrow or Spark frame and return ``(train, test)`` of the same
kind with every input column kept: each input row lands in exactly one of the two, the input is
never modified. pandas / polars / Arrow inputs are decided on the few columns the split needs
(read through Arrow) and then cut with the frame's own row selection, so dtypes, extra columns and
the pandas index come through unchanged. Spark frames are split inside Spark (hashes, window
functions, aggregates); nothing but a handful of counts reaches the driver.

:func:`evaluate` scores a fitted model on a test frame: the top-``k`` lists come from the model's
own ``batch_recommend`` (the Rust kernel, seen items excluded) and the metrics are computed with
numpy on a users x ``k`` hit matrix.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
import secrets
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from rusket._formats import spark_to_arrow
from rusket._optional import require
from rusket._validation import check_int
from rusket.interactions import _columns_of, _kind, _plain, to_arrow

__all__ = ["evaluate", "leave_last_out", "time_split", "train_test_split"]

# Users per batch_recommend call in evaluate: large enough for the parallel kernel, small enough
# to bound the (users x k) label / score arrays.
_EVAL_CHUNK = 1 << 18
# Relative rank error of the percentile_approx that brackets the cut-off of a Spark time_split;
# the rows inside the bracket (about 4 / accuracy of the data) are counted exactly.
_SPARK_QUANTILE_ACCURACY = 10_000


# --- argument checks ---------------------------------------------------------------------------


def _check_names(**names: Any) -> list[str]:
    cols = []
    for arg, value in names.items():
        if not isinstance(value, str):
            raise TypeError(f"{arg} must be a column name (str), got {value!r}")
        cols.append(value)
    if len(set(cols)) != len(cols):
        raise ValueError(f"{', '.join(names)} must name different columns; got {cols}")
    return cols


def _check_columns(data: Any, kind: str, cols: list[str], what: str) -> None:
    available = _columns_of(data, kind)
    for c in cols:
        if c not in available:
            raise KeyError(f"column {c!r} is not in the {what}; available columns: {available}")


def _check_test_size(test_size: Any) -> float:
    if isinstance(test_size, bool) or not isinstance(test_size, numbers.Real):
        raise TypeError(
            f"test_size must be a number between 0 and 1, got {type(test_size).__name__} "
            f"{test_size!r}"
        )
    v = float(test_size)
    if not 0.0 < v < 1.0:
        raise ValueError(f"test_size must be strictly between 0 and 1, got {test_size!r}")
    return v


def _check_seed(seed: Any) -> int:
    """An explicit seed, or a fresh random one for ``seed=None``."""
    if seed is None:
        return secrets.randbelow(2**31)
    return check_int("seed", seed, minimum=0)


def _n_test(test_size: float, n: np.ndarray | int) -> Any:
    """``test_size * n`` rounded half up (the same double arithmetic as the Spark path)."""
    return np.floor(test_size * np.asarray(n, dtype=np.float64) + 0.5).astype(np.int64)


# --- pandas / polars / Arrow plumbing --------------------------------------------------------


def _local_frame(data: Any) -> tuple[Any, str, bool]:
    """The frame to cut, its kind, and whether the results go back to polars lazy frames."""
    kind = _kind(data)
    if kind == "polars-lazy":
        return data.collect(), "polars", True
    return data, kind, False


def _cut(data: Any, kind: str, lazy: bool, test_mask: np.ndarray) -> tuple[Any, Any]:
    """``(rows where not test_mask, rows where test_mask)`` in the input's own kind and order."""
    test_mask = np.asarray(test_mask, dtype=bool)
    if kind == "pandas":
        # take (unlike iloc) returns frames pandas does not flag as views of the input.
        return data.take(np.flatnonzero(~test_mask)), data.take(np.flatnonzero(test_mask))
    if kind == "polars":
        pl = require("polars")
        train, test = data.filter(pl.Series(~test_mask)), data.filter(pl.Series(test_mask))
        return (train.lazy(), test.lazy()) if lazy else (train, test)
    return data.filter(pa.array(~test_mask)), data.filter(pa.array(test_mask))


def _no_nulls(col: pa.ChunkedArray, name: str, what: str) -> None:
    bad = col.null_count
    if pa.types.is_floating(col.type):
        bad += int(pc.sum(pc.is_nan(col)).as_py() or 0)
    if bad:
        raise ValueError(
            f"column {name!r} has {bad} null (or NaN) {what} out of {len(col)} rows; "
            "drop or fill them first"
        )


def _codes(col: pa.ChunkedArray, name: str) -> tuple[np.ndarray, int]:
    """The rank of every row's value among the sorted distinct values (independent of row
    order), and the number of distinct values."""
    try:
        uniq = pc.unique(col)
        uniq = uniq.take(pc.sort_indices(uniq))
        codes = pc.index_in(col, value_set=uniq)
    except pa.ArrowNotImplementedError as exc:
        raise TypeError(f"column {name!r} has type {col.type}, which cannot be grouped") from exc
    return np.asarray(codes.to_numpy(), dtype=np.int64), len(uniq)


def _rank_within_groups(group: np.ndarray, order: np.ndarray, n_groups: int) -> np.ndarray:
    """0-based position of every element inside its group when the elements are visited in
    ``order`` (``order`` must list each group contiguously)."""
    sizes = np.bincount(group, minlength=n_groups)
    starts = np.cumsum(sizes) - sizes
    rank = np.empty(len(group), dtype=np.int64)
    rank[order] = np.arange(len(group), dtype=np.int64) - starts[group[order]]
    return rank


# --- Spark plumbing ----------------------------------------------------------------------------


def _spark_sql() -> tuple[Any, Any]:
    require("pyspark")
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    return F, Window


def _q(name: str) -> Any:
    """A Spark column by its exact name (dots and back-ticks included)."""
    F, _ = _spark_sql()
    return F.col("`" + name.replace("`", "``") + "`")


def _fresh(base: str, taken: list[str]) -> str:
    name = f"__rusket_{base}"
    while name in taken:
        name += "_"
    return name


def _spark_check(df: Any, cols: dict[str, str]) -> int:
    """Row count of ``df``; ``ValueError`` for no rows or for null (NaN) values in ``cols``
    (column name -> what its values are). One Spark job."""
    F, _ = _spark_sql()
    from pyspark.sql.types import DoubleType, FloatType

    dtypes = {f.name: f.dataType for f in df.schema.fields}
    aggs = [F.count(F.lit(1))]
    for name in cols:
        bad = _q(name).isNull()
        if isinstance(dtypes[name], (FloatType, DoubleType)):
            bad = bad | F.isnan(_q(name))
        aggs.append(F.count(F.when(bad, F.lit(1))))
    row = df.agg(*aggs).first()
    n = int(row[0])
    if n == 0:
        raise ValueError("the data has no rows: nothing to split")
    for (name, what), bad_count in zip(cols.items(), row[1:]):
        if bad_count:
            raise ValueError(
                f"column {name!r} has {bad_count} null (or NaN) {what} out of {n} rows; "
                "drop or fill them first"
            )
    return n


def _spark_cut(df: Any, test_flag: Any, cols: list[str]) -> tuple[Any, Any]:
    out = [_q(c) for c in cols]
    return df.where(~test_flag).select(*out), df.where(test_flag).select(*out)


# --- train_test_split --------------------------------------------------------------------------


def train_test_split(
    data: Any,
    user_col: str,
    item_col: str,
    test_size: float = 0.2,
    seed: int | None = None,
) -> tuple[Any, Any]:
    """Hold out a random share of every customer's distinct items.

    The unit is the distinct ``(user, item)`` pair: all order lines of one pair go to the same
    side, so a repeat purchase can never leak from train into test. For a customer with ``p``
    distinct pairs, ``min(round(test_size * p), p - 1)`` pairs go to test (rounded half up): a
    customer with one pair stays entirely in train, and every customer keeps at least one pair in
    train.

    Parameters
    ----------
    data : DataFrame
        pandas, polars (eager or lazy), pyarrow ``Table`` / ``RecordBatch`` or Spark frame.
    user_col, item_col : str
        The customer and article id columns (no nulls).
    test_size : float, default 0.2
        Share of each customer's distinct items held out, strictly between 0 and 1.
    seed : int or None, default None
        ``None`` draws a fresh split on every call; an int gives the same split on every call
        for the same rows, whatever their order (pandas / polars / Arrow: a numpy generator over
        the pairs sorted by user and item; Spark: ``xxhash64(user, item, seed)``, independent of
        the partitioning). The two paths draw different, equally random splits.

    Returns
    -------
    train, test
        Frames of the input's kind with all its columns; rows keep their input order (pandas
        keeps the index). Polars lazy frames come back as lazy frames.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"customer": [1, 1, 1, 1, 2], "article": ["a", "b", "b", "c", "a"]})
    >>> train, test = train_test_split(df, "customer", "article", test_size=0.34, seed=0)
    >>> len(train) + len(test), sorted(set(test["customer"]))
    (5, [1])
    """
    _check_names(user_col=user_col, item_col=item_col)
    test_size = _check_test_size(test_size)
    seed = _check_seed(seed)
    kind = _kind(data)
    _check_columns(data, kind, [user_col, item_col], "data")
    if kind == "spark":
        return _spark_train_test_split(data, user_col, item_col, test_size, seed)

    frame, kind, lazy = _local_frame(data)
    table = to_arrow(frame, [user_col, item_col])
    if table.num_rows == 0:
        raise ValueError("the data has no rows: nothing to split")
    users, items = _plain(table[user_col]), _plain(table[item_col])
    _no_nulls(users, user_col, "id(s)")
    _no_nulls(items, item_col, "id(s)")
    user_code, n_users = _codes(users, user_col)
    item_code, n_items = _codes(items, item_col)
    if n_users * n_items < 2**62:
        _, pair_row, pair_of_row = np.unique(
            user_code * n_items + item_code, return_index=True, return_inverse=True
        )
    else:  # pragma: no cover - more than 2**62 possible pairs
        _, pair_row, pair_of_row = np.unique(
            np.stack([user_code, item_code], axis=1), axis=0, return_index=True, return_inverse=True
        )
    pair_of_row = pair_of_row.reshape(-1)
    # The pairs are sorted by (user, item) labels, so the draw depends only on the set of pairs.
    pair_user = user_code[pair_row]
    key = np.random.default_rng(seed).random(len(pair_row))
    order = np.lexsort((key, pair_user))
    rank = _rank_within_groups(pair_user, order, n_users)
    size = np.bincount(pair_user, minlength=n_users)
    n_test = np.minimum(_n_test(test_size, size), size - 1)
    pair_test = rank < n_test[pair_user]
    return _cut(frame, kind, lazy, pair_test[pair_of_row])


def _spark_train_test_split(
    df: Any, user_col: str, item_col: str, test_size: float, seed: int
) -> tuple[Any, Any]:
    F, Window = _spark_sql()
    _spark_check(df, {user_col: "id(s)", item_col: "id(s)"})
    cols = list(df.columns)
    key, rank, size, flag = (_fresh(b, cols) for b in ("key", "rank", "size", "test"))
    u, i = _q(user_col), _q(item_col)
    by_user = Window.partitionBy(u)
    # A hash of the pair's own values is a random key that does not depend on the partitioning
    # (rand() does); the item breaks the (improbable) hash ties.
    pairs = (
        df.select(u, i)
        .dropDuplicates()
        .withColumn(key, F.xxhash64(u, i, F.lit(seed)))
        .withColumn(rank, F.row_number().over(by_user.orderBy(_q(key), i)))
        .withColumn(size, F.count(F.lit(1)).over(by_user))
    )
    n_test = F.least(F.floor(F.lit(test_size) * _q(size) + F.lit(0.5)), _q(size) - F.lit(1))
    pairs = pairs.select(u, i, (_q(rank) <= n_test).alias(flag))
    joined = df.join(pairs, on=[user_col, item_col], how="inner")
    return _spark_cut(joined, _q(flag), cols)


# --- time_split --------------------------------------------------------------------------------

_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}
_EPOCH = dt.datetime(1970, 1, 1)
_EPOCH_UTC = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)


class _Instant(NamedTuple):
    """A temporal cut-off as an exact integer: ``value`` days (``unit="D"``) or ``value``
    seconds / ms / us / ns since the epoch (UTC for ``aware``, wall clock otherwise)."""

    value: int
    unit: str
    aware: bool


def _rescale(value: int, unit: str, to: str) -> int:
    """``value`` in ``unit`` expressed in ``to``, rounded down. Exact for comparisons with
    integer columns: ``t > c`` iff ``t > floor(c)``."""
    per = {**_PER_SECOND, "D": 0}
    if unit == "D" and to == "D":
        return value
    if unit == "D":
        return value * 86_400 * per[to]
    if to == "D":
        return value // (86_400 * per[unit])
    if per[to] >= per[unit]:
        return value * (per[to] // per[unit])
    return value // (per[unit] // per[to])


def _instant(cutoff: Any, time_col: str) -> _Instant:
    if type(cutoff).__module__.split(".")[0] == "pandas" and hasattr(cutoff, "value"):
        if cutoff != cutoff:  # NaT
            raise ValueError("cutoff must be a time, got NaT")
        return _Instant(int(cutoff.value), "ns", cutoff.tzinfo is not None)
    if isinstance(cutoff, dt.datetime):
        if cutoff.tzinfo is not None and cutoff.utcoffset() is not None:
            return _Instant((cutoff - _EPOCH_UTC) // dt.timedelta(microseconds=1), "us", True)
        return _Instant((cutoff - _EPOCH) // dt.timedelta(microseconds=1), "us", False)
    if isinstance(cutoff, dt.date):
        return _Instant((cutoff - _EPOCH.date()).days, "D", False)
    if isinstance(cutoff, np.datetime64):
        if np.isnat(cutoff):
            raise ValueError("cutoff must be a time, got NaT")
        unit, step = np.datetime_data(cutoff.dtype)
        if unit not in _PER_SECOND:
            if unit in ("ps", "fs", "as"):
                raise TypeError(f"cutoff {cutoff!r} is finer than nanoseconds; round it to ns")
            cutoff, unit, step = cutoff.astype("datetime64[s]"), "s", 1
        return _Instant(int(cutoff.astype(np.int64)) * int(step), unit, False)
    if isinstance(cutoff, str):
        try:
            parsed = dt.datetime.fromisoformat(cutoff)
        except ValueError:
            raise ValueError(
                f"cutoff {cutoff!r} is not an ISO date or time (e.g. '2024-03-01' or "
                "'2024-03-01T12:00:00+00:00')"
            ) from None
        return _instant(parsed, time_col)
    raise TypeError(
        f"time column {time_col!r} holds times, so cutoff must be a datetime, date, pandas "
        f"Timestamp, numpy datetime64 or ISO string; got {type(cutoff).__name__} {cutoff!r}"
    )


def _numeric_cutoff(cutoff: Any, time_col: str, integral: bool) -> Any:
    if isinstance(cutoff, bool) or not isinstance(cutoff, numbers.Real):
        raise TypeError(
            f"time column {time_col!r} holds numbers, so cutoff must be a number; "
            f"got {type(cutoff).__name__} {cutoff!r}"
        )
    if isinstance(cutoff, numbers.Integral):
        return int(cutoff)
    if not math.isfinite(float(cutoff)):
        raise ValueError(f"cutoff must be finite, got {cutoff!r}")
    # For whole-number columns t > c iff t > floor(c): compare integers, never floats.
    return math.floor(cutoff) if integral else cutoff


def _mismatch(time_col: str, col_aware: bool) -> TypeError:
    if col_aware:
        return TypeError(
            f"time column {time_col!r} is time-zone aware; give a cutoff with a time zone "
            "(e.g. '2024-03-01T00:00:00+00:00' or a tz-aware datetime)"
        )
    return TypeError(
        f"time column {time_col!r} has no time zone; give a cutoff without one "
        "(e.g. '2024-03-01' or a naive datetime)"
    )


def _time_kind(typ: pa.DataType, time_col: str) -> str:
    if pa.types.is_timestamp(typ):
        return "timestamp"
    if pa.types.is_date(typ):
        return "date"
    if pa.types.is_integer(typ):
        return "integer"
    if pa.types.is_floating(typ) or pa.types.is_decimal(typ):
        return "number"
    raise TypeError(
        f"time column {time_col!r} has type {typ}; it must hold timestamps, dates or numbers "
        "(parse it first, e.g. pd.to_datetime or pl.col(...).str.to_datetime())"
    )


def _arrow_cutoff(cutoff: Any, typ: pa.DataType, time_col: str) -> pa.Scalar:
    """``cutoff`` as an exact scalar of the column's type (dates: ``date32``)."""
    kind = _time_kind(typ, time_col)
    if kind in ("integer", "number"):
        v = _numeric_cutoff(cutoff, time_col, integral=kind == "integer")
        if kind == "integer":
            v = min(max(v, -(2**63)), 2**63 - 1)  # the column's values are int64 at most
            return pa.scalar(v, pa.int64())
        return pa.scalar(v)
    c = _instant(cutoff, time_col)
    if kind == "date":
        if c.aware:
            raise _mismatch(time_col, False)
        return pa.scalar(_rescale(c.value, c.unit, "D"), pa.date32())
    col_aware = typ.tz is not None
    if c.aware != col_aware:
        raise _mismatch(time_col, col_aware)
    return pa.scalar(_rescale(c.value, c.unit, typ.unit), typ)


def _closest_cut(le: np.ndarray, k: int) -> int:
    """Index of the cut-off among sorted distinct times with ``le[j]`` rows at or before each:
    the one whose count of rows kept in train is closest to ``k`` (on a tie, the later one)."""
    ja = int(np.searchsorted(le, k, side="left"))  # first time keeping >= k rows
    if ja > 0 and k - le[ja - 1] < le[ja] - k:
        return ja - 1
    return ja


def time_split(
    data: Any,
    time_col: str,
    test_size: float = 0.2,
    cutoff: Any = None,
) -> tuple[Any, Any]:
    """Everything strictly after a cut-off time goes to test, the rest to train.

    Times are compared exactly in their own type (timestamps as integers in their unit, never
    through floats); rows at the cut-off stay in train.

    Parameters
    ----------
    data : DataFrame
        pandas, polars (eager or lazy), pyarrow ``Table`` / ``RecordBatch`` or Spark frame.
    time_col : str
        A timestamp, date or numeric column without nulls (``TypeError`` otherwise).
    test_size : float, default 0.2
        Used when ``cutoff`` is None: the cut-off is the distinct time that leaves the number of
        later rows closest to ``round(test_size * n_rows)`` (on a tie, the later time). Ties in
        time make the share approximate; the earliest time always stays in train.
    cutoff : optional
        The cut-off itself. For time columns a ``datetime``, ``date``, pandas ``Timestamp``,
        ``numpy.datetime64`` or ISO string (``"2024-03-01"``, ``"2024-03-01T12:00:00+01:00"``);
        its time-zone awareness must match the column's (pandas / polars / Arrow; in Spark a
        naive cut-off for a ``timestamp`` column is read in the session time zone, as in SQL).
        For numeric columns a number. Date columns compare a datetime by its day (``t > c``
        iff ``t > floor(c)``).

    Returns
    -------
    train, test
        Frames of the input's kind with all its columns, in input order.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"customer": [1, 2, 1, 3],
    ...                    "day": pd.to_datetime(["2024-01-01", "2024-01-02", "2024-01-03",
    ...                                           "2024-01-04"])})
    >>> train, test = time_split(df, "day", cutoff="2024-01-02")
    >>> len(train), len(test)
    (2, 2)
    >>> train, test = time_split(df, "day", test_size=0.25)
    >>> test["customer"].tolist()
    [3]
    """
    _check_names(time_col=time_col)
    test_size = _check_test_size(test_size)
    kind = _kind(data)
    _check_columns(data, kind, [time_col], "data")
    if kind == "spark":
        return _spark_time_split(data, time_col, test_size, cutoff)

    frame, kind, lazy = _local_frame(data)
    col = _plain(to_arrow(frame, [time_col])[time_col])
    tkind = _time_kind(col.type, time_col)
    if len(col) == 0:
        raise ValueError("the data has no rows: nothing to split")
    _no_nulls(col, time_col, "time(s)")
    if tkind == "date":
        col = col.cast(pa.date32())
    elif pa.types.is_floating(col.type):
        col = pc.add(col, pa.scalar(0.0, col.type))  # -0.0 -> 0.0: one value per number
    if cutoff is None:
        counts = pc.value_counts(col)
        values = counts.field("values")
        order = pc.sort_indices(values)
        le = np.cumsum(counts.field("counts").take(order).to_numpy())
        k = len(col) - int(_n_test(test_size, len(col)))
        cut = values.take(order)[_closest_cut(le, k)]
    else:
        cut = _arrow_cutoff(cutoff, col.type, time_col)
    try:
        test_mask = pc.greater(col, cut).to_numpy()
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid) as exc:  # pragma: no cover
        raise TypeError(f"cannot compare column {time_col!r} with cutoff {cutoff!r}") from exc
    return _cut(frame, kind, lazy, test_mask)


def _spark_time_split(df: Any, time_col: str, test_size: float, cutoff: Any) -> tuple[Any, Any]:
    F, _ = _spark_sql()
    from pyspark.sql import types as T

    dtype = df.schema[time_col].dataType
    col = _q(time_col)
    if isinstance(dtype, T.TimestampType):
        key = F.unix_micros(col)  # exact microseconds of the instant, as a long
    elif isinstance(dtype, T.TimestampNTZType):
        epoch = F.lit("1970-01-01 00:00:00").cast("timestamp_ntz")
        key = F.timestamp_diff("MICROSECOND", epoch, col)
    elif isinstance(dtype, T.DateType):
        key = F.unix_date(col)
    elif isinstance(dtype, T.NumericType):
        key = col
    else:
        raise TypeError(
            f"time column {time_col!r} has type {dtype.simpleString()}; it must hold "
            "timestamps, dates or numbers (parse it first, e.g. F.to_timestamp)"
        )
    given = None if cutoff is None else _spark_cutoff(cutoff, dtype, time_col)
    n = _spark_check(df, {time_col: "time(s)"})
    if given is None:
        flag = key > F.lit(_spark_auto_cutoff(df, key, n, test_size))
    else:
        flag = col > given
    return _spark_cut(df, flag, list(df.columns))


def _spark_cutoff(cutoff: Any, dtype: Any, time_col: str) -> Any:
    F, _ = _spark_sql()
    from pyspark.sql import types as T

    if isinstance(dtype, T.NumericType):
        integral = isinstance(dtype, T.IntegralType)
        return F.lit(_numeric_cutoff(cutoff, time_col, integral=integral))
    c = _instant(cutoff, time_col)
    if isinstance(dtype, T.DateType):
        if c.aware:
            raise _mismatch(time_col, False)
        day = _EPOCH.date() + dt.timedelta(days=_rescale(c.value, c.unit, "D"))
        return F.lit(day.isoformat()).cast("date")
    # Spark keeps microseconds: t > c iff t > floor_us(c). A string literal cast by Spark reads
    # a naive time in the session time zone, like SQL does.
    text = (_EPOCH + dt.timedelta(microseconds=_rescale(c.value, c.unit, "us"))).isoformat()
    if isinstance(dtype, T.TimestampNTZType):
        if c.aware:
            raise _mismatch(time_col, False)
        return F.lit(text).cast("timestamp_ntz")
    return F.lit(text + ("+00:00" if c.aware else "")).cast("timestamp")


def _spark_auto_cutoff(df: Any, key: Any, n: int, test_size: float) -> Any:
    """The cut-off of :func:`time_split` (same rule as the local path, exactly), computed with a
    ``percentile_approx`` bracket around the wanted rank whose rows are then counted exactly; only
    the bracket's distinct times with their counts reach the driver."""
    F, _ = _spark_sql()
    k = n - int(_n_test(test_size, n))  # rows wanted at or before the cut-off
    slack = 2 * (n // _SPARK_QUANTILE_ACCURACY + 1)
    p = [max(k - slack, 0) / n, min(k + slack, n) / n]
    lo, hi = _spark_bracket(df, key, p)
    name = _fresh("t", list(df.columns))
    while True:
        # One job: the distinct times in [lo, hi] with their counts, plus one group (null key)
        # for everything before lo: its size and its latest time.
        group = key if lo is None else F.when(key < F.lit(lo), F.lit(None)).otherwise(key)
        inside = df if hi is None else df.where(key <= F.lit(hi))
        rows = inside.groupBy(group.alias(name)).agg(F.count(F.lit(1)), F.max(key)).collect()
        n_below, before = 0, None
        bracket = []
        for value, count, latest in rows:
            if value is None:
                n_below, before = int(count), latest
            else:
                bracket.append((value, int(count)))
        bracket.sort(key=lambda r: r[0])
        values = ([before] if n_below else []) + [v for v, _ in bracket]
        counts = ([n_below] if n_below else []) + [c for _, c in bracket]
        le = np.cumsum(np.asarray(counts, dtype=np.int64))
        # The answer is the first time keeping >= k rows or the one before it: both must be in
        # the bracket (a percentile_approx outside its error bound widens it to the data).
        low_ok = lo is None or n_below == 0 or n_below < k
        high_ok = len(le) > 0 and le[-1] >= k
        if low_ok and high_ok:
            return values[_closest_cut(le, k)]
        lo = lo if low_ok else None
        hi = hi if high_ok else None


def _spark_bracket(df: Any, key: Any, p: list[float]) -> tuple[Any, Any]:
    F, _ = _spark_sql()
    lo, hi = df.select(F.percentile_approx(key, p, _SPARK_QUANTILE_ACCURACY)).first()[0]
    return lo, hi


# --- leave_last_out ----------------------------------------------------------------------------


def leave_last_out(
    data: Any,
    user_col: str,
    item_col: str,
    time_col: str,
    n: int = 1,
) -> tuple[Any, Any]:
    """Each customer's last ``n`` order lines go to test; customers with ``n`` lines or fewer
    stay entirely in train.

    "Last" orders a customer's lines by time, then by item id, then (pandas / polars / Arrow) by
    position in the input, a later line counting as later; Spark has no row order and uses a hash
    of all the row's values as the final tie-break (rows equal in every column are
    interchangeable). Both paths agree whenever (user, time, item) is unique.

    Parameters
    ----------
    data : DataFrame
        pandas, polars (eager or lazy), pyarrow ``Table`` / ``RecordBatch`` or Spark frame.
    user_col, item_col : str
        The customer and article id columns (no nulls).
    time_col : str
        A timestamp, date or numeric column without nulls.
    n : int, default 1
        Order lines per customer held out.

    Returns
    -------
    train, test
        Frames of the input's kind with all its columns, in input order.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"customer": [1, 1, 1, 2], "article": ["a", "b", "c", "a"],
    ...                    "day": [3, 1, 2, 1]})
    >>> train, test = leave_last_out(df, "customer", "article", "day")
    >>> test["article"].tolist(), len(train)
    (['a'], 3)
    """
    _check_names(user_col=user_col, item_col=item_col, time_col=time_col)
    n = check_int("n", n, minimum=1)
    kind = _kind(data)
    _check_columns(data, kind, [user_col, item_col, time_col], "data")
    if kind == "spark":
        return _spark_leave_last_out(data, user_col, item_col, time_col, n)

    frame, kind, lazy = _local_frame(data)
    table = to_arrow(frame, [user_col, item_col, time_col])
    users, items = _plain(table[user_col]), _plain(table[item_col])
    times = _plain(table[time_col])
    _time_kind(times.type, time_col)
    if table.num_rows == 0:
        raise ValueError("the data has no rows: nothing to split")
    _no_nulls(users, user_col, "id(s)")
    _no_nulls(items, item_col, "id(s)")
    _no_nulls(times, time_col, "time(s)")
    user_code, n_users = _codes(users, user_col)
    item_code, _ = _codes(items, item_col)
    # Dense ranks compare times exactly in their own type (no float round trip).
    time_rank = np.asarray(pc.rank(times, tiebreaker="dense").to_numpy(), dtype=np.int64)
    position = np.arange(table.num_rows, dtype=np.int64)
    order = np.lexsort((position, item_code, time_rank, user_code))
    rank = _rank_within_groups(user_code, order, n_users)
    size = np.bincount(user_code, minlength=n_users)
    from_end = size[user_code] - rank  # 1 = the customer's last line
    test_mask = (from_end <= n) & (size[user_code] > n)
    return _cut(frame, kind, lazy, test_mask)


def _spark_leave_last_out(
    df: Any, user_col: str, item_col: str, time_col: str, n: int
) -> tuple[Any, Any]:
    F, Window = _spark_sql()
    from pyspark.sql import types as T

    dtype = df.schema[time_col].dataType
    if not isinstance(dtype, (T.TimestampType, T.TimestampNTZType, T.DateType, T.NumericType)):
        raise TypeError(
            f"time column {time_col!r} has type {dtype.simpleString()}; it must hold "
            "timestamps, dates or numbers (parse it first, e.g. F.to_timestamp)"
        )
    _spark_check(df, {user_col: "id(s)", item_col: "id(s)", time_col: "time(s)"})
    cols = list(df.columns)
    rank, size = _fresh("rank", cols), _fresh("size", cols)
    hashable = [f.name for f in df.schema.fields if not _has_map(f.dataType)]
    tie = F.xxhash64(*[_q(c) for c in hashable])
    u = _q(user_col)
    last_first = Window.partitionBy(u).orderBy(_q(time_col).desc(), _q(item_col).desc(), tie.desc())
    marked = df.withColumn(rank, F.row_number().over(last_first)).withColumn(
        size, F.count(F.lit(1)).over(Window.partitionBy(u))
    )
    flag = (_q(rank) <= F.lit(n)) & (_q(size) > F.lit(n))
    return _spark_cut(marked, flag, cols)


def _has_map(dtype: Any) -> bool:
    from pyspark.sql import types as T

    if isinstance(dtype, T.MapType):
        return True
    if isinstance(dtype, T.ArrayType):
        return _has_map(dtype.elementType)
    if isinstance(dtype, T.StructType):
        return any(_has_map(f.dataType) for f in dtype.fields)
    return False


# --- evaluate ----------------------------------------------------------------------------------


def _fitted_parts(model: Any) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix]:
    """``(user_labels, item_labels, seen)`` of a fitted model, read from one fitted state.

    ``seen`` holds the training items of every user: CSR, rows in ``user_labels`` order, columns
    in ``item_labels`` order (only its structure is used). The one place that knows where a model
    keeps them: ``model._fitted_state()`` (labels and seen matrix swapped as one object by every
    refit), else the older ``model._fitted("_user_items")`` accessor.
    """
    state_of = getattr(model, "_fitted_state", None)
    if callable(state_of):
        state = state_of()
        user_labels, item_labels, seen = state.user_labels, state.item_labels, state.seen
    else:
        user_labels, item_labels = model.user_labels, model.item_labels
        seen = model._fitted("_user_items")
    user_labels, item_labels = _labels(user_labels), _labels(item_labels)
    seen = sp.csr_matrix(seen)
    shape = (len(user_labels), len(item_labels))
    if seen.shape != shape:
        raise ValueError(f"the model's seen-items matrix has shape {seen.shape}, expected {shape}")
    return user_labels, item_labels, seen


def _labels(labels: Any) -> np.ndarray:
    arr = np.asarray(labels)
    return arr.astype(object) if arr.dtype.kind == "U" else arr


def _test_ids(col: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    col = _plain(col)
    if col.null_count:
        raise ValueError(
            f"column {name!r} has {col.null_count} null id(s) out of {len(col)} rows; "
            "drop or fill them before evaluating"
        )
    if pa.types.is_integer(col.type):
        return col.cast(pa.int64())
    if pa.types.is_large_string(col.type):
        return col
    raise TypeError(
        f"column {name!r} has type {col.type}; ids must be integers or strings, like the "
        "training data's"
    )


def _label_array(labels: np.ndarray) -> pa.Array:
    if labels.dtype == object:
        return pa.array(labels, pa.large_string())
    return pa.array(labels, pa.int64())


def _index_in(values: Any, labels: np.ndarray) -> np.ndarray:
    """Position of every value in the model's sorted ``labels``, -1 where it is not there (or
    where the kinds differ: string ids against integer labels)."""
    try:
        idx = pc.index_in(values, value_set=_label_array(labels))
    except (pa.ArrowTypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return np.full(len(values), -1, dtype=np.int64)
    return np.asarray(idx.fill_null(-1).to_numpy(), dtype=np.int64)


def _member(sorted_keys: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """``queries`` found in the sorted ``sorted_keys`` (a binary search per query)."""
    if len(sorted_keys) == 0:
        return np.zeros(len(queries), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, queries), len(sorted_keys) - 1)
    return np.asarray(sorted_keys[pos] == queries)


def _ranking_metrics(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> dict[str, float]:
    """Mean ranking metrics from a boolean ``(users, k)`` hit matrix (column ``r - 1`` says
    whether the item at rank ``r`` is relevant) and every user's number of relevant items
    (>= 1, may exceed ``k``)."""
    h = np.asarray(hits, dtype=np.float64)
    n_rel = np.asarray(n_relevant, dtype=np.int64)
    ranks = np.arange(1, k + 1, dtype=np.float64)
    discount = 1.0 / np.log2(ranks + 1.0)
    ideal = np.minimum(n_rel, k)
    n_hits = h.sum(axis=1)
    dcg = h @ discount
    idcg = np.cumsum(discount)[ideal - 1]
    average_precision = ((np.cumsum(h, axis=1) / ranks) * h).sum(axis=1) / ideal
    return {
        "ndcg": float(np.mean(dcg / idcg)),
        "precision": float(np.mean(n_hits / k)),
        "recall": float(np.mean(n_hits / n_rel)),
        "map": float(np.mean(average_precision)),
        "hit_rate": float(np.mean(n_hits > 0)),
    }


def evaluate(
    model: Any,
    test: Any,
    user_col: str,
    item_col: str,
    k: int = 10,
) -> dict[str, Any]:
    """Score a fitted model's top-``k`` recommendations against held-out purchases.

    For every test customer the model knows, the relevant set is their distinct test items minus
    the items they already have in training (repeat purchases count neither in the ranking, which
    excludes seen items, nor as relevant). The top-``k`` lists come from
    ``model.batch_recommend(n=k, exclude_seen=True, format="numpy")`` in a few large calls.

    Relevance is binary; with ``rel_r = 1`` when the item at rank ``r`` is relevant, ``R`` the
    relevant set and ``hits = sum_r rel_r``:

    - ``DCG@k = sum_{r=1..k} rel_r / log2(r + 1)``; ``nDCG@k = DCG@k / IDCG@k`` where
      ``IDCG@k`` is the DCG of ``min(|R|, k)`` hits at the top ranks;
    - ``precision@k = hits / k`` (also when fewer than ``k`` items could be recommended);
    - ``recall@k = hits / |R|``;
    - ``map@k = (1 / min(|R|, k)) * sum_{r=1..k} precision@r * rel_r``;
    - ``hit_rate@k``: the share of customers with at least one hit;
    - ``coverage@k``: distinct items recommended to the evaluated customers / items in the model.

    All but coverage are means over the evaluated customers.

    Parameters
    ----------
    model
        A fitted model with ``user_labels``, ``item_labels``, ``batch_recommend`` and the seen
        items of training (e.g. :class:`rusket.ALS`).
    test : DataFrame
        pandas, polars (eager or lazy), pyarrow or Spark frame of held-out order lines (Spark:
        only the distinct ``(user, item)`` pairs are collected, through Arrow).
    user_col, item_col : str
        The customer and article id columns (integers or strings, no nulls).
    k : int, default 10
        Length of the recommendation lists.

    Returns
    -------
    dict
        ``ndcg@k``, ``precision@k``, ``recall@k``, ``map@k``, ``hit_rate@k``, ``coverage@k``
        (floats, with the value of ``k`` in the key) and the counts (ints): ``users`` (customers
        evaluated), ``unknown_users`` (test customers absent from training: not scored),
        ``users_without_new_items`` (known customers whose test items were all bought in
        training: not scored) and ``unknown_items`` (distinct items in the relevant sets that the
        model never saw: they stay relevant and can never be hit).

    Examples
    --------
    >>> import pandas as pd, rusket
    >>> train = pd.DataFrame({"c": [1, 1, 2, 2, 3, 3], "a": [10, 11, 10, 12, 11, 12]})
    >>> test = pd.DataFrame({"c": [1, 2, 3, 4], "a": [12, 11, 10, 10]})
    >>> model = rusket.ALS(factors=2, iterations=3).from_transactions(train, "c", "a")
    >>> result = evaluate(model, test, "c", "a", k=1)
    >>> result["users"], result["unknown_users"], result["hit_rate@1"]
    (3, 1, 1.0)
    """
    _check_names(user_col=user_col, item_col=item_col)
    k = check_int("k", k, minimum=1)
    kind = _kind(test)
    _check_columns(test, kind, [user_col, item_col], "test data")
    if kind == "spark":
        table = spark_to_arrow(test.select(_q(user_col), _q(item_col)).dropDuplicates())
    else:
        table = to_arrow(test, [user_col, item_col])
    if table.num_rows == 0:
        raise ValueError("the test data has no rows: nothing to evaluate")
    users = _test_ids(table[user_col], user_col)
    items = _test_ids(table[item_col], item_col)

    user_labels, item_labels, seen = _fitted_parts(model)
    n_items = len(item_labels)

    # Distinct (user, item) label pairs of the test data.
    user_code, _ = _codes(users, user_col)
    item_code, n_codes = _codes(items, item_col)
    _, first = np.unique(user_code * n_codes + item_code, return_index=True)
    pair_user = _index_in(users.take(pa.array(first)), user_labels)
    pair_item = _index_in(items.take(pa.array(first)), item_labels)
    pair_code = item_code[first]

    known = pair_user >= 0
    unknown_users = len(np.unique(user_code[first][~known]))
    if not known.any():
        hint = ""
        model_str = user_labels.dtype == object
        if model_str != pa.types.is_large_string(users.type):
            what = "strings" if model_str else "integers"
            hint = f" (the model's user labels are {what}, column {user_col!r} holds {users.type})"
        raise ValueError(
            f"none of the {unknown_users} test customers are in the model{hint}: evaluate on "
            "customers the model was trained on"
        )
    pair_user, pair_item, pair_code = pair_user[known], pair_item[known], pair_code[known]

    # Drop the pairs bought in training (by the structure of the seen matrix).
    seen_keys = np.repeat(np.arange(seen.shape[0], dtype=np.int64), np.diff(seen.indptr))
    seen_keys = np.sort(seen_keys * n_items + seen.indices.astype(np.int64))
    in_model = pair_item >= 0
    repeat = np.zeros(len(pair_user), dtype=bool)
    repeat[in_model] = _member(seen_keys, pair_user[in_model] * n_items + pair_item[in_model])
    known_users = np.unique(pair_user)
    pair_user, pair_item, pair_code = pair_user[~repeat], pair_item[~repeat], pair_code[~repeat]

    eval_rows = np.unique(pair_user)
    counts = {
        "users": len(eval_rows),
        "unknown_users": int(unknown_users),
        "users_without_new_items": len(known_users) - len(eval_rows),
        "unknown_items": len(np.unique(pair_code[pair_item < 0])),
    }
    if len(eval_rows) == 0:
        raise ValueError(
            f"all {len(known_users)} known test customers bought only items they already had in "
            "training: there is nothing new to recommend to them"
        )
    row_of_pair = np.searchsorted(eval_rows, pair_user)
    n_relevant = np.bincount(row_of_pair, minlength=len(eval_rows))

    top = np.full((len(eval_rows), k), -1, dtype=np.int64)
    for start in range(0, len(eval_rows), _EVAL_CHUNK):
        rows = eval_rows[start : start + _EVAL_CHUNK]
        labels, scores = model.batch_recommend(
            n=k, exclude_seen=True, users=user_labels[rows], format="numpy"
        )
        labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
        # The output is min(k, n_items) wide; the columns past it stay padding.
        if (
            labels.ndim != 2
            or labels.shape[0] != len(rows)
            or labels.shape[1] > k
            or scores.shape != labels.shape
        ):
            raise ValueError(
                f"model.batch_recommend returned shapes {labels.shape} and {scores.shape}; "
                f"expected ({len(rows)}, <= {k})"
            )
        valid = ~np.isnan(scores)  # NaN marks padding slots
        block = np.full(labels.shape, -1, dtype=np.int64)
        block[valid] = _index_in(_label_array(_labels(labels[valid])), item_labels)
        width = int(labels.shape[1])
        top[start : start + len(rows), :width] = block

    # Hit matrix: is (evaluated user row, recommended item) one of the relevant pairs?
    rel = pair_item >= 0
    rel_keys = np.sort(row_of_pair[rel] * n_items + pair_item[rel])
    slot = top >= 0
    rec_keys = np.arange(len(eval_rows), dtype=np.int64)[:, None] * n_items + top
    hits = np.zeros(top.shape, dtype=bool)
    hits[slot] = _member(rel_keys, rec_keys[slot])

    metrics = _ranking_metrics(hits, n_relevant, k)
    coverage = len(np.unique(top[slot])) / n_items if n_items else 0.0
    out: dict[str, Any] = {f"{name}@{k}": value for name, value in metrics.items()}
    out[f"coverage@{k}"] = float(coverage)
    out.update(counts)
    return out
