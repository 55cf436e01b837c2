"""From any data frame to a user x item sparse matrix with the labels kept both ways.

pandas, polars (eager and lazy), pyarrow and Spark frames are all read through Arrow: the
requested columns are selected first (Spark collects them with ``toArrow``, never row by row),
checked, then the ids are encoded against their sorted unique labels.
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


def _plain(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Decode dictionary columns and normalise string flavours to ``large_string``."""
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if pa.types.is_string(col.type) or pa.types.is_string_view(col.type):
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
    n_bad = int(np.count_nonzero(~np.isfinite(values)))
    if n_bad:
        raise ValueError(
            f"{where} has {n_bad} null, NaN or infinite rating(s); drop or fill them before fitting"
        )
    n_neg = int(np.count_nonzero(values < 0))
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
        check_column_name("transaction_col", user_col)
        check_column_name("item_col", item_col)
        check_column_name("rating_col", rating_col, optional=True)
        cols = [user_col, item_col] + ([rating_col] if rating_col is not None else [])
        if any(_same_name(a, b) for k, a in enumerate(cols) for b in cols[k + 1 :]):
            raise ValueError(f"transaction_col, item_col and rating_col must differ; got {cols}")
        table = to_arrow(data, cols)
        if table.num_rows == 0:
            raise ValueError("the data has no rows: a model needs at least one interaction")
        # By position: integer pandas names became the Arrow field names "0", "1"...
        users = _check_ids(table.column(0), user_col)
        items = _check_ids(table.column(1), item_col)
        if rating_col is None:
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
