"""From any data frame to a user x item sparse matrix with the labels kept both ways.

pandas, polars (eager and lazy) and pyarrow frames are read through Arrow: the requested columns
are selected first, checked, then the ids are encoded against their sorted unique labels.

A Spark frame is summed in Spark first: one ``groupBy(user, item)`` gives one row per distinct
pair (with a flag for pairs holding a bad rating), and only that compact result travels to the
driver, through Arrow. The driver's memory then follows the distinct pairs, not the order lines.
Bad rows (null ids, null, NaN, infinite or negative ratings) are counted by a second Spark job
only when the first one found some, so the errors name the same counts as the pandas path.
Labels are the same sorted labels. Sums of three or more float amounts of one pair may differ
from the pandas path's in the last bit (float addition is not associative, and neither Spark's
shuffle nor scipy's duplicate summing fixes an order); counts and exactly representable sums
are equal, and the float32 confidences of ``ALS`` absorb the rest (bit-identical factors unless a
sum lies within ~2**-29 of a float32 rounding boundary).
"""

from __future__ import annotations

import numbers
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from rusket._formats import spark_to_arrow


def _never(_: Any) -> bool:
    """Stands in for type predicates missing from older pyarrow (``is_string_view`` is 16+)."""
    return False


def _kind(data: Any) -> str:
    mod = type(data).__module__.split(".")[0]
    name = type(data).__name__
    if isinstance(data, pa.Table):
        return "arrow"
    if isinstance(data, pa.RecordBatch):
        return "arrow-batch"
    if mod == "pandas" and name == "DataFrame":
        return "pandas"
    if mod == "polars" and name in ("DataFrame", "LazyFrame"):
        return "polars-lazy" if name == "LazyFrame" else "polars"
    if mod == "pyspark" and name == "DataFrame":
        return "spark"
    raise TypeError(
        "data must be a pandas, polars (eager or lazy), pyarrow or Spark DataFrame; "
        f"got {type(data).__module__}.{name}"
    )


def _columns_of(data: Any, kind: str) -> list[Any]:
    """The column names as the frame holds them: strings, except pandas, whose columns may also
    be integers (``pd.read_csv(header=None)`` names them 0, 1, 2, ...)."""
    if kind == "polars-lazy":
        return list(data.collect_schema().names())
    if kind in ("arrow", "arrow-batch"):
        return list(data.schema.names)
    return list(data.columns)


def check_column_name(arg: str, value: Any, *, optional: bool = False) -> None:
    """A column name is a string or an integer (pandas frames read without a header line name
    their columns 0, 1, 2, ...); ``TypeError`` naming the argument otherwise.

    >>> check_column_name("item_col", 1)
    >>> check_column_name("item_col", True)
    Traceback (most recent call last):
    ...
    TypeError: item_col must be a column name (str, or int for pandas columns), got True
    """
    if value is None and optional:
        return
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (str, numbers.Integral)):
        raise TypeError(
            f"{arg} must be a column name (str, or int for pandas columns)"
            + (" or None" if optional else "")
            + f", got {value!r}"
        )


def _pandas_to_arrow(data: Any, columns: list[Any]) -> pa.Table:
    """The pandas columns ``columns`` as an Arrow table (fields named ``str(column)``); a column
    Arrow cannot read (an object column mixing numbers and strings, say) is a ``TypeError``
    naming it instead of Arrow's own error."""
    names = list(data.columns)
    for c in columns:
        count = sum(1 for name in names if _same_name(name, c))
        if count > 1:
            raise ValueError(
                f"column {c!r} appears {count} times in the data; rename the duplicates "
                "(e.g. df.columns = [...]) before fitting"
            )
    arrays = []
    for c in columns:
        try:
            arr = pa.array(data[c], from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise TypeError(
                f"column {c!r} (dtype {data[c].dtype}) does not hold one type: {exc}. Ids must "
                "be all integers or all strings, ratings all numbers (cast the column, e.g. "
                ".astype(str) or .astype(float))"
            ) from exc
        arrays.append(arr if isinstance(arr, pa.ChunkedArray) else pa.chunked_array([arr]))
    return pa.table(arrays, names=[str(c) for c in columns])


def _same_name(a: Any, b: Any) -> bool:
    """Column-name equality that never treats ``True`` as ``1`` nor raises on odd objects."""
    if isinstance(a, (bool, np.bool_)) != isinstance(b, (bool, np.bool_)):
        return False
    if not isinstance(a, Hashable) or not isinstance(b, Hashable):
        return False
    try:
        return bool(a == b)
    except Exception:  # an exotic label type whose == fails: not the same name
        return False


def to_arrow(data: Any, columns: list[Any]) -> pa.Table:
    """Select ``columns`` of any supported frame as a pyarrow Table, in that order.

    Raises ``KeyError`` naming a missing column and ``TypeError`` for an unsupported object.
    Integer column names (pandas) become the field names ``"0"``, ``"1"``...: read the table's
    columns by position.

    Examples
    --------
    >>> import pyarrow as pa
    >>> to_arrow(pa.table({"a": [1], "b": [2]}), ["b"]).column_names
    ['b']
    """
    kind = _kind(data)
    available = _columns_of(data, kind)
    for c in columns:
        if not any(_same_name(a, c) for a in available):
            raise KeyError(
                f"column {c!r} is not in the data; available columns: {available}. "
                "Pass the right name to transaction_col / item_col / rating_col."
            )
    if kind == "arrow":
        return data.select(columns)
    if kind == "arrow-batch":
        return pa.Table.from_batches([data]).select(columns)
    if kind == "pandas":
        return _pandas_to_arrow(data, columns)
    if kind == "polars":
        return data.select(columns).to_arrow()
    if kind == "polars-lazy":
        return data.select(columns).collect().to_arrow()
    return spark_to_arrow(data.select(*columns))


def _spark_positions(data: Any, columns: list[Any]) -> list[int]:
    """Positions of ``columns`` among a Spark frame's columns (exact names, each present once)."""
    names = list(data.columns)
    positions = []
    for c in columns:
        hits = [k for k, name in enumerate(names) if _same_name(name, c)]
        if not hits:
            raise KeyError(
                f"column {c!r} is not in the data; available columns: {names}. "
                "Pass the right name to transaction_col / item_col / rating_col."
            )
        if len(hits) > 1:
            raise ValueError(
                f"column {c!r} appears {len(hits)} times in the data; rename the duplicates "
                "(e.g. df.toDF(...)) before fitting"
            )
        positions.append(hits[0])
    return positions


def _check_spark_id_type(dtype: Any, name: Any) -> None:
    """Spark's counterpart of :func:`_check_ids` for the types, read from the schema alone."""
    from pyspark.sql import types as T

    if isinstance(dtype, T.BooleanType):
        raise TypeError(
            f"column {name!r} holds booleans; ids must be integers or strings (a boolean is no "
            "customer or article id: pass the id column itself)"
        )
    ok = (T.ByteType, T.ShortType, T.IntegerType, T.LongType, T.StringType, T.NullType)
    ok += tuple(getattr(T, t) for t in ("CharType", "VarcharType") if hasattr(T, t))
    if not isinstance(dtype, ok):
        raise TypeError(
            f"column {name!r} has type {dtype.simpleString()}; ids must be integers or strings "
            f"(cast it in Spark, e.g. F.col({name!r}).cast('long') or .cast('string'))"
        )


@dataclass(frozen=True)
class SparkPairs:
    """A Spark frame's distinct ``(user, item)`` pairs, summed in Spark (nothing collected).

    ``pairs`` has columns ``u``, ``i`` (the ids as Spark holds them) and ``v`` (float64): the
    summed rating, or the row count without a rating column; ratings are cast to double before
    summing, as the pandas path does. A pair holding a null, NaN, infinite or negative rating
    has ``v = NaN``; a null id shows as a null ``u`` / ``i``: :meth:`raise_bad_rows` then counts
    the bad rows with a second job and raises the pandas path's error.
    """

    pairs: Any
    frame: Any
    selected: list[Any]
    cols: list[Any]

    def raise_bad_rows(self) -> None:
        _raise_spark_bad_rows(self.frame, self.selected, self.cols)


def check_columns(user_col: Any, item_col: Any, rating_col: Any) -> list[Any]:
    """The three column arguments checked: names, and all different."""
    check_column_name("transaction_col", user_col)
    check_column_name("item_col", item_col)
    check_column_name("rating_col", rating_col, optional=True)
    cols = [user_col, item_col] + ([rating_col] if rating_col is not None else [])
    if any(_same_name(a, b) for k, a in enumerate(cols) for b in cols[k + 1 :]):
        raise ValueError(f"transaction_col, item_col and rating_col must differ; got {cols}")
    return cols


def spark_pairs(data: Any, user_col: Any, item_col: Any, rating_col: Any) -> SparkPairs:
    """Sum a Spark frame's ``(user, item)`` pairs in Spark (see :class:`SparkPairs`).

    Column names and types are checked from the schema; no job runs here.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    cols = [user_col, item_col] + ([rating_col] if rating_col is not None else [])
    positions = _spark_positions(data, cols)
    fields = data.schema.fields
    _check_spark_id_type(fields[positions[0]].dataType, user_col)
    _check_spark_id_type(fields[positions[1]].dataType, item_col)
    if rating_col is not None:
        dtype = fields[positions[2]].dataType
        if not isinstance(dtype, T.NumericType):
            raise TypeError(
                f"column {rating_col!r} has type {dtype.simpleString()}; ratings must be numeric "
                f"(cast it in Spark, e.g. F.col({rating_col!r}).cast('double'))"
            )
    # Renamed by position: names with dots, backticks or odd characters never get parsed.
    frame = data.toDF(*[f"_rusket_{k}" for k in range(len(data.columns))])
    selected = [F.col(f"_rusket_{k}") for k in positions]
    if rating_col is None:
        value = F.count(F.lit(1)).cast("double")
    else:
        # One sum per pair: a bad rating enters it as NaN, and NaN stays NaN through the sum.
        r = selected[2].cast("double")
        bad = r.isNull() | F.isnan(r) | (F.abs(r) == F.lit(float("inf"))) | (r < 0)
        value = F.sum(F.when(bad, F.lit(float("nan"))).otherwise(r))
    pairs = frame.groupBy(selected[0].alias("u"), selected[1].alias("i")).agg(value.alias("v"))
    return SparkPairs(pairs, frame, selected, cols)


def _spark_pairs(data: Any, user_col: Any, item_col: Any, rating_col: Any) -> pa.Table:
    """The pairs of :func:`spark_pairs`, collected through Arrow (``u``, ``i``, ``v``), or the
    pandas path's error for bad rows."""
    sp_pairs = spark_pairs(data, user_col, item_col, rating_col)
    table = spark_to_arrow(sp_pairs.pairs)
    has_null_ids = table.column(0).null_count > 0 or table.column(1).null_count > 0
    has_bad = rating_col is not None and bool(pc.any(pc.is_nan(table.column(2))).as_py())
    if has_null_ids or has_bad:
        sp_pairs.raise_bad_rows()
    return table


def _raise_spark_bad_rows(frame: Any, selected: list[Any], cols: list[Any]) -> None:
    """Count the bad rows of a Spark frame in Spark and raise the pandas path's error."""
    from pyspark.sql import functions as F

    exprs = [
        F.count(F.lit(1)).alias("rows"),
        F.sum(selected[0].isNull().cast("long")).alias("null_users"),
        F.sum(selected[1].isNull().cast("long")).alias("null_items"),
    ]
    if len(cols) == 3:
        r = selected[2].cast("double")
        nonfinite = r.isNull() | F.isnan(r) | (F.abs(r) == F.lit(float("inf")))
        exprs.append(F.sum(nonfinite.cast("long")).alias("nonfinite"))
        exprs.append(F.sum((r < 0).cast("long")).alias("negative"))
    counts = {k: int(v or 0) for k, v in spark_to_arrow(frame.agg(*exprs)).to_pylist()[0].items()}
    for key, name in (("null_users", cols[0]), ("null_items", cols[1])):
        if counts[key]:
            raise ValueError(
                f"column {name!r} has {counts[key]} null id(s) out of {counts['rows']} rows; "
                "drop or fill them before fitting"
            )
    if len(cols) == 3:
        _raise_bad_values(counts["nonfinite"], counts["negative"], f"column {cols[2]!r}")
    raise ValueError(
        "the Spark frame gave bad rows in one read and none in the next: its rows change from "
        "one computation to the next (a random or streaming source?); persist or checkpoint it "
        "(e.g. df.localCheckpoint()) before fitting"
    )


def _plain(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Decode dictionary columns and normalise string flavours to ``large_string``."""
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if pa.types.is_string(col.type) or getattr(pa.types, "is_string_view", _never)(col.type):
        col = col.cast(pa.large_string())
    return col


def _check_ids(col: pa.ChunkedArray, name: Any) -> pa.ChunkedArray:
    col = _plain(col)
    t = col.type
    if pa.types.is_boolean(t):
        raise TypeError(
            f"column {name!r} holds booleans; ids must be integers or strings (a boolean is no "
            "customer or article id: pass the id column itself)"
        )
    if col.null_count:
        raise ValueError(
            f"column {name!r} has {col.null_count} null id(s) out of {len(col)} rows; "
            "drop or fill them before fitting"
        )
    if pa.types.is_uint64(t) and len(col):
        top = pc.max(col).as_py()
        if top is not None and top > np.iinfo(np.int64).max:
            raise ValueError(
                f"column {name!r} has ids up to {top}, beyond int64: integer ids must fit int64 "
                "(at most 2**63 - 1). Map them to smaller integers or to strings "
                "(e.g. .astype(str))"
            )
    if pa.types.is_integer(t):
        return col.cast(pa.int64())
    if pa.types.is_large_string(t):
        return col
    raise TypeError(
        f"column {name!r} has type {t}; ids must be integers or strings "
        f"(cast it, e.g. .astype('int64') or .astype(str))"
    )


def _check_ratings(col: pa.ChunkedArray, name: Any) -> np.ndarray:
    col = _plain(col)
    t = col.type
    if not (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)):
        raise TypeError(f"column {name!r} has type {t}; ratings must be numeric (cast it to float)")
    values = col.cast(pa.float64()).fill_null(np.nan).to_numpy()
    check_values(values, f"column {name!r}")
    return values


def check_values(values: np.ndarray, where: str) -> None:
    """Ratings must be finite and >= 0; the error counts the bad ones and says where they are."""
    _raise_bad_values(
        int(np.count_nonzero(~np.isfinite(values))), int(np.count_nonzero(values < 0)), where
    )


def _raise_bad_values(n_bad: int, n_neg: int, where: str) -> None:
    if n_bad:
        raise ValueError(
            f"{where} has {n_bad} null, NaN or infinite rating(s); drop or fill them before fitting"
        )
    if n_neg:
        raise ValueError(
            f"{where} has {n_neg} negative rating(s); implicit feedback needs values >= 0 "
            "(filter returns/refunds out, or clip them at 0)"
        )


def _encode(col: pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted unique labels (int64 or object str array) and the int64 code of every row."""
    uniq = pc.unique(col)
    uniq = uniq.take(pc.sort_indices(uniq))
    codes = pc.index_in(col, value_set=uniq).to_numpy()
    labels = uniq.to_numpy(zero_copy_only=False)
    if labels.dtype.kind not in "iu":
        labels = labels.astype(object)
    return labels, codes.astype(np.int64, copy=False)


@dataclass(frozen=True)
class Interactions:
    """A users x items matrix of summed ratings (CSR, float64) with the labels of its rows/cols.

    ``user_labels`` / ``item_labels`` are sorted; row ``k`` of ``matrix`` belongs to
    ``user_labels[k]``.
    """

    matrix: sp.csr_matrix
    user_labels: np.ndarray
    item_labels: np.ndarray

    @classmethod
    def from_frame(
        cls,
        data: Any,
        user_col: Any,
        item_col: Any,
        rating_col: Any = None,
    ) -> Interactions:
        """Read ``(user, item[, rating])`` rows; duplicates are summed; no ``rating_col`` counts 1.

        Column names are strings, or integers for pandas frames read without a header line.

        Examples
        --------
        >>> import pyarrow as pa
        >>> t = pa.table({"u": ["a", "b", "a"], "i": [1, 2, 1]})
        >>> x = Interactions.from_frame(t, "u", "i")
        >>> x.matrix.toarray().tolist(), x.user_labels.tolist()
        ([[2.0, 0.0], [0.0, 1.0]], ['a', 'b'])
        """
        cols = check_columns(user_col, item_col, rating_col)
        spark = _kind(data) == "spark"
        # Spark: one row per distinct pair, already summed and checked in Spark.
        if spark:
            table = _spark_pairs(data, user_col, item_col, rating_col)
        else:
            table = to_arrow(data, cols)
        if table.num_rows == 0:
            raise ValueError("the data has no rows: a model needs at least one interaction")
        # By position: integer pandas names became the Arrow field names "0", "1"...
        users = _check_ids(table.column(0), user_col)
        items = _check_ids(table.column(1), item_col)
        if spark:
            values = table.column(2).to_numpy()
        elif rating_col is None:
            values = np.ones(table.num_rows)
        else:
            values = _check_ratings(table.column(2), rating_col)
        user_labels, u = _encode(users)
        item_labels, i = _encode(items)
        return cls.from_codes(u, i, values, user_labels, item_labels)

    @classmethod
    def from_codes(
        cls,
        user_codes: np.ndarray,
        item_codes: np.ndarray,
        values: np.ndarray,
        user_labels: np.ndarray,
        item_labels: np.ndarray,
    ) -> Interactions:
        shape = (len(user_labels), len(item_labels))
        m = sp.csr_matrix((values.astype(np.float64), (user_codes, item_codes)), shape=shape)
        m.sum_duplicates()
        if not np.all(np.isfinite(m.data)):
            raise ValueError("summing duplicate (user, item) rows overflowed to infinity")
        m.eliminate_zeros()
        m.sort_indices()
        return cls(m, user_labels, item_labels)
