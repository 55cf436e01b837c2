"""fit_als: Spark MLlib's implicit ALS returning a regular rusket.ALS (real local Spark)."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest

import rusket
from rusket._spark_fit import _fit_mllib, fit_als

pytest.importorskip("pyspark")

COLS = ("customer_id", "article_id", "sales_amount")
PARAMS = {"factors": 4, "iterations": 3, "alpha": 5.0, "seed": 0}


def _lines(seed: int = 0, n: int = 600) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": [f"c{u:02d}" for u in rng.integers(0, 40, n)],
            "article_id": rng.integers(0, 25, n) * 10,
            "sales_amount": rng.exponential(20.0, n),
        }
    )


@pytest.fixture(scope="module")
def lines() -> pd.DataFrame:
    df = _lines()
    df.loc[df.index[:3], "sales_amount"] = 0.0  # pairs summing to 0: labels kept, not trained
    # A customer whose only line is 0: a label without training pairs (zero factors).
    return pd.concat([df, pd.DataFrame([["zz", 10, 0.0]], columns=df.columns)], ignore_index=True)


@pytest.fixture(scope="module")
def fitted(spark, lines):
    """One MLlib fit (string customers, integer articles) shared by the tests below."""
    return _fit_mllib(spark.createDataFrame(lines), *COLS, **PARAMS)


@pytest.fixture(scope="module")
def reference(lines):
    return rusket.ALS(**PARAMS).from_transactions(lines, *COLS)


def test_labels_and_training_pairs_are_those_of_from_transactions(fitted, reference):
    model = fitted.model
    assert isinstance(model, rusket.ALS)
    np.testing.assert_array_equal(model.user_labels, reference.user_labels)
    np.testing.assert_array_equal(model.item_labels, reference.item_labels)
    assert model.user_labels.dtype == object and isinstance(model.user_labels[0], str)
    assert model.item_labels.dtype == np.int64
    assert model.user_factors.shape == (len(reference.user_labels), 4)
    assert model.user_factors.dtype == np.float32
    ours, ref = model._fitted_state().seen, reference._fitted_state().seen
    np.testing.assert_array_equal(ours.indptr, ref.indptr)
    np.testing.assert_array_equal(ours.indices, ref.indices)
    np.testing.assert_array_equal(ours.data, ref.data)  # rusket's log confidences
    assert model.get_params()["factors"] == 4


def test_scores_match_mllibs_recommend_for_all_users(fitted):
    model = fitted.model
    theirs = fitted.mllib_model.recommendForAllUsers(5).join(fitted.user_index, "uidx")
    rows = theirs.select("u", "recommendations").collect()
    # MLlib has no factors for "zz" (no positive pair): every other customer is there.
    assert sorted(r.u for r in rows) == [u for u in model.user_labels if u != "zz"]
    for row in rows:
        want = np.array([r.rating for r in row.recommendations], np.float32)
        items, scores = model.recommend_items(user=row.u, n=5, exclude_seen=False)
        np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-6)
        # Same items, up to ties.
        direct = model.score(row.u, items)
        np.testing.assert_allclose(direct, want, rtol=1e-5, atol=1e-6)
    # The item index MLlib saw is the model's item order.
    idx = {r.i: r.iidx for r in fitted.item_index.collect()}
    assert [idx[int(label)] for label in model.item_labels] == list(range(len(idx)))


def test_user_factors_solve_mllibs_objective_exactly(fitted, lines):
    """A slow numpy reference of MLlib's last half-sweep (users against the final items):
    confidence 1 + alpha * log1p(r), preference 1, penalty regParam * (pairs of the user)."""
    model = fitted.model
    y = model.item_factors.astype(np.float64)
    sums = lines.groupby(["customer_id", "article_id"]).sales_amount.sum()
    alpha, lam = PARAMS["alpha"], fitted.reg_param
    checked = 0
    for k, user in enumerate(model.user_labels):
        s = sums.loc[user]
        s = s[s > 0]
        if not len(s):
            np.testing.assert_array_equal(model.user_factors[k], 0.0)
            continue
        rows = np.searchsorted(model.item_labels, s.index.to_numpy())
        c = 1.0 + alpha * np.log1p(s.to_numpy())
        yu = y[rows]
        a = y.T @ y + yu.T @ ((c - 1.0)[:, None] * yu) + lam * len(s) * np.eye(y.shape[1])
        x = np.linalg.solve(a, yu.T @ c)
        np.testing.assert_allclose(model.user_factors[k], x, rtol=2e-3, atol=2e-4)
        checked += 1
    assert checked >= len(model.user_labels) - 4  # at most the zeroed lines untrained
    assert model.user_labels[-1] == "zz"
    np.testing.assert_array_equal(model.user_factors[-1], 0.0)


def test_auto_penalty_follows_rusket_for_the_average_row_of_the_denser_side(fitted, reference):
    seen = reference._fitted_state().seen
    mean_c = float(np.mean(seen.data, dtype=np.float64))
    want = 3.0 * mean_c * min(seen.shape) / seen.nnz
    assert fitted.reg_param == pytest.approx(want, rel=1e-12)
    assert fitted.model.regularization_ == fitted.reg_param


def test_the_model_scores_exports_saves_pickles_and_projects(spark, fitted, tmp_path):
    model = fitted.model
    recs = model.batch_recommend(n=3, exclude_seen=True, format="pandas")
    seen = model._fitted_state().seen
    for user, group in recs.groupby("user_id"):
        row = int(np.searchsorted(model.user_labels, user))
        bought = set(model.item_labels[seen.indices[seen.indptr[row] : seen.indptr[row + 1]]])
        assert not bought & set(group.item_id)
    exported = model.export_item_factors(format="pandas")
    assert len(exported) == len(model.item_labels)
    path = tmp_path / "m.npz"
    model.save(path)
    back = rusket.ALS.load(path)
    np.testing.assert_array_equal(back.user_factors, model.user_factors)
    np.testing.assert_array_equal(back.user_labels, model.user_labels)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.item_factors, model.item_factors)
    assert model.pca(n_components=2).coordinates.shape[0] > 0
    # Scored on the executors: the same rows as in-process.
    dist = rusket.spark.batch_recommend(model, n=3, spark=spark).toPandas()
    key = ["user_id", "rank"]
    a = dist.sort_values(key).reset_index(drop=True)
    b = recs.sort_values(key).reset_index(drop=True)
    np.testing.assert_array_equal(a.item_id, b.item_id)
    np.testing.assert_allclose(a.score, b.score, rtol=1e-6)


def test_integer_labels_counts_and_linear_confidence(spark):
    df = _lines(3, n=200)
    df["customer_id"] = df.customer_id.str[1:].astype("int32") * 7
    sdf = spark.createDataFrame(df)
    model = fit_als(
        sdf,
        "customer_id",
        "article_id",
        factors=3,
        iterations=1,
        regularization=0.1,
        confidence="linear",
        alpha=2.0,
    )
    ref = rusket.ALS(confidence="linear", alpha=2.0).from_transactions(
        df, "customer_id", "article_id"
    )
    np.testing.assert_array_equal(model.user_labels, ref.user_labels)
    assert model.user_labels.dtype == np.int64
    np.testing.assert_array_equal(model._fitted_state().seen.data, ref._fitted_state().seen.data)
    assert model.regularization_ == 0.1
    assert np.isfinite(model.user_factors).all() and np.abs(model.user_factors).sum() > 0


# --- bad input ----------------------------------------------------------------------------------


def test_bad_rows_give_the_errors_of_from_transactions(spark):
    schema = "customer_id string, article_id bigint, sales_amount double"
    sdf = spark.createDataFrame([("a", 1, 1.0), (None, 2, 1.0)], schema)
    with pytest.raises(ValueError, match=r"'customer_id' has 1 null id\(s\) out of 2 rows"):
        fit_als(sdf, *COLS)
    sdf = spark.createDataFrame([("a", 1, 1.0), ("a", 1, -2.0), ("b", 1, float("nan"))], schema)
    with pytest.raises(ValueError, match="'sales_amount' has 1 null, NaN or infinite"):
        fit_als(sdf, *COLS)
    with pytest.raises(ValueError, match="no rows"):
        fit_als(spark.createDataFrame([], schema), *COLS)
    sdf = spark.createDataFrame([(True, 1, 1.0)], "customer_id boolean, article_id int, s double")
    with pytest.raises(TypeError, match="'customer_id' holds booleans"):
        fit_als(sdf, "customer_id", "article_id", "s")
    with pytest.raises(KeyError, match="'nope' is not in the data"):
        fit_als(sdf, "customer_id", "nope")


def test_bad_parameters_and_frames(spark, lines):
    sdf = spark.createDataFrame(lines.head(5))
    with pytest.raises(TypeError, match="'cg_steps' is a parameter of rusket's own solver"):
        fit_als(sdf, *COLS, cg_steps=3)
    with pytest.raises(TypeError, match="unexpected keyword argument 'factor'.*'factors'"):
        fit_als(sdf, *COLS, factor=3)
    with pytest.raises(ValueError, match="factors must be >= 1"):
        fit_als(sdf, *COLS, factors=0)
    with pytest.raises(ValueError, match="num_blocks must be >= 1"):
        fit_als(sdf, *COLS, num_blocks=0)
    with pytest.raises(TypeError, match="takes a Spark DataFrame.*from_transactions"):
        fit_als(lines, *COLS)
    with pytest.raises(ValueError, match="must differ"):
        fit_als(sdf, "customer_id", "customer_id")
