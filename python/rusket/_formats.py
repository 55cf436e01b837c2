"""The one exporter: every public output is built as a ``pyarrow.Table`` and converted here.

Models never carry their own format switch; they call :func:`convert`. Column names and types are
the same in every format, so exports and recommendations join on ``user_id`` / ``item_id``.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa

from rusket._optional import require

FORMATS = ("pandas", "polars", "arrow", "numpy", "spark")


def check_format(format: str) -> str:
    """Return ``format`` if it is supported, else raise a ``ValueError`` naming the choices."""
    if not isinstance(format, str) or format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(map(repr, FORMATS))}; got {format!r}")
    return format


def vectors_to_arrow(vectors: np.ndarray) -> pa.FixedSizeListArray:
    """A ``(n, d)`` float32 matrix as an Arrow ``fixed_size_list<float32, d>`` array (no copy)."""
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    if v.ndim != 2:
        raise ValueError(f"vectors must be 2-d, got shape {v.shape}")
    return pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), v.shape[1])


def _column_to_numpy(col: pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_fixed_size_list(col.type):
        arr = col.combine_chunks()
        flat = arr.flatten().to_numpy(zero_copy_only=False)
        return flat.reshape(len(arr), col.type.list_size)
    return col.to_numpy()


def spark_compatible(table: pa.Table) -> pa.Table:
    """Spark takes variable-size lists: ``list<float32>``, read back as ``array<float>``."""
    cols = []
    for field, col in zip(table.schema, table.columns):
        if pa.types.is_fixed_size_list(field.type):
            col = col.cast(pa.list_(field.type.value_type))
        cols.append(col)
    return pa.table(cols, names=table.column_names)


def spark_to_arrow(df: Any) -> pa.Table:
    """Collect a Spark DataFrame to the driver as a pyarrow Table, through Arrow (never row by row).

    The one place that collects: PySpark 4 has ``DataFrame.toArrow``; the version-specific
    fallbacks live here too.
    """
    return df.toArrow()


def arrow_to_spark(spark: Any, table: pa.Table) -> Any:
    """Create a Spark DataFrame from a pyarrow Table (the one place that does).

    Fixed-size list columns become ``array<float>`` (see :func:`spark_compatible`).
    """
    return spark.createDataFrame(spark_compatible(table))


def get_spark() -> Any:
    """The active (or default) SparkSession, or a new quiet local one using every core.

    Exports and ``format="spark"`` outputs use this; see :func:`rusket.spark.local_session`
    for the settings of the new session.

    Examples
    --------
    >>> spark = get_spark()  # doctest: +SKIP
    """
    from rusket.spark import local_session

    return local_session(cores=os.cpu_count() or 1)


def convert(table: pa.Table, format: str) -> Any:
    """Turn an Arrow table into the requested format.

    ``"numpy"`` gives a ``dict`` of column name to array (a fixed-size-list column becomes a 2-d
    array); callers with a richer numpy contract (``batch_recommend``) build it themselves.

    Examples
    --------
    >>> t = pa.table({"user_id": [1, 2], "score": [0.5, 0.25]})
    >>> convert(t, "pandas").shape
    (2, 2)
    >>> convert(t, "numpy")["score"].tolist()
    [0.5, 0.25]
    """
    check_format(format)
    if format == "arrow":
        return table
    if format == "numpy":
        return {name: _column_to_numpy(table[name]) for name in table.column_names}
    if format == "pandas":
        require("pandas")
        return table.to_pandas()
    if format == "polars":
        pl = require("polars")
        return pl.from_arrow(table)
    return arrow_to_spark(get_spark(), table)
