"""The one exporter: every public output is built as a ``pyarrow.Table`` and converted here.

Models never carry their own format switch; they call :func:`convert`. Column names and types are
the same in every format, so exports and recommendations join on ``user_id`` / ``item_id``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
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
    """Spark takes variable-size lists: ``list<float32>``, read back as ``array<float>``.

    Every column also gets at least one chunk (PySpark 4 fails on a nested column of none, which
    an empty table may have).
    """
    cols = []
    for field, col in zip(table.schema, table.columns):
        if pa.types.is_fixed_size_list(field.type):
            col = col.cast(pa.list_(field.type.value_type))
        if col.num_chunks == 0:
            col = pa.chunked_array([pa.array([], col.type)], col.type)
        cols.append(col)
    return pa.table(cols, names=table.column_names)


def _pyspark_major() -> int:
    import pyspark

    head = str(getattr(pyspark, "__version__", "0")).split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def _is_connect(obj: Any) -> bool:
    """Whether ``obj`` (a SparkSession or DataFrame) belongs to Spark Connect (no JVM here)."""
    return type(obj).__module__.startswith("pyspark.sql.connect")


def spark_to_arrow(df: Any) -> pa.Table:
    """Collect a Spark DataFrame to the driver as a pyarrow Table, through Arrow (never row by row).

    The one place that collects, on every PySpark this package supports:

    - PySpark 4 (classic and Spark Connect): ``DataFrame.toArrow()``;
    - PySpark 3.5 classic (Databricks LTS 14.3 to 16.4): the Arrow batches that ``toPandas``
      collects (``_collect_as_arrow``), assembled and cast to the schema ``toArrow`` gives in
      PySpark 4 (timestamps in UTC, the DataFrame's nullability), so both versions return the
      same table;
    - PySpark 3.5 Spark Connect: the Arrow table the Connect client receives.

    Examples
    --------
    >>> spark_to_arrow(spark.range(3)).column("id").to_pylist()  # doctest: +SKIP
    [0, 1, 2]
    """
    if hasattr(df, "toArrow"):
        return df.toArrow()
    from pyspark.sql.pandas.types import to_arrow_schema

    schema = to_arrow_schema(df.schema)
    if _is_connect(df):  # PySpark 3.5 over Spark Connect
        client = df._session.client
        table, _ = client.to_table(df._plan.to_proto(client))
        return table.cast(schema) if table.num_columns else schema.empty_table()
    batches = df._collect_as_arrow()
    if not batches:
        return schema.empty_table()
    return pa.Table.from_batches(batches).cast(schema)


def _spark_ready_pandas(table: pa.Table) -> Any:
    """``table`` as a pandas frame PySpark 3.5 turns back into exactly ``table``'s values.

    Integer columns with nulls become object columns of ints and ``None`` (pandas would make
    them float64 and lose int64 precision); float columns with nulls or NaN become pandas'
    masked float arrays (PySpark reads NaN in a plain float column as null); every other
    column converts as pyarrow does.
    """
    pd = require("pandas")
    frame = table.to_pandas()
    for name, col in zip(table.column_names, table.columns):
        if pa.types.is_integer(col.type) and col.null_count:
            frame[name] = pd.Series(col.to_pylist(), dtype=object, index=frame.index)
        elif pa.types.is_floating(col.type) and len(col):
            values = np.asarray(col.to_numpy(zero_copy_only=False))  # nulls read as NaN
            if col.null_count or np.isnan(values).any():
                mask = np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
                masked = pd.arrays.FloatingArray(values.astype(values.dtype, copy=True), mask)
                frame[name] = pd.Series(masked, index=frame.index)
    return frame


# Above this many bytes a table becomes a distributed Spark frame, not a LocalRelation.
LOCAL_RELATION_MAX_BYTES = 1 << 20
# The largest Arrow batch (one partition) arrow_to_spark sends: far below the JVM's 2 GiB arrays.
BATCH_MAX_BYTES = 64 << 20
_THRESHOLD = "spark.sql.execution.arrow.localRelationThreshold"
_BATCH_ROWS = "spark.sql.execution.arrow.maxRecordsPerBatch"


@contextlib.contextmanager
def session_conf(spark: Any, settings: Mapping[str, str]) -> Iterator[bool]:
    """Set SQL settings of ``spark`` for the duration of a block, then restore them exactly.

    A setting the session had not set is unset again afterwards (so it keeps following Spark's
    default); one it had set gets its value back, also when the block raises. Yields whether
    the settings took effect: a session that refuses one (e.g. a locked-down cluster) is left
    as it was and the block runs with the session's own settings. Threads sharing the session
    see the settings while the block runs.

    Examples
    --------
    >>> with session_conf(spark, {"spark.sql.shuffle.partitions": "2"}):  # doctest: +SKIP
    ...     rows = df.groupBy("k").count().collect()
    """
    saved: dict[str, str | None] = {}

    def restore() -> None:
        for key, previous in saved.items():
            with contextlib.suppress(Exception):
                if previous is None:
                    spark.conf.unset(key)
                else:
                    spark.conf.set(key, previous)
        saved.clear()

    applied = True
    try:
        for key, value in settings.items():
            old = spark.conf.get(key, None)
            spark.conf.set(key, value)
            saved[key] = old
    except Exception:  # a session that does not let us change a setting: leave it as it was
        restore()
        applied = False
    try:
        yield applied
    finally:
        restore()


def _transfer_settings(spark: Any, table: pa.Table, partitions: int | None) -> dict[str, str]:
    """The Arrow settings :func:`arrow_to_spark` uses for ``table`` on a classic session.

    By default PySpark turns an Arrow table under 48 MiB
    (``spark.sql.execution.arrow.localRelationThreshold``) into a ``LocalRelation``: every row
    converted on the driver, and serialized again into the tasks of every action on the frame
    (942k rows of ``batch_recommend``: ~1 s to create, ~2 s per ``count()`` on 2 cores). Above
    :data:`LOCAL_RELATION_MAX_BYTES` (or when ``partitions`` is given) the threshold is set to 0
    so that the batches become a distributed frame read in place, in ``partitions`` (default:
    the default parallelism) batches of at most :data:`BATCH_MAX_BYTES`, instead of one
    partition per 10,000 rows (``spark.sql.execution.arrow.maxRecordsPerBatch``).
    Small tables keep PySpark's defaults (a ``LocalRelation`` needs no job to show).
    """
    if _is_connect(spark) or (partitions is None and table.nbytes <= LOCAL_RELATION_MAX_BYTES):
        return {}
    rows = max(table.num_rows, 1)
    parts = partitions or max(int(spark.sparkContext.defaultParallelism), 1)
    per_batch = -(-rows // parts)
    per_batch = min(per_batch, max(BATCH_MAX_BYTES * rows // max(table.nbytes, 1), 1))
    return {_THRESHOLD: "0", _BATCH_ROWS: str(per_batch)}


def arrow_to_spark(spark: Any, table: pa.Table, partitions: int | None = None) -> Any:
    """Create a Spark DataFrame from a pyarrow Table (the one place that does).

    Fixed-size list columns become ``array<float>`` (see :func:`spark_compatible`). PySpark 4
    (classic and Spark Connect) takes the Arrow table itself; PySpark 3.5 takes it as a pandas
    frame together with the Spark schema derived from the Arrow schema, so that column types
    are the same on both (``bigint`` ids stay ``bigint`` even with nulls, ``float`` stays
    ``float``, timestamps keep their instant). With
    ``spark.sql.execution.arrow.pyspark.enabled`` on (as in :func:`rusket.spark.local_session`
    and on Databricks), 3.5 transfers that frame through Arrow too and the values are exact;
    with it off, 3.5 converts row by row and a null float may come back as NaN.

    On a classic session a table over :data:`LOCAL_RELATION_MAX_BYTES` (or any table when
    ``partitions`` is given) becomes a distributed frame of ``partitions`` Arrow batches
    (default: the session's default parallelism), not a driver-side ``LocalRelation`` (see
    :func:`_transfer_settings`); the two Arrow settings this needs are set only while the frame
    is created and restored right after (:func:`session_conf`). Spark Connect sessions are left
    to their own transfer.

    Examples
    --------
    >>> sdf = arrow_to_spark(spark, pa.table({"user_id": [1, 2]}))  # doctest: +SKIP
    >>> sdf.schema.simpleString()  # doctest: +SKIP
    'struct<user_id:bigint>'
    """
    from pyspark.sql.pandas.types import from_arrow_schema

    table = spark_compatible(table)
    schema = from_arrow_schema(table.schema)
    with session_conf(spark, _transfer_settings(spark, table, partitions)):
        if _pyspark_major() >= 4:
            # Spark Connect infers no schema from an empty table: give it (the same as inferred).
            return spark.createDataFrame(table, schema=schema if table.num_rows == 0 else None)
        return spark.createDataFrame(_spark_ready_pandas(table), schema=schema)


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
