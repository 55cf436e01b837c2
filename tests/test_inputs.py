"""Data in: every frame type gives the same model; every bad input gives a clear error."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import scipy.sparse as sp

import rusket

COLS = {"transaction_col": "customer_id", "item_col": "article_id", "rating_col": "sales_amount"}


def _fit(data, **cols):
    return rusket.ALS(factors=8, iterations=3, seed=1).from_transactions(data, **(cols or COLS))


def _assert_same(a, b):
    np.testing.assert_array_equal(a.user_labels, b.user_labels)
    np.testing.assert_array_equal(a.item_labels, b.item_labels)
    np.testing.assert_array_equal(a.user_factors, b.user_factors)
    np.testing.assert_array_equal(a.item_factors, b.item_factors)


@pytest.mark.parametrize("fixture", ["purchases", "small_purchases"])
def test_pandas_polars_arrow_and_scipy_give_the_same_model(request, fixture):
    pl = pytest.importorskip("polars")
    df = request.getfixturevalue(fixture)
    ref = _fit(df)
    _assert_same(ref, _fit(pa.Table.from_pandas(df)))
    _assert_same(ref, _fit(pl.from_pandas(df)))
    _assert_same(ref, _fit(pl.from_pandas(df).lazy()))
    # Row order does not matter: labels are sorted and duplicates summed.
    _assert_same(ref, _fit(df.sample(frac=1.0, random_state=3)))
    # Categorical / dictionary-encoded ids read the same as plain ones.
    _assert_same(ref, _fit(df.astype({"customer_id": "category"})))
    X = sp.csr_matrix(
        (
            df.sales_amount,
            (
                np.searchsorted(ref.user_labels, df.customer_id),
                np.searchsorted(ref.item_labels, df.article_id),
            ),
        ),
        shape=(len(ref.user_labels), len(ref.item_labels)),
    )
    fitted = rusket.ALS(factors=8, iterations=3, seed=1).fit(
        X, user_labels=ref.user_labels, item_labels=ref.item_labels
    )
    _assert_same(ref, fitted)


def test_spark_frame_gives_the_same_model(spark, small_purchases):
    sdf = spark.createDataFrame(small_purchases)
    _assert_same(_fit(small_purchases), _fit(sdf))


def test_integer_flavours_and_extra_columns_are_fine(purchases):
    df = purchases.astype({"customer_id": "int32", "article_id": "uint16"})
    df["store"] = "north"
    _assert_same(_fit(purchases), _fit(df))


# --- bad input ---------------------------------------------------------------------------------


def test_missing_column_names_the_column_and_lists_the_others(purchases):
    with pytest.raises(KeyError, match="'article' is not in the data.*available columns"):
        _fit(purchases, transaction_col="customer_id", item_col="article")
    with pytest.raises(KeyError, match="'amount'"):
        _fit(purchases, transaction_col="customer_id", item_col="article_id", rating_col="amount")


def test_empty_frame():
    df = pd.DataFrame({"customer_id": [], "article_id": [], "sales_amount": []})
    with pytest.raises(ValueError, match="no rows"):
        _fit(df.astype({"customer_id": int, "article_id": int}))


def test_null_ids_are_counted(purchases):
    df = purchases.astype({"customer_id": "Int64"})
    df.loc[[3, 9], "customer_id"] = pd.NA
    with pytest.raises(ValueError, match="'customer_id' has 2 null id"):
        _fit(df)
    t = pa.table({"customer_id": ["a", None], "article_id": [1, 2], "sales_amount": [1.0, 2.0]})
    with pytest.raises(ValueError, match="1 null id"):
        _fit(t)


@pytest.mark.parametrize(
    ("bad", "count", "what"),
    [
        ([np.nan, 1.0, np.nan], 2, "null, NaN or infinite"),
        ([np.inf, 1.0, 2.0], 1, "null, NaN or infinite"),
        ([-1.0, -2.0, 3.0], 2, "negative"),
    ],
)
def test_bad_ratings_are_counted(bad, count, what):
    df = pd.DataFrame({"customer_id": [1, 2, 3], "article_id": [1, 1, 2], "sales_amount": bad})
    with pytest.raises(ValueError, match=f"'sales_amount' has {count} {what}"):
        _fit(df)


def test_null_ratings():
    t = pa.table({"customer_id": [1, 2], "article_id": [1, 2], "sales_amount": [1.0, None]})
    with pytest.raises(ValueError, match="1 null, NaN or infinite rating"):
        _fit(t)


def test_non_numeric_ratings_and_float_ids():
    df = pd.DataFrame({"customer_id": [1, 2], "article_id": [1, 2], "sales_amount": ["1", "2"]})
    with pytest.raises(TypeError, match="'sales_amount'.*must be numeric"):
        _fit(df)
    df = pd.DataFrame({"customer_id": [1.5, 2.0], "article_id": [1, 2], "sales_amount": [1, 2]})
    with pytest.raises(TypeError, match="'customer_id'.*integers or strings"):
        _fit(df)


def test_unsupported_data_type():
    with pytest.raises(TypeError, match="pandas, polars"):
        rusket.ALS().from_transactions({"a": [1]}, "a", "b")
    with pytest.raises(TypeError, match="transaction_col"):
        rusket.ALS().from_transactions(pd.DataFrame({"a": [1]}), 0.5, "a")
    # Integer names are column names (pandas without a header line): this one is missing.
    with pytest.raises(KeyError, match="column 0 is not in the data"):
        rusket.ALS().from_transactions(pd.DataFrame({"a": [1]}), 0, "a")
    with pytest.raises(ValueError, match="must differ"):
        rusket.ALS().from_transactions(pd.DataFrame({"a": [1]}), "a", "a")


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"factors": 0}, ValueError, "factors must be >= 1"),
        ({"factors": 2.5}, TypeError, "factors must be an integer"),
        ({"iterations": 0}, ValueError, "iterations must be >= 1"),
        ({"alpha": -1.0}, ValueError, "alpha must be a finite number >= 0"),
        ({"regularization": -0.1}, ValueError, "regularization"),
        ({"regularization": float("nan")}, ValueError, "regularization"),
        ({"solver": "lu"}, ValueError, "solver must be one of"),
        ({"cg_steps": 0}, ValueError, "cg_steps"),
        ({"num_threads": -1}, ValueError, "num_threads"),
        ({"confidence": "sqrt"}, ValueError, "confidence"),
        ({"progress": "yes"}, TypeError, "progress"),
        ({"seed": -3}, ValueError, "seed"),
    ],
)
def test_bad_parameters(purchases, params, error, match):
    with pytest.raises(error, match=match):
        rusket.ALS(**params).from_transactions(purchases, **COLS)


def test_unknown_keyword_arguments(purchases):
    with pytest.raises(TypeError, match="unknown keyword argument 'rank'"):
        rusket.ALS.from_transactions(purchases, **COLS, rank=3)
    with pytest.raises(TypeError):
        rusket.ALS(rank=3)  # type: ignore[call-arg]
