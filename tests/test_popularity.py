"""Popularity: buyer counts against a pandas reference, seen items excluded, deterministic ties,
every format, int and string labels, persistence and bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import scipy.sparse as sp

import rusket
from tests import reference


def _log(labels: str, seed: int = 3) -> pd.DataFrame:
    """Order lines with repeat purchases, zero amounts and (few articles) many tied counts."""
    rng = np.random.default_rng(seed)
    n = 700
    users = rng.integers(0, 90, n)
    items = rng.integers(0, 25, n)
    df = pd.DataFrame(
        {
            "customer_id": users if labels == "int" else [f"c{u:02d}" for u in users],
            "article_id": items * 7 if labels == "int" else [f"sku-{i:02d}" for i in items],
            "sales_amount": np.where(rng.random(n) < 0.1, 0.0, rng.exponential(10, n)),
        }
    )
    # One customer buys every article: nothing is left to recommend to them.
    last = df.customer_id.iloc[0]
    everything = pd.DataFrame(
        {"customer_id": last, "article_id": sorted(set(df.article_id)), "sales_amount": 1.0}
    )
    return pd.concat([df, everything], ignore_index=True)


def _reference(df: pd.DataFrame, rating_col: str | None):
    """Labels, buyer counts and each user's bought items, straight from the definition."""
    users = np.array(sorted(set(df.customer_id)), dtype=object)
    items = np.array(sorted(set(df.article_id)), dtype=object)
    amount = df[rating_col] if rating_col else pd.Series(1.0, index=df.index)
    summed = amount.groupby([df.customer_id, df.article_id]).sum()
    bought = summed[summed > 0].reset_index()
    counts = bought.groupby("article_id").size().reindex(items, fill_value=0).to_numpy()
    item_index = {label: i for i, label in enumerate(items)}
    seen = [set() for _ in users]
    user_index = {label: u for u, label in enumerate(users)}
    for u, i in zip(bought.customer_id, bought.article_id):
        seen[user_index[u]].add(item_index[i])
    return users, items, counts, seen


@pytest.fixture(scope="module", params=["int", "str"])
def case(request):
    df = _log(request.param)
    model = rusket.Popularity.from_transactions(df, "customer_id", "article_id", "sales_amount")
    return df, model, _reference(df, "sales_amount")


def test_scores_are_buyer_counts(case):
    df, model, (users, items, counts, _) = case
    assert model.user_labels.tolist() == users.tolist()
    assert model.item_labels.tolist() == items.tolist()
    np.testing.assert_array_equal(model.buyer_counts, counts)
    assert model.buyer_counts.dtype == np.int64
    # Without rating_col every line is a purchase: zero amounts count too.
    plain = rusket.Popularity.from_transactions(df, "customer_id", "article_id")
    np.testing.assert_array_equal(plain.buyer_counts, _reference(df, None)[2])
    assert (plain.buyer_counts >= model.buyer_counts).all()


@pytest.mark.parametrize("exclude_seen", [True, False])
@pytest.mark.parametrize("n", [1, 5, 40])
def test_batch_equals_the_numpy_reference(case, exclude_seen, n):
    df, model, (users, items, counts, seen) = case
    scores = np.tile(counts.astype(np.float64), (len(users), 1))
    want_idx, want_scores = reference.topk(scores, n, seen if exclude_seen else None)
    labels, got = model.batch_recommend(n=n, exclude_seen=exclude_seen, format="numpy")
    w = min(n, len(items))  # the numpy output is min(n, n_items) wide
    assert got.shape == labels.shape == (len(users), w) and (want_idx[:, w:] < 0).all()
    want_idx, want_scores = want_idx[:, :w], want_scores[:, :w]
    pad = want_idx < 0
    np.testing.assert_array_equal(np.isnan(got), pad)
    np.testing.assert_array_equal(got[~pad], want_scores[~pad])
    assert labels[~pad].tolist() == items[want_idx[~pad]].tolist()
    if exclude_seen:  # the customer who bought everything gets padding only
        assert pad[users.tolist().index(df.customer_id.iloc[0])].all()
    for u in (0, 1, 17, len(users) - 1):
        got_items, got_scores = model.recommend_items(users[u], n=n, exclude_seen=exclude_seen)
        assert got_items.tolist() == labels[u][~pad[u]].tolist()
        np.testing.assert_array_equal(got_scores, got[u][~pad[u]])


def test_ties_are_broken_by_label_order_and_are_deterministic():
    # Articles b, c, d have two buyers each, a has three: a first, then b, c, d in label order.
    df = pd.DataFrame(
        {
            "u": [1, 2, 3, 1, 2, 2, 3, 3, 4, 5],
            "i": ["a", "a", "a", "d", "d", "c", "c", "b", "b", "e"],
        }
    )
    model = rusket.Popularity.from_transactions(df, "u", "i")
    items, scores = model.recommend_items(5, n=10)
    assert items.tolist() == ["a", "b", "c", "d"]
    assert scores.tolist() == [3.0, 2.0, 2.0, 2.0]
    again = rusket.Popularity.from_transactions(df.sample(frac=1.0, random_state=1), "u", "i")
    for a, b in zip(model.batch_recommend(format="numpy"), again.batch_recommend(format="numpy")):
        np.testing.assert_array_equal(a, b)


def test_recommend_users_excludes_buyers_in_label_order(case):
    _, model, (users, items, counts, seen) = case
    item = items[3]
    buyers = {u for u in range(len(users)) if 3 in seen[u]}
    got, scores = model.recommend_users(item, n=1000, exclude_seen=True)
    assert got.tolist() == [users[u] for u in range(len(users)) if u not in buyers]
    assert (scores == counts[3]).all()
    everyone, _ = model.recommend_users(item, n=5)
    assert everyone.tolist() == users[:5].tolist()


def test_every_format_holds_the_same_rows(case):
    pl = pytest.importorskip("polars")
    _, model, _ = case
    arrow = model.batch_recommend(n=4, format="arrow")
    assert arrow.schema.names == ["user_id", "item_id", "score", "rank"]
    assert arrow.schema.field("score").type == pa.float32()
    pdf = model.batch_recommend(n=4, format="pandas")
    assert pa.Table.from_pandas(pdf, preserve_index=False).to_pylist() == arrow.to_pylist()
    assert model.batch_recommend(n=4, format="polars").to_arrow().to_pylist() == arrow.to_pylist()
    assert isinstance(model.batch_recommend(n=4, format="polars"), pl.DataFrame)
    labels, scores = model.batch_recommend(n=4, format="numpy")
    assert labels[~np.isnan(scores)].tolist() == arrow["item_id"].to_pylist()
    subset = [model.user_labels[5], model.user_labels[2]]
    sub_labels, _ = model.batch_recommend(n=4, users=subset, format="numpy")
    np.testing.assert_array_equal(sub_labels, labels[[5, 2]])


def test_spark_formats_and_distributed_scoring(spark, case):
    from rusket import spark as rspark

    _, model, _ = case
    local = model.batch_recommend(n=3, format="spark")
    dist = rspark.batch_recommend(model, n=3, num_partitions=2)
    assert dist.schema == local.schema
    want = model.batch_recommend(n=3, format="arrow").to_pylist()
    key = sorted((r["user_id"], r["rank"], r["item_id"]) for r in want)
    for sdf in (local, dist):
        got = sdf.toArrow().to_pylist()
        assert sorted((r["user_id"], r["rank"], r["item_id"]) for r in got) == key


def test_inputs_give_the_same_model(case):
    pl = pytest.importorskip("polars")
    df, model, _ = case
    for data in (pa.Table.from_pandas(df), pl.from_pandas(df), pl.from_pandas(df).lazy()):
        other = rusket.Popularity().from_transactions(
            data, "customer_id", "article_id", "sales_amount"
        )
        np.testing.assert_array_equal(other.buyer_counts, model.buyer_counts)
    u = np.searchsorted(model.user_labels, df.customer_id)
    i = np.searchsorted(model.item_labels, df.article_id)
    X = sp.csr_matrix(
        (df.sales_amount, (u, i)), shape=(len(model.user_labels), len(model.item_labels))
    )
    # Labels given in another order than sorted: the model keeps the caller's column order
    # (column j is item_labels[j]), and every label keeps its own counts and recommendations
    # (only the order among equal scores follows the new item order).
    perm = np.random.default_rng(0).permutation(len(model.item_labels))
    fitted = rusket.Popularity().fit(
        X[:, perm], user_labels=model.user_labels, item_labels=model.item_labels[perm]
    )
    np.testing.assert_array_equal(fitted.item_labels, model.item_labels[perm])
    np.testing.assert_array_equal(fitted.buyer_counts, model.buyer_counts[perm])
    n_all = len(model.item_labels)
    got = fitted.batch_recommend(n=n_all, format="arrow").to_pylist()
    want = model.batch_recommend(n=n_all, format="arrow").to_pylist()
    key = sorted((r["user_id"], r["item_id"], r["score"]) for r in want)
    assert sorted((r["user_id"], r["item_id"], r["score"]) for r in got) == key
    assert rusket.Popularity().fit(sp.csr_matrix([[0.0, 2.0]])).buyer_counts.tolist() == [0, 1]


def test_save_load_round_trip(tmp_path, case):
    _, model, _ = case
    model.save(tmp_path / "pop.npz")
    back = rusket.Popularity.load(tmp_path / "pop.npz")
    assert isinstance(back, rusket.Popularity)
    np.testing.assert_array_equal(back.user_labels, model.user_labels)
    assert back.user_labels.dtype == model.user_labels.dtype
    np.testing.assert_array_equal(back.buyer_counts, model.buyer_counts)
    for a, b in zip(back.batch_recommend(format="numpy"), model.batch_recommend(format="numpy")):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="holds a 'Popularity' model, not ALS"):
        rusket.ALS.load(tmp_path / "pop.npz")


def test_evaluate_ranks_best_sellers():
    train = pd.DataFrame({"c": [1, 1, 2, 2, 3], "a": [10, 11, 10, 12, 11]})
    test = pd.DataFrame({"c": [1, 3], "a": [12, 12]})
    pop = rusket.Popularity.from_transactions(train, "c", "a")
    result = pop.evaluate(test, "c", "a", k=1)
    # Customer 1 gets 12 (the only article left): a hit; customer 3 gets 10 (2 buyers): a miss.
    assert result["hit_rate@1"] == 0.5 and result["users"] == 2
    from rusket.evaluation import evaluate

    assert evaluate(pop, test, "c", "a", 1) == result


def test_surface_params_and_no_factor_methods():
    df = pd.DataFrame({"u": [1, 2], "i": [5, 6]})
    a = rusket.Popularity.from_transactions(df, "u", "i")
    b = rusket.Popularity().from_transactions(df, "u", "i")
    assert isinstance(a, rusket.Popularity) and isinstance(b, rusket.Popularity)
    assert a.get_params() == {} and repr(a) == "Popularity()"
    assert "Popularity" in rusket.__all__
    for name in ("similar_items", "pca", "export_item_factors", "export_user_factors",
                 "export_factors", "user_factors", "item_factors"):  # fmt: skip
        assert not hasattr(a, name), name
    base = pytest.importorskip("sklearn.base")
    assert base.clone(a).get_params() == {}


def test_bad_input():
    df = pd.DataFrame({"u": [1, 1, 2], "i": ["a", "b", "a"], "r": [1.0, 2.0, 3.0]})
    pop = rusket.Popularity.from_transactions(df, "u", "i", "r")
    with pytest.raises(TypeError, match="factors"):
        rusket.Popularity.from_transactions(df, "u", "i", factors=3)
    with pytest.raises(TypeError, match="unknown parameter 'alpha' for Popularity"):
        pop.set_params(alpha=1.0)
    with pytest.raises(KeyError, match="'item'"):
        rusket.Popularity.from_transactions(df, "u", "item")
    with pytest.raises(ValueError, match="negative"):
        rusket.Popularity.from_transactions(df.assign(r=-1.0), "u", "i", "r")
    with pytest.raises(ValueError, match="no rows"):
        rusket.Popularity.from_transactions(df.iloc[:0], "u", "i")
    with pytest.raises(TypeError, match="scipy sparse"):
        rusket.Popularity().fit(np.ones((2, 2)))
    with pytest.raises(ValueError, match="Popularity needs at least one user"):
        rusket.Popularity().fit(sp.csr_matrix((0, 3)))
    with pytest.raises(KeyError, match="unknown user 3"):
        pop.recommend_items(3)
    with pytest.raises(KeyError, match="unknown item 'z'"):
        pop.recommend_users("z")
    with pytest.raises(TypeError, match="one user label"):
        pop.recommend_items([1, 2])
    with pytest.raises(TypeError, match="exclude_seen"):
        pop.recommend_items(1, exclude_seen="yes")
    with pytest.raises(ValueError, match="n must be >= 1"):
        pop.batch_recommend(n=0)
    with pytest.raises(ValueError, match="format must be one of"):
        pop.batch_recommend(format="csv")
    with pytest.raises(rusket.NotFittedError, match="Popularity model is not fitted"):
        rusket.Popularity().recommend_items(1)
    with pytest.raises(rusket.NotFittedError):
        rusket.Popularity().save("x.npz")
