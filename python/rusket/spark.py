"""Spark helpers: a quick local session, Arrow in and out, and scoring inside the executors.

Everything here works on PySpark 3.5 (Databricks LTS 14.3 to 16.4) and 4.x, on classic
sessions and over Spark Connect (Databricks serverless and shared access mode, where there is no
``SparkContext``).

:func:`local_session` starts (or returns) a quiet embedded Spark for scripts, notebooks and
tests on one machine.

:func:`to_arrow` and :func:`from_arrow` move a Spark DataFrame to a ``pyarrow.Table`` and back
on every supported PySpark (``DataFrame.toArrow`` and ``createDataFrame(pa.Table)`` are PySpark
4 only).

:func:`batch_recommend` ships the item factors to the executors with the task closure, streams
the users (their vectors and seen items) through ``mapInArrow`` and runs the same exact Rust
top-k kernel on every Arrow batch, with ``spark.task.cpus`` threads per task. The result has the
schema of ``model.batch_recommend(format="spark")``: ``user_id, item_id, score, rank``. Works for
every rusket model (ALS, Popularity): all of them score by the dot products of their factors.

:func:`fit_als` trains on Spark's own engine (MLlib ALS, ``implicitPrefs=True``) when the
training pairs do not fit on the driver, and returns a regular fitted :class:`rusket.ALS`.

Needs PySpark (the runtime's, or the ``spark-local`` extra), and rusket installed on the
executors (as on a Databricks cluster with the wheel attached).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from rusket._formats import _is_connect, arrow_to_spark, get_spark, spark_to_arrow
from rusket._optional import require
from rusket._spark_fit import fit_als
from rusket._validation import MAX_THREADS, check_int, check_threads

__all__ = ["batch_recommend", "fit_als", "from_arrow", "local_session", "to_arrow"]

if TYPE_CHECKING:  # pragma: no cover
    from rusket._model import Recommender, _Fitted


def local_session(
    app_name: str = "rusket",
    cores: int = 2,
    *,
    driver_memory: str = "1g",
    shuffle_partitions: int | None = None,
    warehouse_dir: str | os.PathLike[str] | None = None,
    log_level: str = "ERROR",
    config: Mapping[str, Any] | None = None,
) -> Any:
    """A quick, quiet embedded Spark session on this machine, or the one already running.

    If a session is active (or a default one exists, as on Databricks or in a notebook that
    made one), it is returned **as is**: no argument is applied to it, so a cluster's settings
    are never changed. That includes a Spark Connect session (Databricks serverless), which has
    no ``SparkContext``; nothing here needs one. Otherwise a new ``local[cores]`` session starts
    (about 10 s) with settings for one machine:

    - Python workers run this interpreter: ``PYSPARK_PYTHON`` and ``PYSPARK_DRIVER_PYTHON`` are
      set to ``sys.executable`` unless already set (else ``mapInArrow`` may start a system
      ``python3`` without pyarrow or rusket); ``SPARK_LOCAL_IP`` defaults to ``127.0.0.1``;
    - no web UI, no console progress bars, log level ``log_level``;
    - ``shuffle_partitions`` shuffle partitions and default parallelism (not Spark's 200);
    - Arrow transfers on (``spark.sql.execution.arrow.pyspark.enabled``);
    - a warehouse and Derby home in a temporary folder, removed at exit (tables of the default
      in-memory catalog vanish with the session anyway);
    - a fast-starting JVM (C1 compiler only, serial GC): right for small local jobs.

    Parameters
    ----------
    app_name : str, default "rusket"
        The application name.
    cores : int, default 2
        Worker threads (``local[cores]``); ``os.cpu_count()`` uses the whole machine.
    driver_memory : str, default "1g"
        ``spark.driver.memory`` (the driver runs the local executors too).
    shuffle_partitions : int, optional
        ``spark.sql.shuffle.partitions`` and ``spark.default.parallelism``; defaults to
        ``cores``.
    warehouse_dir : str or path, optional
        ``spark.sql.warehouse.dir`` and the Derby home; a temporary folder by default.
    log_level : str, default "ERROR"
        Log level of the Spark context (``"WARN"``, ``"INFO"``...).
    config : mapping, optional
        More Spark settings, applied last (they override the ones above).

    Returns
    -------
    SparkSession
        The active or default session when there is one, else the new local session.

    Examples
    --------
    >>> import pandas as pd
    >>> import rusket.spark
    >>> spark = rusket.spark.local_session()  # doctest: +SKIP
    >>> spark.conf.get("spark.sql.execution.arrow.pyspark.enabled")  # doctest: +SKIP
    'true'
    >>> rusket.spark.local_session() is spark  # the running session is reused  # doctest: +SKIP
    True
    >>> orders = spark.createDataFrame(pd.DataFrame({"customer_id": [1, 2],
    ...                                              "article_id": [7, 8]}))  # doctest: +SKIP
    """
    if not isinstance(app_name, str):
        raise TypeError(f"app_name must be a string, got {type(app_name).__name__} {app_name!r}")
    cores = check_int("cores", cores, minimum=1)
    partitions = (
        cores
        if shuffle_partitions is None
        else check_int("shuffle_partitions", shuffle_partitions, minimum=1)
    )
    if config is not None and not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping of Spark settings, got {type(config).__name__}")
    require("pyspark")
    from pyspark.errors import PySparkRuntimeError
    from pyspark.sql import SparkSession

    try:
        return SparkSession.active()
    except PySparkRuntimeError:  # no active or default session: start one
        pass
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    if warehouse_dir is None:
        home = tempfile.mkdtemp(prefix="rusket-spark-")
        atexit.register(shutil.rmtree, home, ignore_errors=True)
        warehouse = os.path.join(home, "warehouse")
    else:
        home = warehouse = os.path.abspath(os.fspath(warehouse_dir))
    settings: dict[str, Any] = {
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.shuffle.partitions": str(partitions),
        "spark.default.parallelism": str(partitions),
        "spark.driver.memory": driver_memory,
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.warehouse.dir": warehouse,
        "spark.driver.extraJavaOptions": (
            f"-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Dderby.system.home={home}"
        ),
    }
    settings.update(config or {})
    builder = SparkSession.builder.master(f"local[{cores}]").appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    session = builder.getOrCreate()
    if not _is_connect(session):  # SPARK_REMOTE set: a Connect session has no SparkContext
        session.sparkContext.setLogLevel(log_level)
    return session


def to_arrow(df: Any) -> pa.Table:
    """Collect a Spark DataFrame to the driver as a ``pyarrow.Table``, through Arrow.

    ``DataFrame.toArrow()`` where PySpark has it (4.x, classic and Spark Connect); on PySpark
    3.5 the Arrow batches that ``toPandas`` collects, cast to the schema 4.x gives (timestamps
    in UTC), so the table is the same on both.

    Parameters
    ----------
    df : pyspark.sql.DataFrame
        A classic or Spark Connect DataFrame. It is not modified.

    Returns
    -------
    pyarrow.Table

    Examples
    --------
    >>> import rusket.spark
    >>> spark = rusket.spark.local_session()  # doctest: +SKIP
    >>> rusket.spark.to_arrow(spark.range(3)).column("id").to_pylist()  # doctest: +SKIP
    [0, 1, 2]
    """
    if type(df).__name__ != "DataFrame" or not type(df).__module__.startswith("pyspark"):
        raise TypeError(
            f"df must be a Spark DataFrame, got {type(df).__module__}.{type(df).__name__}"
        )
    return spark_to_arrow(df)


def from_arrow(table: pa.Table, spark: Any = None) -> Any:
    """A Spark DataFrame of a ``pyarrow.Table``, with the same column types on PySpark 3.5 and 4.x.

    ``fixed_size_list`` columns (rusket's vectors) become ``array<float>``; ``int64`` stays
    ``bigint`` and ``float32`` stays ``float``, nulls included.

    Parameters
    ----------
    table : pyarrow.Table
        The data. It is not modified.
    spark : SparkSession, optional
        Defaults to the active session (or a new local one); classic or Spark Connect.

    Returns
    -------
    pyspark.sql.DataFrame

    Examples
    --------
    >>> import pyarrow as pa
    >>> import rusket.spark
    >>> sdf = rusket.spark.from_arrow(pa.table({"user_id": [1, 2]}))  # doctest: +SKIP
    >>> sdf.schema.simpleString()  # doctest: +SKIP
    'struct<user_id:bigint>'
    """
    if not isinstance(table, pa.Table):
        raise TypeError(f"table must be a pyarrow.Table, got {type(table).__name__}")
    return arrow_to_spark(spark if spark is not None else get_spark(), table)


def _users_table(state: _Fitted, exclude_seen: bool) -> pa.Table:
    seen = state.seen
    vectors = state.user_factors
    cols: dict[str, Any] = {
        "user_id": pa.array(state.user_labels, _label_type(state.user_labels)),
        "vector": pa.FixedSizeListArray.from_arrays(
            pa.array(vectors.reshape(-1)), vectors.shape[1]
        ),
    }
    if exclude_seen:
        cols["seen"] = pa.ListArray.from_arrays(
            pa.array(seen.indptr.astype(np.int32)), pa.array(seen.indices.astype(np.int32))
        )
    return pa.table(cols)


_SPARK_DDL = {pa.string(): "string", pa.int64(): "bigint", pa.float32(): "float", pa.int32(): "int"}


def _label_type(labels: np.ndarray) -> pa.DataType:
    return pa.string() if labels.dtype == object else pa.int64()


def _conf_int(spark: Any, key: str) -> int | None:
    """A positive integer setting of the session, or ``None`` when it is unset, not an integer
    or not readable (Spark Connect servers may refuse to show some settings)."""
    try:
        value = spark.conf.get(key, None)
    except Exception:  # e.g. a serverless workspace that hides the setting
        return None
    try:
        n = int(str(value))
    except ValueError:
        return None
    return n if n >= 1 else None


def _task_cpus(spark: Any) -> int:
    """``spark.task.cpus`` of the session (1 when unset): the cores each Spark task may use.

    Read through ``spark.conf``, so it works on classic sessions and over Spark Connect.
    """
    return min(_conf_int(spark, "spark.task.cpus") or 1, MAX_THREADS)


def _default_parallelism(spark: Any) -> int:
    """How many tasks to split work into: the SparkContext's default parallelism on a classic
    session; over Spark Connect (no SparkContext) ``spark.default.parallelism`` when set, else
    ``spark.sql.shuffle.partitions``, else 1."""
    if not _is_connect(spark):
        return int(spark.sparkContext.defaultParallelism)
    return (
        _conf_int(spark, "spark.default.parallelism")
        or _conf_int(spark, "spark.sql.shuffle.partitions")
        or 1
    )


def _out_schema(state: _Fitted) -> pa.Schema:
    return pa.schema(
        [
            ("user_id", _label_type(state.user_labels)),
            ("item_id", _label_type(state.item_labels)),
            ("score", pa.float32()),
            ("rank", pa.int32()),
        ]
    )


def _scorer(
    item_factors: np.ndarray,
    item_labels: np.ndarray,
    out_schema: pa.Schema,
    n: int,
    exclude_seen: bool,
    num_threads: int,
    allowed: np.ndarray | None = None,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """The function each Spark task runs (``mapInArrow``): batches of ``user_id, vector[, seen]``
    in, top-``n`` rows out, scored by the Rust kernel with ``num_threads`` threads; ``allowed``
    (one bool per item, or None) is the business filter mask."""
    items = np.ascontiguousarray(item_factors)

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from rusket import _core

        for batch in batches:
            if batch.num_rows == 0:
                continue
            vec = batch.column("vector")
            query = np.asarray(vec.flatten().to_numpy(zero_copy_only=False), np.float32)
            query = np.ascontiguousarray(query.reshape(batch.num_rows, items.shape[1]))
            kw: dict[str, Any] = {}
            if allowed is not None:
                kw["allowed"] = allowed
            if exclude_seen:
                seen = batch.column("seen")
                offsets = seen.offsets.to_numpy().astype(np.int64)
                kw["exclude_indptr"] = offsets - offsets[0]
                kw["exclude_indices"] = np.asarray(
                    seen.values.to_numpy(zero_copy_only=False)[offsets[0] : offsets[-1]], np.int32
                )
            idx, sc = _core.topk(query, items, n, num_threads=num_threads, **kw)
            valid = idx >= 0
            user_ids = batch.column("user_id").to_numpy(zero_copy_only=False)
            ranks = np.broadcast_to(np.arange(1, idx.shape[1] + 1, dtype=np.int32), idx.shape)
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array(np.repeat(user_ids, valid.sum(axis=1)), out_schema.field(0).type),
                    pa.array(item_labels[idx[valid]], out_schema.field(1).type),
                    pa.array(sc[valid], pa.float32()),
                    pa.array(ranks[valid], pa.int32()),
                ],
                schema=out_schema,
            )

    return score


def batch_recommend(
    model: Recommender,
    n: int = 10,
    exclude_seen: bool = True,
    num_partitions: int | None = None,
    spark: Any = None,
    *,
    num_threads: int | None = None,
    candidates: Any = None,
    exclude_items: Any = None,
) -> Any:
    """Top-``n`` items for every user, computed by the Spark executors.

    Same rows as ``model.batch_recommend(n, exclude_seen, format="spark")``, but the scoring runs
    distributed: each executor task scores its share of the users with the Rust kernel.

    Parameters
    ----------
    model : ALS or Popularity
        A fitted model.
    n : int, default 10
        Items per user.
    exclude_seen : bool, default True
        Skip the items each user bought in the training data.
    num_partitions : int, optional
        How many tasks to split the users into. Default: the session's default parallelism
        (``spark.default.parallelism`` over Spark Connect, where there is no SparkContext;
        else ``spark.sql.shuffle.partitions``), at most one task per user.
    spark : SparkSession, optional
        Defaults to the active session (or a new local one). Classic and Spark Connect
        sessions (Databricks serverless, shared access mode) both work.
    num_threads : int, optional
        Threads of the Rust kernel inside each Spark task. Spark runs one task per
        ``spark.task.cpus`` cores of an executor at once, so the default is the session's
        ``spark.task.cpus`` (1 unless set; read on the driver): the executors' cores are used,
        never oversubscribed. ``0`` uses every core of the executor in each task (only right
        when a task has the executor to itself).
    candidates, exclude_items : sequence of item labels, optional
        Business filters, as in ``model.batch_recommend``: only ``candidates`` may be
        recommended (e.g. in stock), ``exclude_items`` never are. A user gets the best ``n`` of
        what is allowed. Unknown labels raise ``KeyError``. The mask (one byte per item) ships
        with the task.

    Notes
    -----
    What must fit where: the driver holds the model (user and item factors) and the users'
    training items (``exclude_seen``) while it sends them to Spark; each task receives the item
    factors once with its closure and its share of the users. The result stays distributed.

    Examples
    --------
    >>> from rusket import spark as rspark
    >>> recs = rspark.batch_recommend(als, n=20)  # doctest: +SKIP
    >>> recs.columns  # doctest: +SKIP
    ['user_id', 'item_id', 'score', 'rank']
    """
    n = check_int("n", n, minimum=1)
    if not isinstance(exclude_seen, bool):
        raise TypeError(f"exclude_seen must be True or False, got {exclude_seen!r}")
    if num_partitions is not None:
        check_int("num_partitions", num_partitions, minimum=1)
    if num_threads is not None:
        check_threads(num_threads)
    state = model._fitted_state()  # one consistent model, even if it is refitted meanwhile
    from rusket._model import _item_filter

    allowed = _item_filter(state, candidates, exclude_items)
    table = _users_table(state, exclude_seen)
    spark = spark if spark is not None else get_spark()
    threads = _task_cpus(spark) if num_threads is None else num_threads
    parts = num_partitions or min(_default_parallelism(spark), max(table.num_rows, 1))
    # Classic sessions: the users arrive as `parts` Arrow batches, one partition each (no
    # shuffle); Spark Connect (or a table split further by the batch size cap) is repartitioned.
    users = arrow_to_spark(spark, table, partitions=parts)
    if _is_connect(spark) or users.rdd.getNumPartitions() != parts:
        users = users.repartition(parts)
    out_schema = _out_schema(state)
    score = _scorer(
        state.item_factors, state.item_labels, out_schema, n, exclude_seen, threads, allowed
    )

    ddl = ", ".join(f"{f.name} {_SPARK_DDL[f.type]}" for f in out_schema)
    return users.mapInArrow(score, ddl)
