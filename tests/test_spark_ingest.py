"""Spark frames in: summed in Spark, compact pairs collected, the same model as the pandas path."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

import rusket
from rusket.interactions import Interactions, _spark_pairs

COLS = {"transaction_col": "customer_id", "item_col": "article_id", "rating_col": "sales_amount"}
SCHEMA = "customer_id string, article_id bigint, sales_amount double"


def _fit(data, **cols):
    return rusket.ALS(factors=8, iterations=3, seed=1).from_transactions(data, **(cols or COLS))


def _assert_same(a, b):
    np.testing.assert_array_equal(a.user_labels, b.user_labels)
    np.testing.assert_array_equal(a.item_labels, b.item_labels)
    assert a.user_labels.dtype == b.user_labels.dtype
    assert a.item_labels.dtype == b.item_labels.dtype
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)


def _repeats(seed: int, n_pairs: int = 300, ids: str = "str") -> pd.DataFrame:
    """Order lines with ~3 lines per (customer, article) pair, in random order. Amounts are
    multiples of 1/4 below 2**20, so every sum is exact whatever the order of the additions."""
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 80, n_pairs)
    items = rng.integers(0, 50, n_pairs)
    reps = rng.integers(1, 6, n_pairs)
    u, i = np.repeat(users, reps), np.repeat(items, reps)
    order = rng.permutation(len(u))
    df = pd.DataFrame(
        {
            "customer_id": u[order],
            "article_id": i[order],
            "sales_amount": rng.integers(1, 400, len(u)) / 4.0,
        }
    )
    if ids == "str":
        df["customer_id"] = [f"c{k:03d}" for k in df.customer_id]
    return df


@pytest.mark.parametrize("ids", ["str", "int"])
@pytest.mark.parametrize("partitions", [1, 3])
def test_spark_model_is_bit_identical_to_pandas(spark, ids, partitions):
    df = _repeats(partitions, ids=ids)
    assert df.groupby(["customer_id", "article_id"]).size().max() >= 3
    # repartition shuffles the lines: Spark sums each pair in another order than pandas.
    sdf = spark.createDataFrame(df).repartition(partitions)
    ref = _fit(df)
    got = _fit(sdf)
    _assert_same(ref, got)
    assert got.user_labels.dtype == (object if ids == "str" else np.int64)
    assert isinstance(got.user_labels[0], str if ids == "str" else np.integer)
    # Counts (no rating column) too.
    cols = {"transaction_col": "customer_id", "item_col": "article_id"}
    _assert_same(_fit(df, **cols), _fit(sdf, **cols))


def test_fixtures_give_the_same_model(spark, purchases, small_purchases):
    for df in (purchases, small_purchases):
        _assert_same(_fit(df), _fit(spark.createDataFrame(df)))


def test_arbitrary_float_sums_match_to_the_last_bits_and_the_model_is_the_same(spark):
    """Float addition is not associative: with 3+ lines per pair and arbitrary amounts the
    float64 sums may differ from the pandas path's in the last bit (neither Spark's shuffle nor
    scipy's duplicate summing fixes an order). The confidences are float32, which absorbs such
    a difference unless a sum lies within ~2**-29 of a float32 rounding boundary: the models
    are still bit-identical."""
    df = _repeats(7)
    df["sales_amount"] = np.random.default_rng(2).exponential(30.0, len(df))
    sdf = spark.createDataFrame(df).repartition(3)
    _assert_same(_fit(df), _fit(sdf))
    ref = Interactions.from_frame(df, "customer_id", "article_id", "sales_amount")
    got = Interactions.from_frame(sdf, "customer_id", "article_id", "sales_amount")
    np.testing.assert_array_equal(ref.user_labels, got.user_labels)
    np.testing.assert_array_equal(ref.item_labels, got.item_labels)
    np.testing.assert_array_equal(ref.matrix.indptr, got.matrix.indptr)
    np.testing.assert_array_equal(ref.matrix.indices, got.matrix.indices)
    np.testing.assert_allclose(got.matrix.data, ref.matrix.data, rtol=1e-14, atol=0)


def test_only_distinct_pairs_are_collected(spark):
    df = _repeats(3)
    table = _spark_pairs(spark.createDataFrame(df), "customer_id", "article_id", "sales_amount")
    sums = df.groupby(["customer_id", "article_id"]).sales_amount.sum()
    assert table.num_rows == len(sums) < len(df)
    got = table.to_pandas().set_index(["u", "i"]).v.sort_index()
    np.testing.assert_array_equal(got.to_numpy(), sums.sort_index().to_numpy())


def test_integer_types_decimal_ratings_and_odd_column_names(spark):
    df = _repeats(4, ids="int")
    rows = [(int(c), int(a), Decimal(str(s))) for c, a, s in df.itertuples(index=False)]
    sdf = spark.createDataFrame(rows, "`c.id` int, `a id` smallint, `amt` decimal(12, 2)")
    got = _fit(sdf, transaction_col="c.id", item_col="a id", rating_col="amt")
    _assert_same(_fit(df), got)
    assert got.item_labels.dtype == np.int64


def test_zero_sums_and_one_row(spark):
    rows = [("a", 1, 0.0), ("a", 2, 2.0), ("b", 2, 0.0), ("b", 2, 0.0)]
    sdf = spark.createDataFrame(rows, SCHEMA)
    x = Interactions.from_frame(sdf, *COLS.values())
    ref = Interactions.from_frame(pd.DataFrame(rows, columns=list(COLS.values())), *COLS.values())
    assert x.matrix.toarray().tolist() == ref.matrix.toarray().tolist() == [[0.0, 2.0], [0, 0]]
    one = Interactions.from_frame(spark.createDataFrame([("a", 1, 3.0)], SCHEMA), *COLS.values())
    assert one.matrix.toarray().tolist() == [[3.0]]


# --- bad input: the pandas path's errors, counted in Spark --------------------------------------


def test_null_ids_are_counted(spark):
    rows = [("a", 1, 1.0), (None, 1, 2.0), (None, 2, 1.0), ("b", None, 1.0)]
    sdf = spark.createDataFrame(rows, SCHEMA)
    with pytest.raises(ValueError, match=r"'customer_id' has 2 null id\(s\) out of 4 rows"):
        _fit(sdf)
    sdf = spark.createDataFrame([r for r in rows if r[0] is not None], SCHEMA)
    with pytest.raises(ValueError, match=r"'article_id' has 1 null id\(s\) out of 2 rows"):
        _fit(sdf)


@pytest.mark.parametrize(
    ("bad", "count", "what"),
    [
        ([math.nan, 1.0, math.nan], 2, "null, NaN or infinite"),
        ([math.inf, 1.0, 2.0], 1, "null, NaN or infinite"),
        ([-math.inf, None, 2.0], 2, "null, NaN or infinite"),
        ([-1.0, -2.0, 3.0], 2, "negative"),
    ],
)
def test_bad_ratings_are_counted(spark, bad, count, what):
    rows = [("a", 1, bad[0]), ("a", 1, bad[1]), ("b", 2, bad[2])]
    with pytest.raises(ValueError, match=f"'sales_amount' has {count} {what}"):
        _fit(spark.createDataFrame(rows, SCHEMA))
    # The same rows through pandas give the same message.
    with pytest.raises(ValueError, match=f"'sales_amount' has {count} {what}"):
        _fit(pd.DataFrame(rows, columns=list(COLS.values())).astype({"sales_amount": float}))


def test_a_negative_line_inside_a_positive_sum_is_still_refused(spark):
    rows = [("a", 1, 5.0), ("a", 1, -1.0), ("b", 1, 1.0)]
    with pytest.raises(ValueError, match="'sales_amount' has 1 negative rating"):
        _fit(spark.createDataFrame(rows, SCHEMA))


def test_sums_overflowing_to_infinity(spark):
    rows = [("a", 1, 1e308), ("a", 1, 1e308)]
    with pytest.raises(ValueError, match="overflowed to infinity"):
        _fit(spark.createDataFrame(rows, SCHEMA))


def test_wrong_types_name_the_column(spark):
    sdf = spark.createDataFrame([(True, 1, 1.0)], "customer_id boolean, article_id int, s double")
    with pytest.raises(TypeError, match="column 'customer_id' holds booleans"):
        _fit(sdf, transaction_col="customer_id", item_col="article_id", rating_col="s")
    sdf = spark.createDataFrame([(1.5, 1, 1.0)], "customer_id double, article_id int, s double")
    with pytest.raises(TypeError, match="'customer_id' has type double.*integers or strings"):
        _fit(sdf, transaction_col="customer_id", item_col="article_id", rating_col="s")
    sdf = spark.createDataFrame([(1, 1, "1")], "customer_id int, article_id int, s string")
    with pytest.raises(TypeError, match="'s' has type string; ratings must be numeric"):
        _fit(sdf, transaction_col="customer_id", item_col="article_id", rating_col="s")


def test_missing_duplicated_and_empty(spark):
    sdf = spark.createDataFrame([("a", 1, 1.0)], SCHEMA)
    with pytest.raises(KeyError, match="'article' is not in the data.*available columns"):
        _fit(sdf, transaction_col="customer_id", item_col="article")
    dup = sdf.select("customer_id", "article_id", "sales_amount", "article_id")
    with pytest.raises(ValueError, match="column 'article_id' appears 2 times"):
        _fit(dup)
    with pytest.raises(ValueError, match="no rows"):
        _fit(spark.createDataFrame([], SCHEMA))
    with pytest.raises(ValueError, match="must differ"):
        _fit(sdf, transaction_col="customer_id", item_col="customer_id")
