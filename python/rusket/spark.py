"""Scoring inside Spark executors, for when one machine is not enough.

:func:`batch_recommend` ships the item factors to the executors with the task closure, streams
the users (their vectors and seen items) through ``mapInArrow`` and runs the same exact Rust
top-k kernel on every Arrow batch. The result has the schema of
``model.batch_recommend(format="spark")``: ``user_id, item_id, score, rank``. Works for every
rusket model (ALS, Popularity): all of them score by the dot products of their factors.

Needs the ``spark`` extra, and rusket installed on the executors (as on a Databricks cluster
with the wheel attached).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from rusket._formats import get_spark, spark_compatible
from rusket._validation import check_int

if TYPE_CHECKING:  # pragma: no cover
    from rusket._model import Recommender, _Fitted


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


def batch_recommend(
    model: Recommender,
    n: int = 10,
    exclude_seen: bool = True,
    num_partitions: int | None = None,
    spark: Any = None,
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
        How many tasks to split the users into (default: the session's default parallelism).
    spark : SparkSession, optional
        Defaults to the active session (or a new local one).

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
    state = model._fitted_state()  # one consistent model, even if it is refitted meanwhile
    table = _users_table(state, exclude_seen)
    spark = spark if spark is not None else get_spark()
    parts = num_partitions or spark.sparkContext.defaultParallelism
    users = spark.createDataFrame(spark_compatible(table)).repartition(parts)
    items = np.ascontiguousarray(state.item_factors)
    item_labels = state.item_labels
    out_schema = pa.schema(
        [
            ("user_id", _label_type(state.user_labels)),
            ("item_id", _label_type(item_labels)),
            ("score", pa.float32()),
            ("rank", pa.int32()),
        ]
    )

    def score(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from rusket import _core

        for batch in batches:
            if batch.num_rows == 0:
                continue
            vec = batch.column("vector")
            query = np.asarray(vec.flatten().to_numpy(zero_copy_only=False), np.float32)
            query = np.ascontiguousarray(query.reshape(batch.num_rows, items.shape[1]))
            kw = {}
            if exclude_seen:
                seen = batch.column("seen")
                offsets = seen.offsets.to_numpy().astype(np.int64)
                kw["exclude_indptr"] = offsets - offsets[0]
                kw["exclude_indices"] = np.asarray(
                    seen.values.to_numpy(zero_copy_only=False)[offsets[0] : offsets[-1]], np.int32
                )
            idx, sc = _core.topk(query, items, n, num_threads=0, **kw)
            valid = idx >= 0
            user_ids = batch.column("user_id").to_numpy(zero_copy_only=False)
            ranks = np.broadcast_to(np.arange(1, n + 1, dtype=np.int32), idx.shape)
            yield pa.RecordBatch.from_arrays(
                [
                    pa.array(np.repeat(user_ids, valid.sum(axis=1)), out_schema.field(0).type),
                    pa.array(item_labels[idx[valid]], out_schema.field(1).type),
                    pa.array(sc[valid], pa.float32()),
                    pa.array(ranks[valid], pa.int32()),
                ],
                schema=out_schema,
            )

    ddl = ", ".join(f"{f.name} {_SPARK_DDL[f.type]}" for f in out_schema)
    return users.mapInArrow(score, ddl)
