"""Training on Spark's own engine: :func:`fit_als` runs Spark MLlib's implicit ALS and returns a
regular fitted :class:`rusket.ALS`.

The order lines are summed per (customer, article) in Spark (as ``from_transactions`` does for a
Spark frame), the labels are indexed in Spark (sorted, dense, range-partitioned: no label list
is built on the driver first), rusket's confidence transform is applied in Spark, and MLlib's
``ALS(implicitPrefs=True)`` trains on the executors. Only the results come back, through Arrow:
the factors, the labels and the training pairs (``exclude_seen`` needs them).
"""

from __future__ import annotations

import difflib
import random
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from rusket._formats import spark_to_arrow
from rusket._model import _Fitted
from rusket._optional import require
from rusket._validation import check_int
from rusket.als import ALS, AUTO_PENALTY
from rusket.interactions import _check_ids, _kind, check_columns, spark_pairs

#: rusket.ALS parameters that fit_als maps onto MLlib (the rest are rusket's own solver's).
#: ``regularization_exponent`` is MLlib's, 1 (ALS-WR), and only that value is accepted.
_MAPPED = (
    "factors",
    "iterations",
    "alpha",
    "regularization",
    "seed",
    "confidence",
    "epsilon",
    "regularization_exponent",
)
#: MLlib's penalty of a row: regParam times its number of pairs.
MLLIB_EXPONENT = 1.0
#: Accepted and kept on the returned model (used when it scores), not used for training.
_KEPT = ("num_threads",)
_SOLVER_ONLY = ("solver", "cg_steps", "cg_tol", "progress")


@dataclass
class _MLlibFit:
    """Everything :func:`_fit_mllib` made, for :func:`fit_als` and the tests."""

    model: ALS
    mllib_model: Any
    user_index: Any  # Spark frame: u (label), uidx (int, the row of user_factors)
    item_index: Any  # Spark frame: i (label), iidx (int)
    reg_param: float


def auto_reg_param(confidences: np.ndarray, n_users: int, n_items: int) -> float:
    """MLlib's ``regParam`` for ``regularization="auto"``: rusket's automatic penalty
    (``3 * mean(confidence)``) for a row with the average number of pairs of the denser side.

    MLlib multiplies ``regParam`` by each row's number of pairs (ALS-WR), so the side with more
    pairs per row (usually the articles) sets the scale; taking the sparser side instead puts
    a heavy penalty on every popular article (on ``make_purchases`` data, 4k x 800, nDCG@10 fell
    from 0.15 to 0.05).

    >>> auto_reg_param(np.full(6, 2.0), n_users=3, n_items=2)  # 3 * 2 / (6 / 2)
    2.0
    """
    nnz = len(confidences)
    if nnz == 0:
        return AUTO_PENALTY
    mean_c = float(np.mean(confidences, dtype=np.float64))
    return AUTO_PENALTY * mean_c * min(n_users, n_items) / nnz


def _check_params(params: dict[str, Any]) -> ALS:
    for key in params:
        if key in _SOLVER_ONLY:
            raise TypeError(
                f"fit_als trains with Spark MLlib's solver: {key!r} is a parameter of rusket's "
                f"own solver and has no meaning here (fit_als takes {', '.join(_MAPPED + _KEPT)})"
            )
        if key not in _MAPPED + _KEPT:
            near = difflib.get_close_matches(key, _MAPPED + _KEPT, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else ""
            raise TypeError(
                f"fit_als got an unexpected keyword argument {key!r}{hint} (it takes "
                f"{', '.join(_MAPPED + _KEPT)}, plus num_blocks and checkpoint_interval)"
            )
    exponent = params.get("regularization_exponent", MLLIB_EXPONENT)
    model = ALS(**{**params, "regularization_exponent": exponent})
    model._checked_params()  # the same errors as rusket.ALS for bad values
    if model.regularization_exponent != MLLIB_EXPONENT:
        raise ValueError(
            f"fit_als trains Spark MLlib's ALS, whose penalty is regParam times each row's "
            f"number of pairs (regularization_exponent=1); got regularization_exponent="
            f"{exponent!r}. Leave it out (or pass 1), or train in-process with "
            "rusket.ALS.from_transactions for another exponent"
        )
    return model


def _dense_index(labels: Any, col: str, idx: str, partitions: int) -> Any:
    """Index the distinct values of ``labels[col]`` ``0..n-1`` in sorted order, in Spark.

    Range-partitioned and sorted within partitions; each partition's offset is the number of
    labels in the partitions before it (one small aggregate: one row per partition), so no
    window ever moves every label into one partition.
    """
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    ranged = labels.repartitionByRange(partitions, col).withColumn("_pid", F.spark_partition_id())
    ranged = ranged.persist()
    sizes = spark_to_arrow(ranged.groupBy("_pid").count()).to_pydict()
    counts = dict(zip(sizes["_pid"], sizes["count"]))
    offset, offsets = 0, []
    for pid in sorted(counts):
        offsets.append((pid, offset))
        offset += counts[pid]
    if offset >= 2**31:
        raise ValueError(
            f"{offset} distinct labels in column {col!r}: Spark MLlib's ALS indexes them with "
            "32-bit integers (at most 2**31 - 1)"
        )
    start = F.lit(0)
    for pid, off in offsets:
        start = F.when(F.col("_pid") == pid, F.lit(off)).otherwise(start)
    rank = F.row_number().over(Window.partitionBy("_pid").orderBy(col))
    return ranged.select(col, (start + rank - 1).cast("int").alias(idx)), ranged, offset


def _side(index: Any, factors: Any, col: str, idx: str, n: int, f: int, name: Any) -> Any:
    """Labels (in index order) and ``(n, f)`` float32 factors of one side, in one collection:
    the Spark label index joined with MLlib's factor frame (``id``, ``features``). Rows MLlib
    did not train (labels without a positive rating) stay zero, as rusket's solve gives them."""
    joined = index.join(factors.withColumnRenamed("id", idx), idx, "left")
    table = spark_to_arrow(joined.select(col, idx, "features"))
    order = table.column(idx).to_numpy()
    if len(order) != n or not np.array_equal(np.sort(order), np.arange(n)):
        raise RuntimeError(f"the Spark index of {name!r} is not dense")  # pragma: no cover
    labels = _check_ids(table.column(col).take(pa.array(np.argsort(order))), name)
    out = labels.to_numpy(zero_copy_only=False)
    out = out if out.dtype.kind in "iu" else out.astype(object)
    vectors = np.zeros((n, f), dtype=np.float32)
    feats = table.column("features")
    trained = pc.is_valid(feats).to_numpy(zero_copy_only=False)
    if trained.any():
        flat = pc.list_flatten(feats.filter(pc.is_valid(feats))).to_numpy(zero_copy_only=False)
        vectors[order[trained]] = np.asarray(flat, dtype=np.float32).reshape(-1, f)
    return out, vectors


def _fit_mllib(
    df: Any,
    transaction_col: Any,
    item_col: Any,
    rating_col: Any = None,
    *,
    num_blocks: int | None = None,
    checkpoint_interval: int = 10,
    **params: Any,
) -> _MLlibFit:
    """:func:`fit_als`, also returning MLlib's model and the Spark label indexes (tests)."""
    if _kind(df) != "spark":
        raise TypeError(
            f"fit_als takes a Spark DataFrame, got {type(df).__module__}.{type(df).__name__}; "
            "for a pandas, polars or Arrow frame use rusket.ALS.from_transactions"
        )
    require("pyspark")
    from pyspark.ml.recommendation import ALS as MLlibALS
    from pyspark.sql import functions as F

    model = _check_params(params)
    p = model._checked_params()
    if num_blocks is not None:
        check_int("num_blocks", num_blocks, minimum=1)
    check_int("checkpoint_interval", checkpoint_interval, minimum=1)
    check_columns(transaction_col, item_col, rating_col)
    summed = spark_pairs(df, transaction_col, item_col, rating_col)
    pairs = summed.pairs.persist()
    cached = [pairs]
    try:
        bad = pairs.filter(F.col("u").isNull() | F.col("i").isNull() | F.isnan("v")).limit(1)
        if spark_to_arrow(bad.select("u")).num_rows:
            summed.raise_bad_rows()
        # The session's shuffle partitions (also a setting on Spark Connect, which has no RDDs).
        parts = max(int(df.sparkSession.conf.get("spark.sql.shuffle.partitions") or 1), 1)
        users, u_ranged, n_users = _dense_index(pairs.select("u").distinct(), "u", "uidx", parts)
        items, i_ranged, n_items = _dense_index(pairs.select("i").distinct(), "i", "iidx", parts)
        cached += [u_ranged, i_ranged]
        if n_users == 0:
            raise ValueError("the data has no rows: a model needs at least one interaction")
        users, items = users.persist(), items.persist()
        cached += [users, items]
        indexed = pairs.join(users, "u").join(items, "i").select("uidx", "iidx", "v").persist()
        cached.append(indexed)
        # The training pairs on the driver (exclude_seen and scoring need them): int32, int32,
        # float64 per distinct pair, the same confidences (and checks) as rusket.ALS.
        seen_t = spark_to_arrow(indexed.filter(F.col("v") > 0))
        v = seen_t.column("v").to_numpy()
        if not np.all(np.isfinite(v)):
            raise ValueError("summing duplicate (user, item) rows overflowed to infinity")
        conf = model._confidence(v, p)
        seen = sp.csr_matrix(
            (conf, (seen_t.column("uidx").to_numpy(), seen_t.column("iidx").to_numpy())),
            shape=(n_users, n_items),
        )
        seen.sort_indices()
        if p["regularization"] == "auto":
            reg_param = auto_reg_param(conf, n_users, n_items)
        else:
            reg_param = float(p["regularization"])
        # Confidence 1 + alpha * r' in MLlib: r' = log1p(r / epsilon) gives rusket's "log".
        if p["confidence"] == "log":
            r = F.log1p(F.col("v") / F.lit(p["epsilon"]))
        else:
            r = F.col("v")
        train = indexed.filter(F.col("v") > 0).select("uidx", "iidx", r.alias("r"))
        seed = model.seed if model.seed is not None else random.randrange(2**31)
        blocks = num_blocks or parts
        mllib = MLlibALS(
            rank=p["factors"],
            maxIter=p["iterations"],
            regParam=reg_param,
            alpha=p["alpha"],
            implicitPrefs=True,
            userCol="uidx",
            itemCol="iidx",
            ratingCol="r",
            seed=int(seed),
            numUserBlocks=blocks,
            numItemBlocks=blocks,
            checkpointInterval=checkpoint_interval,
            coldStartStrategy="nan",
        ).fit(train)
        f = p["factors"]
        user_labels, user_factors = _side(
            users, mllib.userFactors, "u", "uidx", n_users, f, transaction_col
        )
        item_labels, item_factors = _side(
            items, mllib.itemFactors, "i", "iidx", n_items, f, item_col
        )
    finally:
        for frame in cached:
            frame.unpersist()
    model.regularization_ = reg_param
    model.loss_history_ = []
    model._state = _Fitted.build(user_factors, item_factors, user_labels, item_labels, seen)
    return _MLlibFit(model, mllib, users, items, reg_param)


def fit_als(
    df: Any,
    transaction_col: str,
    item_col: str,
    rating_col: str | None = None,
    *,
    num_blocks: int | None = None,
    checkpoint_interval: int = 10,
    **params: Any,
) -> ALS:
    """Train implicit ALS with Spark MLlib on the cluster; return a fitted :class:`rusket.ALS`.

    For order lines that do not fit on the driver. The lines are summed per (customer, article)
    in Spark, the labels indexed in Spark (sorted, as ``from_transactions`` sorts them), and
    ``pyspark.ml.recommendation.ALS(implicitPrefs=True)`` trains on the executors. The factors,
    the labels and the training pairs come back to the driver through Arrow (the model needs
    them: ``(customers + articles) x factors`` floats and one int/int/float per distinct pair),
    so the result scores, exports, projects (PCA), saves and loads like any rusket model, and
    :func:`rusket.spark.batch_recommend` scores it on the executors. Bad rows give the errors of
    ``from_transactions``.

    Parameters
    ----------
    df : pyspark.sql.DataFrame
        Order lines.
    transaction_col, item_col : str
        Customer and article id columns (integers or strings).
    rating_col : str, optional
        Non-negative amounts, summed per pair; ``None`` counts the lines.
    num_blocks : int, optional
        MLlib's ``numUserBlocks`` and ``numItemBlocks`` (default: the pairs' partitions).
    checkpoint_interval : int, default 10
        MLlib's ``checkpointInterval``; it only checkpoints when the session has a checkpoint
        directory (``spark.sparkContext.setCheckpointDir``), which long runs should set.
    **params
        rusket's names, mapped onto MLlib: ``factors`` -> ``rank``, ``iterations`` ->
        ``maxIter``, ``alpha`` -> ``alpha``, ``seed`` -> ``seed``, ``regularization`` ->
        ``regParam``; ``confidence`` / ``epsilon`` are applied in Spark: MLlib's confidence is
        ``1 + alpha * r``, and it is fed ``r = log1p(amount / epsilon)`` for rusket's default
        ``confidence="log"`` (the raw sum for ``"linear"``), so both libraries weigh a pair
        alike. ``num_threads`` is kept for scoring. rusket's solver settings (``solver``,
        ``cg_steps``, ``cg_tol``, ``progress``) are a ``TypeError``.

    Returns
    -------
    rusket.ALS
        Fitted; ``regularization_`` is the ``regParam`` MLlib used.

    Notes
    -----
    The objectives differ in the penalty: MLlib (ALS-WR, Zhou et al. 2008) multiplies
    ``regParam`` by each row's number of rated pairs; that is rusket's objective with
    ``regularization_exponent=1``, which the returned model carries (its ``training_loss``,
    ``fold_in`` and ``partial_fit`` use MLlib's objective), while rusket's in-process default
    is ``0.5``. ``regularization="auto"`` (the default) sets ``regParam = 3 * mean(confidence)
    * min(n_customers, n_articles) / n_pairs``: rusket's automatic ``lambda`` at exponent 1, the
    global automatic penalty for a row with the average number of pairs of the denser side (see
    :func:`auto_reg_param`). MLlib also solves every row exactly (Cholesky) from a different
    random start, so the factors are not rusket's, only of a similar model.

    Examples
    --------
    >>> from rusket.spark import fit_als  # doctest: +SKIP
    >>> als = fit_als(lines, "customer_id", "article_id", "sales_amount",
    ...               factors=64, iterations=15)  # doctest: +SKIP
    >>> recs = rusket.spark.batch_recommend(als, n=20)  # doctest: +SKIP
    """
    return _fit_mllib(
        df,
        transaction_col,
        item_col,
        rating_col,
        num_blocks=num_blocks,
        checkpoint_interval=checkpoint_interval,
        **params,
    ).model
