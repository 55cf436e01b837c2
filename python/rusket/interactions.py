"""From any data frame to a user x item sparse matrix with the labels kept both ways.

pandas, polars (eager and lazy), pyarrow and Spark frames are all read through Arrow: the
requested columns are selected first (Spark collects them with ``toArrow``, never row by row),
checked, then the ids are encoded against their sorted unique labels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp


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


def _columns_of(data: Any, kind: str) -> list[str]:
    if kind == "polars-lazy":
        return list(data.collect_schema().names())
    if kind in ("arrow", "arrow-batch"):
        return list(data.schema.names)
    return [str(c) for c in data.columns]


def to_arrow(data: Any, columns: list[str]) -> pa.Table:
    """Select ``columns`` of any supported frame as a pyarrow Table.

    Raises ``KeyError`` naming a missing column and ``TypeError`` for an unsupported object.

    Examples
    --------
    >>> import pyarrow as pa
    >>> to_arrow(pa.table({"a": [1], "b": [2]}), ["b"]).column_names
    ['b']
    """
    kind = _kind(data)
    available = _columns_of(data, kind)
    for c in columns:
        if c not in available:
            raise KeyError(
                f"column {c!r} is not in the data; available columns: {available}. "
                "Pass the right name to transaction_col / item_col / rating_col."
            )
    if kind == "arrow":
        return data.select(columns)
    if kind == "arrow-batch":
        return pa.Table.from_batches([data]).select(columns)
    if kind == "pandas":
        return pa.Table.from_pandas(data[columns], preserve_index=False)
    if kind == "polars":
        return data.select(columns).to_arrow()
    if kind == "polars-lazy":
        return data.select(columns).collect().to_arrow()
    return data.select(*columns).toArrow()


def _plain(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Decode dictionary columns and normalise string flavours to ``large_string``."""
    if pa.types.is_dictionary(col.type):
        col = col.cast(col.type.value_type)
    if pa.types.is_string(col.type) or pa.types.is_string_view(col.type):
        col = col.cast(pa.large_string())
    return col


def _check_ids(col: pa.ChunkedArray, name: str) -> pa.ChunkedArray:
    col = _plain(col)
    if col.null_count:
        raise ValueError(
            f"column {name!r} has {col.null_count} null id(s) out of {len(col)} rows; "
            "drop or fill them before fitting"
        )
    t = col.type
    if pa.types.is_integer(t):
        return col.cast(pa.int64())
    if pa.types.is_large_string(t):
        return col
    raise TypeError(
        f"column {name!r} has type {t}; ids must be integers or strings "
        f"(cast it, e.g. .astype('int64') or .astype(str))"
    )


def _check_ratings(col: pa.ChunkedArray, name: str) -> np.ndarray:
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
        user_col: str,
        item_col: str,
        rating_col: str | None = None,
    ) -> Interactions:
        """Read ``(user, item[, rating])`` rows; duplicates are summed; no ``rating_col`` counts 1.

        Examples
        --------
        >>> import pyarrow as pa
        >>> t = pa.table({"u": ["a", "b", "a"], "i": [1, 2, 1]})
        >>> x = Interactions.from_frame(t, "u", "i")
        >>> x.matrix.toarray().tolist(), x.user_labels.tolist()
        ([[2.0, 0.0], [0.0, 1.0]], ['a', 'b'])
        """
        for arg, value in (("transaction_col", user_col), ("item_col", item_col)):
            if not isinstance(value, str):
                raise TypeError(f"{arg} must be a column name (str), got {value!r}")
        if rating_col is not None and not isinstance(rating_col, str):
            raise TypeError(f"rating_col must be a column name (str) or None, got {rating_col!r}")
        cols = [user_col, item_col] + ([rating_col] if rating_col is not None else [])
        if len(set(cols)) != len(cols):
            raise ValueError(f"transaction_col, item_col and rating_col must differ; got {cols}")
        table = to_arrow(data, cols)
        if table.num_rows == 0:
            raise ValueError("the data has no rows: a model needs at least one interaction")
        users = _check_ids(table[user_col], user_col)
        items = _check_ids(table[item_col], item_col)
        if rating_col is None:
            values = np.ones(table.num_rows)
        else:
            values = _check_ratings(table[rating_col], rating_col)
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
