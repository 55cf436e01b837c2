"""batch_recommend: exact top-n for every user, in every format, the same rows everywhere."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import rusket
from tests import reference


def _fit(df, **kw):
    return rusket.ALS(factors=8, iterations=4, **kw).from_transactions(
        df, "customer_id", "article_id", "sales_amount"
    )


def _seen_sets(model):
    m = model._fitted("_user_items")
    return [set(m.indices[m.indptr[u] : m.indptr[u + 1]].tolist()) for u in range(m.shape[0])]


@pytest.fixture(scope="module")
def model():
    rng = np.random.default_rng(11)
    n = 900
    df = pd.DataFrame(
        {
            "customer_id": rng.integers(0, 80, n),
            "article_id": [f"sku-{i:03d}" for i in rng.integers(0, 45, n)],
            "sales_amount": rng.exponential(30, n),
        }
    )
    # One customer buys every article: for them nothing is left to recommend.
    everything = pd.DataFrame(
        {"customer_id": 999, "article_id": sorted(set(df.article_id)), "sales_amount": 1.0}
    )
    return _fit(pd.concat([df, everything], ignore_index=True))


def _tied_model(model):
    """The same model with small integer factors: many exactly tied scores."""
    rng = np.random.default_rng(0)
    clone = rusket.ALS(**model.get_params())
    items = rng.integers(-2, 3, model.item_factors.shape).astype(np.float32)
    items[5] = items[6]  # duplicated items tie for every user
    clone._state = dataclasses.replace(
        model._fitted_state(),
        user_factors=rng.integers(-2, 3, model.user_factors.shape).astype(np.float32),
        item_factors=items,
    )
    return clone


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("exclude_seen", [True, False])
@pytest.mark.parametrize("n", [1, 7, 60])
def test_numpy_format_equals_brute_force_argsort(model, tied, exclude_seen, n):
    m = _tied_model(model) if tied else model
    scores = m.user_factors.astype(np.float64) @ m.item_factors.astype(np.float64).T
    want_idx, want_scores = reference.topk(scores, n, _seen_sets(m) if exclude_seen else None)
    labels, got_scores = m.batch_recommend(n=n, exclude_seen=exclude_seen, format="numpy")
    # The numpy output is min(n, n_items) wide: memory never grows with n.
    w = min(n, len(m.item_labels))
    assert labels.shape == got_scores.shape == (len(m.user_labels), w)
    assert (want_idx[:, w:] < 0).all()
    want_idx, want_scores = want_idx[:, :w], want_scores[:, :w]
    pad = want_idx < 0
    np.testing.assert_array_equal(np.isnan(got_scores), pad)
    want_labels = np.where(pad, None, m.item_labels[np.maximum(want_idx, 0)])
    # Scores closer than float32 resolves (but not equal: exact ties are broken by index, as in
    # the reference) may come in either order; every other position must match.
    exact = np.take_along_axis(scores, np.maximum(want_idx, 0), axis=1)
    step = np.diff(exact, axis=1)
    gap = (np.abs(step) <= 1e-6 * np.maximum(1.0, np.abs(exact[:, 1:]))) & (step != 0)
    near = np.zeros_like(pad)
    near[:, 1:] |= gap
    near[:, :-1] |= gap
    assert labels[~near].tolist() == want_labels[~near].tolist()
    col = {label: k for k, label in enumerate(m.item_labels.tolist())}
    for u, k in np.argwhere(near & ~pad):
        assert abs(scores[u, col[labels[u, k]]] - exact[u, k]) <= 2e-6 * max(1.0, abs(exact[u, k]))
    np.testing.assert_allclose(got_scores[~pad], want_scores[~pad], rtol=1e-5, atol=1e-5)


def test_frames_never_hold_seen_items_and_match_recommend_items(model):
    recs = model.batch_recommend(n=10, format="pandas")
    assert list(recs.columns) == ["user_id", "item_id", "score", "rank"]
    seen = _seen_sets(model)
    item_index = {label: i for i, label in enumerate(model.item_labels)}
    user_index = {label: i for i, label in enumerate(model.user_labels)}
    for user, group in recs.groupby("user_id"):
        u = user_index[user]
        assert not seen[u] & {item_index[i] for i in group.item_id}
        items, scores = model.recommend_items(user, n=10)
        assert group.item_id.tolist() == items.tolist()
        np.testing.assert_allclose(group.score, scores, rtol=1e-5, atol=1e-6)
        assert group["rank"].tolist() == list(range(1, len(group) + 1))
    # The customer who bought everything gets no row at all, never a seen item.
    assert 999 not in set(recs.user_id)
    others = len(model.user_labels) - 1
    assert len(recs) <= 10 * others


def test_every_format_holds_the_same_rows(model):
    pl = pytest.importorskip("polars")
    arrow = model.batch_recommend(n=5, format="arrow")
    assert arrow.schema.names == ["user_id", "item_id", "score", "rank"]
    assert arrow.schema.field("user_id").type == pa.int64()
    assert arrow.schema.field("score").type == pa.float32()
    pdf = model.batch_recommend(n=5, format="pandas")
    pol = model.batch_recommend(n=5, format="polars")
    assert isinstance(pol, pl.DataFrame)
    assert pa.Table.from_pandas(pdf, preserve_index=False).to_pylist() == arrow.to_pylist()
    assert pol.to_arrow().to_pylist() == arrow.to_pylist()
    labels, scores = model.batch_recommend(n=5, format="numpy")
    valid = ~np.isnan(scores)
    assert labels[valid].tolist() == arrow["item_id"].to_pylist()


def test_subset_of_users_in_the_given_order(model):
    users = [model.user_labels[7], model.user_labels[2]]
    labels, _ = model.batch_recommend(n=4, users=users, format="numpy")
    for row, user in enumerate(users):
        items, _ = model.recommend_items(user, n=4)
        assert labels[row].tolist() == items.tolist()
    recs = model.batch_recommend(n=4, users=users, format="pandas")
    assert recs.user_id.unique().tolist() == users


def test_integer_labels_pad_with_minus_one():
    df = pd.DataFrame(
        {"customer_id": [1, 1, 2], "article_id": [10, 11, 10], "sales_amount": [1.0, 2.0, 3.0]}
    )
    m = _fit(df)
    labels, scores = m.batch_recommend(n=3, format="numpy")  # 2 articles: 2 columns
    assert labels.dtype == np.int64
    assert labels[0].tolist() == [-1, -1] and np.isnan(scores[0]).all()
    assert labels[1].tolist() == [11, -1] and np.isnan(scores[1, 1:]).all()


def test_bad_arguments(model):
    with pytest.raises(ValueError, match="n must be >= 1"):
        model.batch_recommend(n=0)
    with pytest.raises(TypeError, match="n must be an integer"):
        model.batch_recommend(n=2.5)
    with pytest.raises(ValueError, match="format must be one of"):
        model.batch_recommend(format="excel")
    with pytest.raises(KeyError, match="unknown user 123456"):
        model.batch_recommend(users=[model.user_labels[0], 123456])
    with pytest.raises(rusket.NotFittedError):
        rusket.ALS().batch_recommend()


def test_spark_result_schema_and_the_cookbook_window(spark, model):
    from pyspark.sql import Window
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    recs = model.batch_recommend(n=20, exclude_seen=True, format="spark")
    schema = {f.name: f.dataType for f in recs.schema.fields}
    assert schema == {
        "user_id": T.LongType(),
        "item_id": T.StringType(),
        "score": T.FloatType(),
        "rank": T.IntegerType(),
    }
    w = Window.partitionBy("item_id").orderBy(F.col("score").desc())
    ranked = recs.withColumn("pct", F.percent_rank().over(w))
    tiers = ranked.withColumn(
        "potential",
        F.when(F.col("pct") <= 0.2, "High").when(F.col("pct") <= 0.5, "Medium").otherwise("Low"),
    )
    counts = {r["potential"]: r["count"] for r in tiers.groupBy("potential").count().collect()}
    assert sum(counts.values()) == len(model.batch_recommend(n=20, format="arrow"))
    assert set(counts) <= {"High", "Medium", "Low"} and counts.get("High", 0) > 0
    # Exports and recommendations join on the shared column names.
    joined = recs.join(model.export_item_factors(format="spark"), "item_id")
    assert joined.count() == recs.count()
