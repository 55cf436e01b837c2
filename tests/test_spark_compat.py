"""The cookbook's Spark steps on every Spark this package supports: PySpark 3.5 (Databricks LTS
14.3 to 16.4) and 4.x, classic sessions and Spark Connect (Databricks serverless).

Every step is compared with the same step on pyarrow/pandas frames, which never touch Spark, so
one run per Spark version (``make test`` runs this file under PySpark 4 and, in
``.venv-spark35``, under PySpark 3.5) shows the same rows on all of them. Collection goes through
``rusket._formats.spark_to_arrow`` because ``DataFrame.toArrow`` is PySpark 4 only.
"""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pyarrow as pa
import pytest

import rusket
import rusket._formats
import rusket.spark
from rusket._formats import _is_connect, arrow_to_spark, session_conf, spark_to_arrow
from rusket.datasets import make_purchases
from rusket.evaluation import evaluate, time_split

pytestmark = pytest.mark.spark


@pytest.fixture(scope="module")
def orders():
    """Cookbook-like order lines (timestamps, int article ids) with a line number."""
    df = make_purchases(n_customers=150, n_articles=60, n_lines=2500, n_segments=4, seed=3)
    return df.reset_index(drop=True).assign(line=lambda d: np.arange(len(d), dtype=np.int64))


@pytest.fixture(scope="module")
def models(orders):
    """ALS on int customer ids, ALS on string customer ids, and best sellers."""
    cols = ("customer_id", "article_id", "sales_amount")
    str_orders = orders.assign(customer_id="c" + orders.customer_id.astype(str))
    return {
        "als-int": rusket.ALS(factors=8, iterations=4, seed=1).from_transactions(orders, *cols),
        "als-str": rusket.ALS(factors=8, iterations=4, seed=1).from_transactions(str_orders, *cols),
        "popularity": rusket.Popularity().from_transactions(orders, *cols),
    }


def _rows(table: pa.Table, cols: tuple[str, ...] = ("user_id", "rank", "item_id", "score")):
    return sorted(zip(*(table[c].to_pylist() for c in cols)), key=lambda r: tuple(map(str, r)))


def _frame_of(spark, sdf) -> None:
    """A result of ``spark`` lives in the same kind of session (Connect or classic)."""
    assert _is_connect(sdf) == _is_connect(spark)


# --- Arrow in, Arrow out -----------------------------------------------------------------------


def _typed_table() -> pa.Table:
    utc = dt.timezone.utc
    return pa.table(
        {
            "id": pa.array([2**62 + 1, None, -7], pa.int64()),
            "label": pa.array(["SKU-001", None, "é"], pa.string()),
            "score": pa.array([0.5, -1.25, float("nan")], pa.float32()),
            "amount": pa.array([1e300, 0.0, -2.5], pa.float64()),
            "rank": pa.array([1, 2, 3], pa.int32()),
            "flag": pa.array([True, False, None], pa.bool_()),
            "vector": pa.FixedSizeListArray.from_arrays(
                pa.array(np.arange(6, dtype=np.float32) / 3), 2
            ),
            "seen": pa.array([[1.5, 2.0], [], None], pa.list_(pa.float32())),
            "when": pa.array(
                [
                    dt.datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=utc),
                    None,
                    dt.datetime(1970, 1, 1, tzinfo=utc),
                ],
                pa.timestamp("us", tz="UTC"),
            ),
            "day": pa.array([dt.date(2024, 2, 29), dt.date(1, 1, 1), None], pa.date32()),
        }
    )


_SPARK_TYPES = (
    "struct<id:bigint,label:string,score:float,amount:double,rank:int,flag:boolean,"
    "vector:array<float>,seen:array<float>,when:timestamp,day:date>"
)


def test_arrow_round_trip_keeps_types_and_values(any_spark):
    table = _typed_table()
    sdf = arrow_to_spark(any_spark, table)
    _frame_of(any_spark, sdf)
    assert sdf.schema.simpleString() == _SPARK_TYPES
    back = spark_to_arrow(sdf)
    assert back.column_names == table.column_names
    assert [str(t) for t in back.schema.types] == [
        "int64",
        "string",
        "float",
        "double",
        "int32",
        "bool",
        "list<element: float>",
        "list<element: float>",
        "timestamp[us, tz=UTC]",
        "date32[day]",
    ]
    for name in table.column_names:
        want = table[name].to_pylist()
        got = back[name].to_pylist()
        if name == "score":  # NaN != NaN
            assert got[:2] == want[:2] and math.isnan(got[2])
        else:
            assert got == want, name
    assert spark_to_arrow(sdf.limit(0)).schema == back.schema  # empty result: same schema


def test_empty_table_round_trip(any_spark):
    table = _typed_table().slice(0, 0)
    sdf = arrow_to_spark(any_spark, table)
    assert sdf.schema.simpleString() == _SPARK_TYPES
    back = spark_to_arrow(sdf)
    assert back.num_rows == 0 and back.column_names == table.column_names


def test_public_helpers_to_arrow_and_from_arrow(any_spark):
    table = _typed_table().select(["id", "label", "vector"])
    sdf = rusket.spark.from_arrow(table)  # the active session: classic or Connect
    _frame_of(any_spark, sdf)
    assert sdf.schema.simpleString() == "struct<id:bigint,label:string,vector:array<float>>"
    back = rusket.spark.to_arrow(sdf)
    assert back["id"].to_pylist() == table["id"].to_pylist()
    assert back["vector"].to_pylist() == table["vector"].to_pylist()
    with pytest.raises(TypeError, match="df must be a Spark DataFrame, got pandas"):
        rusket.spark.to_arrow(table.to_pandas())
    with pytest.raises(TypeError, match="table must be a pyarrow.Table, got DataFrame"):
        rusket.spark.from_arrow(table.to_pandas(), spark=any_spark)


def test_input_table_is_not_modified(any_spark):
    table = _typed_table()
    before = repr(table.to_pylist())  # repr: NaN == NaN
    arrow_to_spark(any_spark, table).count()
    assert repr(table.to_pylist()) == before
    assert pa.types.is_fixed_size_list(table.schema.field("vector").type)


# --- large tables: a distributed frame, the session's settings untouched -----------------------

_ARROW_KEYS = (
    "spark.sql.execution.arrow.localRelationThreshold",
    "spark.sql.execution.arrow.maxRecordsPerBatch",
)


def _big_table(n: int = 40_000) -> pa.Table:
    """Over 1 MiB: nulls, NaN, extreme ints, non-ASCII strings, vectors and lists."""
    rng = np.random.default_rng(5)
    score = rng.standard_normal(n).astype(np.float32)
    score[::101] = np.nan
    lengths = np.arange(n) % 4
    return pa.table(
        {
            "id": pa.array(
                rng.integers(-(2**62), 2**62, n), pa.int64(), mask=np.arange(n) % 89 == 0
            ),
            "label": pa.array([None if k % 97 == 0 else f"SKU-{k}-é" for k in range(n)]),
            "score": pa.array(score, mask=np.arange(n) % 83 == 0),
            "amount": rng.exponential(50, n),
            "rank": np.arange(n, dtype=np.int32),
            "vector": pa.FixedSizeListArray.from_arrays(
                pa.array(rng.random(4 * n, dtype=np.float32)), 4
            ),
            "seen": pa.ListArray.from_arrays(
                pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)),
                pa.array(rng.random(int(lengths.sum()), dtype=np.float32)),
            ),
        }
    )


def _plan(sdf) -> str:
    return str(sdf._jdf.queryExecution().executedPlan().toString())


def _same_values(got: pa.Table, want: pa.Table) -> None:
    assert got.column_names == want.column_names
    for name in want.column_names:  # repr: NaN == NaN; nulls stay None
        assert repr(got[name].to_pylist()) == repr(want[name].to_pylist()), name


def test_large_table_round_trip_is_exact(any_spark):
    table = _big_table()
    assert table.nbytes > rusket._formats.LOCAL_RELATION_MAX_BYTES
    sdf = arrow_to_spark(any_spark, table)
    _frame_of(any_spark, sdf)
    assert sdf.schema.simpleString() == (
        "struct<id:bigint,label:string,score:float,amount:double,rank:int,"
        "vector:array<float>,seen:array<float>>"
    )
    _same_values(spark_to_arrow(sdf), table)  # row order kept too
    assert sdf.count() == table.num_rows


def test_large_table_is_a_distributed_frame_and_settings_are_restored(spark):
    table = _big_table()
    spark.conf.set(_ARROW_KEYS[1], "5000")  # a user's own setting
    try:
        assert spark.conf.get(_ARROW_KEYS[0], None) is None  # unset in the test session
        sdf = arrow_to_spark(spark, table)
        assert spark.conf.get(_ARROW_KEYS[0], None) is None  # still unset: Spark's default
        assert spark.conf.get(_ARROW_KEYS[1]) == "5000"
    finally:
        spark.conf.unset(_ARROW_KEYS[1])
    plan = _plan(sdf)
    assert "LocalTableScan" not in plan and "ExistingRDD" in plan, plan
    # One Arrow batch per core of the session (not one per 5,000 or 10,000 rows).
    assert sdf.rdd.getNumPartitions() == spark.sparkContext.defaultParallelism
    _same_values(spark_to_arrow(sdf), table)


def test_small_table_stays_a_local_relation(spark):
    sdf = arrow_to_spark(spark, _typed_table())
    assert "LocalTableScan" in _plan(sdf)
    assert spark.conf.get(_ARROW_KEYS[0], None) is None


@pytest.mark.parametrize("parts", [1, 3, 7])
def test_partitions_gives_that_many_batches(spark, parts):
    table = _typed_table().select(["id", "label", "vector"])
    sdf = arrow_to_spark(spark, table, partitions=parts)
    assert sdf.rdd.getNumPartitions() == min(parts, table.num_rows)
    _same_values(spark_to_arrow(sdf), rusket._formats.spark_compatible(table))


def test_batches_are_capped_in_bytes(spark, monkeypatch):
    table = _big_table()
    cap = 256 * 1024
    monkeypatch.setattr(rusket._formats, "BATCH_MAX_BYTES", cap)
    sdf = arrow_to_spark(spark, table)
    assert sdf.rdd.getNumPartitions() >= table.nbytes // cap
    _same_values(spark_to_arrow(sdf), table)


def test_session_conf_restores_set_and_unset_settings(spark):
    key, other = "spark.sql.shuffle.partitions", "spark.sql.execution.arrow.maxRecordsPerBatch"
    before = spark.conf.get(key)
    assert spark.conf.get(other, None) is None
    with pytest.raises(RuntimeError, match="inside"):
        with session_conf(spark, {key: "7", other: "123"}) as applied:
            assert applied
            assert spark.conf.get(key) == "7" and spark.conf.get(other) == "123"
            raise RuntimeError("inside")
    assert spark.conf.get(key) == before
    assert spark.conf.get(other, None) is None
    # A setting the session refuses (a static one): nothing is changed, the block still runs.
    with session_conf(spark, {key: "9", "spark.sql.warehouse.dir": "/nowhere"}) as applied:
        assert not applied
        assert spark.conf.get(key) == before
    assert spark.conf.get(key) == before


@pytest.fixture(scope="module")
def wide_model():
    """A model whose top-20 for all customers is over 1 MiB of Arrow (a distributed frame)."""
    lines = make_purchases(n_customers=4000, n_articles=300, n_lines=20_000, seed=4)
    return rusket.ALS(factors=4, iterations=2, seed=0).from_transactions(
        lines, "customer_id", "article_id", "sales_amount"
    )


def test_large_batch_recommend_in_spark_format(spark, wide_model):
    want = wide_model.batch_recommend(n=20, format="arrow")
    assert want.nbytes > rusket._formats.LOCAL_RELATION_MAX_BYTES
    local = wide_model.batch_recommend(n=20, format="spark")
    assert "LocalTableScan" not in _plan(local)
    assert spark_to_arrow(local).equals(want)  # same rows in the same order, same types
    dist = rusket.spark.batch_recommend(wide_model, n=20, num_partitions=3, spark=spark)
    # The users arrive as 3 Arrow batches: no shuffle before the scoring tasks.
    assert "Exchange" not in _plan(dist)
    assert dist.rdd.getNumPartitions() == 3
    assert _rows(spark_to_arrow(dist)) == _rows(want)


# --- the cookbook's steps ---------------------------------------------------------------------


@pytest.mark.parametrize("str_ids", [False, True], ids=["int-ids", "str-ids"])
def test_from_transactions_on_a_spark_frame(any_spark, orders, models, str_ids):
    data = orders.assign(customer_id="c" + orders.customer_id.astype(str)) if str_ids else orders
    sdf = any_spark.createDataFrame(data)
    als = rusket.ALS(factors=8, iterations=4, seed=1).from_transactions(
        sdf, transaction_col="customer_id", item_col="article_id", rating_col="sales_amount"
    )
    local = models["als-str" if str_ids else "als-int"]
    assert als.user_labels.tolist() == local.user_labels.tolist()
    assert als.item_labels.tolist() == local.item_labels.tolist()
    assert np.array_equal(als.user_factors, local.user_factors)
    assert np.array_equal(als.item_factors, local.item_factors)


@pytest.mark.parametrize("normalize", [False, True])
@pytest.mark.parametrize("which", ["als-int", "als-str"])
def test_exports_in_spark_format(any_spark, models, which, normalize):
    model = models[which]
    id_type = "string" if which == "als-str" else "bigint"
    for export, label in (
        (model.export_user_factors, id_type),
        (model.export_item_factors, "bigint"),
    ):
        sdf = export(normalize=normalize, format="spark")
        _frame_of(any_spark, sdf)
        key = sdf.columns[0]
        assert sdf.schema.simpleString() == f"struct<{key}:{label},vector:array<float>>"
        got = spark_to_arrow(sdf).sort_by(key)
        want = export(normalize=normalize, format="arrow").sort_by(key)
        assert got[key].to_pylist() == want[key].to_pylist()
        np.testing.assert_array_equal(
            np.stack(got["vector"].to_numpy(zero_copy_only=False)),
            np.stack(want["vector"].to_pylist()).astype(np.float32),
        )


@pytest.mark.parametrize("exclude_seen", [True, False])
@pytest.mark.parametrize("which", ["als-int", "als-str", "popularity"])
def test_batch_recommend_local_and_in_the_executors(any_spark, models, which, exclude_seen):
    model = models[which]
    want = model.batch_recommend(n=7, exclude_seen=exclude_seen, format="arrow")
    local = model.batch_recommend(n=7, exclude_seen=exclude_seen, format="spark")
    dist = rusket.spark.batch_recommend(
        model, n=7, exclude_seen=exclude_seen, num_partitions=3, spark=any_spark
    )
    _frame_of(any_spark, local)
    _frame_of(any_spark, dist)
    assert dist.schema == local.schema
    id_type = "string" if which == "als-str" else "bigint"
    assert local.schema.simpleString() == (
        f"struct<user_id:{id_type},item_id:bigint,score:float,rank:int>"
    )
    assert _rows(spark_to_arrow(local)) == _rows(want)
    assert _rows(spark_to_arrow(dist)) == _rows(want)


def test_batch_recommend_default_partitions_and_threads(any_spark, models):
    model = models["als-str"]
    want = _rows(model.batch_recommend(n=5, format="arrow"))
    assert _rows(spark_to_arrow(rusket.spark.batch_recommend(model, n=5, spark=any_spark))) == want
    for threads in (1, 2, 0):
        got = rusket.spark.batch_recommend(model, n=5, spark=any_spark, num_threads=threads)
        assert _rows(spark_to_arrow(got)) == want


def test_potential_tiers_on_spark(any_spark, models):
    model = models["als-str"]
    recs = model.batch_recommend(n=6, format="spark")
    tiers = rusket.potential_tiers(recs, by="item_id", cuts=(0.2, 0.5))
    _frame_of(any_spark, tiers)
    want = rusket.potential_tiers(
        model.batch_recommend(n=6, format="arrow"), by="item_id", cuts=(0.2, 0.5)
    )
    cols = ("user_id", "item_id", "percent_rank", "potential")
    assert _rows(spark_to_arrow(tiers), cols) == _rows(want, cols)
    assert {r[3] for r in _rows(want, cols)} == {"High", "Medium", "Low"}


def test_evaluation_on_spark(any_spark, orders):
    sdf = any_spark.createDataFrame(orders)
    train, test = time_split(sdf, "order_date", test_size=0.25)
    _frame_of(any_spark, test)
    local_train, local_test = time_split(orders, "order_date", test_size=0.25)
    assert sorted(spark_to_arrow(test.select("line"))["line"].to_pylist()) == sorted(
        local_test["line"].tolist()
    )
    assert train.count() == len(local_train)
    model = rusket.ALS(factors=8, iterations=4, seed=1).from_transactions(
        local_train, "customer_id", "article_id", "sales_amount"
    )
    got = evaluate(model, test, "customer_id", "article_id", k=5)
    assert got == evaluate(model, local_test, "customer_id", "article_id", k=5)
    assert got["users"] > 0 and 0 < got["ndcg@5"] <= 1


# --- threads per Spark task --------------------------------------------------------------------


def test_threads_per_task_come_from_spark_task_cpus(spark):
    from rusket.spark import _task_cpus

    # The classic test session leaves spark.task.cpus unset: one core per task.
    assert _task_cpus(spark) == 1


@pytest.mark.parametrize("exclude_seen", [True, False])
def test_the_task_function_hands_num_threads_to_the_kernel(models, exclude_seen):
    # The function Spark ships to every task, run here on batches of 17 users: each thread count
    # gives the local rows, and a count only the kernel checks (the driver refuses it first)
    # comes back as the kernel's error, so the value reaches the kernel.
    from rusket.spark import _out_schema, _scorer, _users_table

    model = models["als-str"]
    state = model._fitted_state()
    users = _users_table(state, exclude_seen)
    want = _rows(model.batch_recommend(n=5, exclude_seen=exclude_seen, format="arrow"))

    def run(threads: int) -> pa.Table:
        fn = _scorer(
            state.item_factors, state.item_labels, _out_schema(state), 5, exclude_seen, threads
        )
        return pa.Table.from_batches(list(fn(iter(users.to_batches(max_chunksize=17)))))

    for threads in (1, 2, 0):
        assert _rows(run(threads)) == want
    with pytest.raises(ValueError, match="num_threads must be at most 1024"):
        run(2000)


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (-1, ValueError, "num_threads must be >= 0"),
        (5000, ValueError, "num_threads must be at most 1024"),
        (1.5, TypeError, "num_threads must be an integer"),
        (True, TypeError, "num_threads must be an integer"),
        ("2", TypeError, "num_threads must be an integer"),
    ],
)
def test_bad_num_threads_is_a_clear_error(spark, models, value, error, match):
    with pytest.raises(error, match=match):
        rusket.spark.batch_recommend(models["als-int"], n=3, spark=spark, num_threads=value)
