"""New customers without retraining: ALS.recommend_basket and ALS.fold_in (issue 9, item 2)."""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rusket
from rusket import _core
from rusket.als import _csr_arrays
from tests import reference


def _fit(df: pd.DataFrame, rating_col: str | None = "sales_amount", **params) -> rusket.ALS:
    kw = {"factors": 8, "iterations": 6, "solver": "cholesky", **params}
    return rusket.ALS(**kw).from_transactions(df, "customer_id", "article_id", rating_col)


def _vectors(frame: pd.DataFrame) -> np.ndarray:
    return np.stack(frame["vector"].to_numpy()).astype(np.float32)


def _basket(df: pd.DataFrame, customer) -> tuple[list, list]:
    lines = df[df.customer_id == customer]
    return lines.article_id.tolist(), lines.sales_amount.tolist()


@pytest.mark.parametrize("confidence", ["log", "linear"])
@pytest.mark.parametrize("regularization", ["auto", 0.5])
@pytest.mark.parametrize("factors", [3, 8, 30])
def test_fold_in_of_training_customers_is_their_exact_solve(
    small_purchases, confidence, regularization, factors
):
    """Each training customer's own history folded in against the final item factors is that
    customer's exact solve: the Rust Cholesky half-step and the dense numpy reference. With 3
    factors most customers have more articles than factors (the f x f system), with 30 all
    have fewer (the L x L one), with 8 both occur."""
    model = _fit(
        small_purchases,
        confidence=confidence,
        regularization=regularization,
        alpha=2.0,
        factors=factors,
    )
    lengths = np.diff(model._fitted_state().seen.indptr)
    assert {3: lengths.max() > 3, 8: lengths.min() < 8 <= lengths.max(), 30: lengths.max() < 30}[
        factors
    ]
    state = model._fitted_state()
    out = model.fold_in(small_purchases, "customer_id", "article_id", "sales_amount")
    assert out["user_id"].tolist() == state.user_labels.tolist()
    got = _vectors(out)

    # Every customer's penalty grows with their number of articles (the default exponent 0.5).
    lam_u, _ = reference.row_penalties(state.seen, regularization, 0.5)
    np.testing.assert_allclose(
        lam_u, model.regularization_ * np.maximum(lengths, 1) ** 0.5, rtol=1e-6
    )
    rust = np.zeros_like(state.user_factors)
    _core.als_solve_side(
        *_csr_arrays(state.seen),
        state.item_factors,
        rust,
        regularization=model.regularization_,
        solver="cholesky",
        cg_steps=1,
        num_threads=1,
        row_scale=(np.maximum(lengths, 1) ** 0.5).astype(np.float32),
    )
    dense = reference.als_half_step(state.seen, state.item_factors, lam_u)
    scale = np.abs(dense).max()
    np.testing.assert_allclose(got, dense, atol=1e-5 * scale, rtol=0)
    np.testing.assert_allclose(got, rust, atol=1e-5 * scale, rtol=0)
    # The final sweep solved the items last: the stored user vectors were solved against the
    # previous items, so they differ from the fold-in (not trivially equal).
    assert not np.allclose(got, state.user_factors, atol=1e-7)


def test_recommend_basket_is_fold_in_plus_scoring(small_purchases):
    model = _fit(small_purchases)
    state = model._fitted_state()
    vectors = _vectors(model.fold_in(small_purchases, "customer_id", "article_id", "sales_amount"))
    for k, customer in enumerate(state.user_labels[:12]):
        items, amounts = _basket(small_purchases, customer)
        labels, scores = model.recommend_basket(items, amounts, n=7)
        # Brute force: every article's score with the folded-in vector, basket excluded.
        x = vectors[k]
        all_scores = state.item_factors @ x
        bought = set(state.item_index().rows(items).tolist())
        idx, val = reference.topk(all_scores[None], 7, [bought])
        keep = idx[0] >= 0
        assert labels.tolist() == state.item_labels[idx[0][keep]].tolist()
        np.testing.assert_allclose(scores, val[0][keep], rtol=1e-5, atol=1e-6)
        assert not set(labels.tolist()) & set(items)


def test_one_customer_alone_gets_the_vector_it_gets_among_many(small_purchases):
    model = _fit(small_purchases)
    many = _vectors(model.fold_in(small_purchases, "customer_id", "article_id", "sales_amount"))
    lengths = np.diff(model._fitted_state().seen.indptr)
    # The shortest and the longest history: both systems (L x L and f x f).
    for k in (int(np.argmin(lengths)), int(np.argmax(lengths))):
        customer = model.user_labels[k]
        alone = model.fold_in(
            small_purchases[small_purchases.customer_id == customer],
            "customer_id",
            "article_id",
            "sales_amount",
        )
        np.testing.assert_array_equal(_vectors(alone)[0], many[k])
        items, amounts = _basket(small_purchases, customer)
        labels, scores = model.recommend_basket(items, amounts, n=5)
        full = model.item_factors @ many[k]
        np.testing.assert_allclose(
            scores, full[model._fitted_state().item_index().rows(labels)], rtol=1e-6
        )


def test_amounts_are_read_like_training_data(small_purchases):
    model = _fit(small_purchases)
    a, b = model.item_labels[:2].tolist()
    # Repeats are summed before the confidence transform, as in training.
    split = model.recommend_basket([a, b, a], [1.0, 2.0, 3.0], n=5)
    summed = model.recommend_basket([a, b], [4.0, 2.0], n=5)
    assert split[0].tolist() == summed[0].tolist()
    np.testing.assert_array_equal(split[1], summed[1])
    # No amounts count each line as 1, like rating_col=None.
    counted = model.recommend_basket([a, a, b], n=5)
    explicit = model.recommend_basket([a, b], [2.0, 1.0], n=5)
    np.testing.assert_array_equal(counted[1], explicit[1])
    # A zero amount is no interaction (training leaves such pairs out).
    with_zero = model.recommend_basket([a, b], [4.0, 0.0], n=5, exclude_seen=False)
    without = model.recommend_basket([a], [4.0], n=5, exclude_seen=False)
    np.testing.assert_array_equal(with_zero[1], without[1])


def test_exclude_seen_false_keeps_the_basket_articles():
    df = pd.DataFrame({"c": [1, 1, 2, 2, 3, 3, 4], "a": list("abbcacd")})
    model = rusket.ALS(factors=2, iterations=4, solver="cholesky").from_transactions(df, "c", "a")
    kept, _ = model.recommend_basket(["a", "b", "c", "d"], n=10, exclude_seen=False)
    assert sorted(kept.tolist()) == ["a", "b", "c", "d"]
    gone, _ = model.recommend_basket(["a", "b", "c", "d"], n=10)
    assert gone.size == 0
    one, _ = model.recommend_basket(["a", "b", "c"], n=10)
    assert one.tolist() == ["d"]


def test_unknown_articles_raise_naming_them_or_are_ignored(small_purchases):
    model = _fit(small_purchases)
    a = model.item_labels[0]
    with pytest.raises(KeyError, match=r"'zz1'.*'zz2'.*unknown='ignore'"):
        model.recommend_basket([a, "zz1", "zz2"])
    ignored = model.recommend_basket([a, "zz1"], [3.0, 1.0], unknown="ignore")
    plain = model.recommend_basket([a], [3.0])
    assert ignored[0].tolist() == plain[0].tolist()
    with pytest.raises(ValueError, match="none of the basket's articles"):
        model.recommend_basket(["zz1"], unknown="ignore")
    with pytest.raises(ValueError, match="unknown must be one of"):
        model.recommend_basket([a], unknown="drop")
    # A label of the wrong kind is a mistake in every mode; booleans are never labels.
    with pytest.raises(KeyError, match="strings"):
        model.recommend_basket([a, 3], unknown="ignore")
    with pytest.raises(TypeError, match="booleans"):
        model.recommend_basket([True])

    new = pd.DataFrame({"customer_id": ["n1", "n1", "n2"], "article_id": [a, "zz9", "zz9"]})
    with pytest.raises(KeyError, match="'zz9'.*unknown='ignore'"):
        model.fold_in(new, "customer_id", "article_id")
    out = model.fold_in(new, "customer_id", "article_id", unknown="ignore", format="numpy")
    assert out["user_id"].tolist() == ["n1", "n2"]
    # n2 is left with no known article: the exact solve of an empty history is 0.
    assert np.all(out["vector"][1] == 0) and np.any(out["vector"][0] != 0)
    np.testing.assert_array_equal(
        out["vector"][0], _vectors(model.fold_in(new.iloc[:1], "customer_id", "article_id"))[0]
    )


@pytest.mark.parametrize(
    ("items", "ratings", "error", "match"),
    [
        ([], None, ValueError, "items is empty"),
        ("a00", None, TypeError, "sequence of article labels"),
        ("SELF", [1.0, np.nan], ValueError, "NaN"),
        ("SELF", [1.0, -2.0], ValueError, "negative"),
        ("SELF", [1.0], ValueError, "1 value.*2 item"),
        ("SELF", [[1.0, 2.0]], TypeError, "1-d"),
        ("SELF", ["x", "y"], TypeError, "numbers"),
        ("SELF", [0.0, 0.0], ValueError, "amount > 0"),
    ],
)
def test_bad_baskets_are_clear_errors(small_purchases, items, ratings, error, match):
    model = _fit(small_purchases)
    if items == "SELF":
        items = model.item_labels[:2].tolist()
    with pytest.raises(error, match=match):
        model.recommend_basket(items, ratings)


def test_bad_arguments_and_unfitted_model(small_purchases):
    with pytest.raises(rusket.NotFittedError):
        rusket.ALS().recommend_basket(["a"])
    with pytest.raises(rusket.NotFittedError):
        rusket.ALS().fold_in(small_purchases, "customer_id", "article_id")
    model = _fit(small_purchases)
    a = model.item_labels[0]
    with pytest.raises(ValueError, match="n must be >= 1"):
        model.recommend_basket([a], n=0)
    with pytest.raises(TypeError, match="exclude_seen"):
        model.recommend_basket([a], exclude_seen="no")
    with pytest.raises(KeyError, match="not in the data"):
        model.fold_in(small_purchases, "customer", "article_id")
    bad = small_purchases.assign(sales_amount=-small_purchases.sales_amount)
    with pytest.raises(ValueError, match="negative"):
        model.fold_in(bad, "customer_id", "article_id", "sales_amount")
    with pytest.raises(ValueError, match="format"):
        model.fold_in(small_purchases, "customer_id", "article_id", format="csv")


def test_inputs_and_model_are_left_unchanged(small_purchases):
    model = _fit(small_purchases)
    state = model._fitted_state()
    frame = small_purchases.copy(deep=True)
    items = np.array(model.item_labels[:3], dtype=object)
    amounts = np.array([1.0, 2.0, 3.0])
    items_before, amounts_before = items.copy(), amounts.copy()
    model.recommend_basket(items, amounts)
    model.fold_in(small_purchases, "customer_id", "article_id", "sales_amount")
    pd.testing.assert_frame_equal(small_purchases, frame)
    np.testing.assert_array_equal(items, items_before)
    np.testing.assert_array_equal(amounts, amounts_before)
    assert model._fitted_state() is state


@pytest.mark.parametrize("kind", ["polars", "polars-lazy", "arrow"])
def test_fold_in_reads_every_frame_and_writes_every_format(small_purchases, kind):
    model = _fit(small_purchases)
    expected = model.fold_in(small_purchases, "customer_id", "article_id", "sales_amount")
    data = {
        "polars": lambda: pl.from_pandas(small_purchases),
        "polars-lazy": lambda: pl.from_pandas(small_purchases).lazy(),
        "arrow": lambda: pa.Table.from_pandas(small_purchases),
    }[kind]()
    for fmt in ("polars", "arrow", "numpy"):
        out = model.fold_in(data, "customer_id", "article_id", "sales_amount", format=fmt)
        if fmt == "numpy":
            labels, vectors = out["user_id"], out["vector"]
        else:
            table = out if fmt == "arrow" else out.to_arrow()
            labels = np.asarray(table["user_id"].to_pylist(), dtype=object)
            vectors = np.asarray(table["vector"].to_pylist(), dtype=np.float32)
        assert labels.tolist() == expected["user_id"].tolist()
        np.testing.assert_array_equal(vectors, _vectors(expected))


def test_fold_in_from_spark(spark, small_purchases):
    model = _fit(small_purchases)
    expected = model.fold_in(small_purchases, "customer_id", "article_id", "sales_amount")
    sdf = spark.createDataFrame(small_purchases)
    out = model.fold_in(sdf, "customer_id", "article_id", "sales_amount", format="spark")
    rows = sorted(out.collect(), key=lambda r: r["user_id"])
    assert [r["user_id"] for r in rows] == expected["user_id"].tolist()
    np.testing.assert_array_equal(
        np.asarray([r["vector"] for r in rows], dtype=np.float32), _vectors(expected)
    )


def test_one_item_and_one_customer_models():
    one_item = pd.DataFrame({"c": [1, 2, 3], "a": [7, 7, 7], "r": [1.0, 2.0, 5.0]})
    model = rusket.ALS(factors=3, iterations=3, solver="cholesky").from_transactions(
        one_item, "c", "a", "r"
    )
    labels, scores = model.recommend_basket([7], [2.0], exclude_seen=False)
    assert labels.tolist() == [7] and scores[0] > 0
    assert model.recommend_basket([7])[0].size == 0
    one_user = pd.DataFrame({"c": [1, 1, 1], "a": [3, 4, 5]})
    model = rusket.ALS(factors=2, iterations=3, solver="cholesky").from_transactions(
        one_user, "c", "a"
    )
    vec = model.fold_in(one_user, "c", "a", format="numpy")["vector"]
    seen = model._fitted_state().seen
    lam_u, _ = reference.row_penalties(seen, "auto", model.regularization_exponent)
    ref = reference.als_half_step(seen, model.item_factors, lam_u)
    np.testing.assert_allclose(vec, ref, rtol=1e-5, atol=1e-7)


def test_saved_pickled_and_fit_on_a_matrix_models_fold_in_alike(tmp_path, small_purchases):
    model = _fit(small_purchases)
    items, amounts = _basket(small_purchases, model.user_labels[0])
    before = model.recommend_basket(items, amounts)  # fills the state's cache first
    clone = pickle.loads(pickle.dumps(model))
    model.save(tmp_path / "m.npz")
    loaded = rusket.ALS.load(tmp_path / "m.npz")  # no regularization_: "auto" re-evaluated
    for other in (clone, loaded):
        got = other.recommend_basket(items, amounts)
        assert got[0].tolist() == before[0].tolist()
        np.testing.assert_array_equal(got[1], before[1])
    # fit(X, labels) keeps the caller's (unsorted) label order; lookups still work.
    X = sp.csr_matrix(np.array([[1.0, 0, 2.0], [0, 3.0, 0], [1.0, 1.0, 0]]))
    m = rusket.ALS(factors=2, iterations=3, solver="cholesky").fit(X, item_labels=["z", "a", "m"])
    labels, _ = m.recommend_basket(["a"], n=3)
    assert sorted(labels.tolist()) == ["m", "z"]


def test_concurrent_calls_give_the_sequential_answers(small_purchases):
    """Threads share one fitted state and its lazily built cache (Y^T Y, the whitened items):
    concurrent calls, the first ones building the cache, answer like sequential calls."""
    from concurrent.futures import ThreadPoolExecutor

    baskets = [_basket(small_purchases, c) for c in _fit(small_purchases).user_labels[:24]]
    expected = [_fit(small_purchases).recommend_basket(i, r, n=5) for i, r in baskets]
    model = _fit(small_purchases)  # a fresh state: the threads race to build the cache
    with ThreadPoolExecutor(max_workers=6) as pool:
        got = list(pool.map(lambda b: model.recommend_basket(b[0], b[1], n=5), baskets * 3))
    for k, (labels, scores) in enumerate(got):
        assert labels.tolist() == expected[k % len(baskets)][0].tolist()
        np.testing.assert_array_equal(scores, expected[k % len(baskets)][1])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_items=st.integers(1, 12),
    factors=st.integers(1, 6),
    seed=st.integers(0, 10_000),
    basket=st.lists(st.tuples(st.integers(0, 11), st.floats(0.0, 50.0)), min_size=1, max_size=15),
)
def test_any_basket_gets_the_dense_reference_vector(n_items, factors, seed, basket):
    """Random small models (one item, more factors than items, ranks of 1) and random baskets
    (repeats, zero amounts): the folded-in vector is the dense numpy solve of the summed,
    transformed basket."""
    dense = sp.random(8, n_items, density=0.5, random_state=seed).toarray() * 10
    dense[0, 0] = 1.0  # at least one interaction
    X = sp.csr_matrix(dense)
    model = rusket.ALS(factors=factors, iterations=2, solver="cholesky", seed=seed).fit(X)
    items = [i % n_items for i, _ in basket]
    amounts = [a for _, a in basket]
    summed = np.zeros(n_items)
    np.add.at(summed, items, amounts)
    if not (summed > 0).any():
        with pytest.raises(ValueError, match="amount > 0"):
            model.recommend_basket(items, amounts)
        return
    conf = sp.csr_matrix(
        np.where(summed > 0, 1.0 + 40.0 * np.log1p(summed), 0.0).astype(np.float32)[None]
    )
    # The basket's penalty follows its number of distinct articles, like a training row's.
    lam = model.regularization_ * np.count_nonzero(summed > 0) ** model.regularization_exponent
    ref = reference.als_half_step(conf, model.item_factors, lam)[0]
    frame = pd.DataFrame({"c": 0, "a": items, "r": amounts})
    got = model.fold_in(frame, "c", "a", "r", format="numpy")["vector"][0]
    np.testing.assert_allclose(got, ref, atol=1e-5 * max(np.abs(ref).max(), 1e-3), rtol=0)
    labels, scores = model.recommend_basket(items, amounts, n=n_items, exclude_seen=False)
    assert len(labels) == n_items
    np.testing.assert_allclose(
        np.sort(scores)[::-1], np.sort(model.item_factors @ got)[::-1], rtol=1e-5, atol=1e-6
    )


def test_business_filters_against_brute_force(small_purchases):
    model = _fit(small_purchases)
    state = model._fitted_state()
    vectors = _vectors(model.fold_in(small_purchases, "customer_id", "article_id", "sales_amount"))
    rng = np.random.default_rng(0)
    labels_all = state.item_labels
    for k in range(10):
        customer = state.user_labels[k]
        items, amounts = _basket(small_purchases, customer)
        in_stock = rng.choice(labels_all, size=25, replace=False).tolist()
        forbidden = rng.choice(labels_all, size=8, replace=False).tolist()
        for cand, excl in ((in_stock, None), (None, forbidden), (in_stock, forbidden)):
            got, scores = model.recommend_basket(
                items, amounts, n=6, candidates=cand, exclude_items=excl
            )
            allowed = set(labels_all.tolist()) if cand is None else set(cand)
            allowed -= set(excl or []) | set(items)
            cols = [j for j, lab in enumerate(labels_all.tolist()) if lab in allowed]
            s = state.item_factors[cols] @ vectors[k]
            best = [labels_all[cols[j]] for j in np.argsort(-s, kind="stable")[:6]]
            assert got.tolist() == best
            assert len(got) == min(6, len(cols))
            np.testing.assert_allclose(scores, np.sort(s)[::-1][:6], rtol=1e-5, atol=1e-6)
    a = labels_all[0]
    assert model.recommend_basket([a], candidates=[])[0].size == 0
    assert model.recommend_basket([a], candidates=[a])[0].size == 0  # bought: excluded
    assert model.recommend_basket([a], candidates=[a], exclude_seen=False)[0].tolist() == [a]
    with pytest.raises(KeyError, match="candidates.*'nope'"):
        model.recommend_basket([a], candidates=["nope"])
    with pytest.raises(KeyError, match="exclude_items.*'nope'"):
        model.recommend_basket([a], exclude_items=["nope"])
