"""Incremental updates: ALS.partial_fit (issue 9, item 3)."""

from __future__ import annotations

import itertools
import pickle

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import scipy.sparse as sp

import rusket
from rusket.datasets import make_purchases
from tests import reference

COLS = ("customer_id", "article_id", "sales_amount")


def _als(**params) -> rusket.ALS:
    return rusket.ALS(**{"factors": 8, "iterations": 6, "solver": "cholesky", **params})


def _log(r, alpha=40.0, eps=1.0):
    return np.float32(1.0 + alpha * np.log1p(r / eps))


@pytest.fixture
def log() -> pd.DataFrame:
    """A small make_purchases log sorted by time (string article labels)."""
    df = make_purchases(400, 120, 5000, seed=3, article_labels="str")
    return df.sort_values("order_date", kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_partial_fit_on_an_unfitted_model_is_fit(small_purchases, solver):
    fitted = _als(solver=solver).from_transactions(small_purchases, *COLS)
    grown = _als(solver=solver).partial_fit(small_purchases, *COLS)
    assert grown.user_labels.tolist() == fitted.user_labels.tolist()
    assert grown.item_labels.tolist() == fitted.item_labels.tolist()
    np.testing.assert_array_equal(grown.user_factors, fitted.user_factors)
    np.testing.assert_array_equal(grown.item_factors, fitted.item_factors)
    assert (grown._fitted_state().seen != fitted._fitted_state().seen).nnz == 0
    assert grown.regularization_ == fitted.regularization_
    # sweeps=k on an unfitted model is fit with iterations=k.
    two = _als(solver=solver).partial_fit(small_purchases, *COLS, sweeps=2)
    ref = _als(solver=solver, iterations=2).from_transactions(small_purchases, *COLS)
    np.testing.assert_array_equal(two.item_factors, ref.item_factors)


def test_lines_are_summed_with_the_history_and_untouched_rows_stay(small_purchases):
    model = _als().from_transactions(small_purchases, *COLS)
    before = model._fitted_state()
    u, a = before.user_labels[0], before.item_labels[before.seen.indices[0]]
    r_old = small_purchases[
        (small_purchases.customer_id == u) & (small_purchases.article_id == a)
    ].sales_amount.sum()
    new = pd.DataFrame(
        {
            "customer_id": [u, u, "zz_new"],
            "article_id": [a, a, "a00"],
            "sales_amount": [2.0, 3.0, 7.0],
        }
    )
    model.partial_fit(new, *COLS)
    after = model._fitted_state()
    assert after is not before  # a new fitted state: every cache starts empty
    assert after.user_labels.tolist() == [*before.user_labels.tolist(), "zz_new"]
    assert after.item_labels.tolist() == before.item_labels.tolist()
    row = after.user_index().rows(u)[0]
    col = after.item_index().rows(a)[0]
    np.testing.assert_allclose(after.seen[row, col], _log(r_old + 5.0), rtol=1e-6)
    # Every pair the lines do not touch keeps its stored confidence bit for bit.
    diff = after.seen[: before.seen.shape[0]] - before.seen
    assert set(zip(*diff.nonzero())) <= {(row, col)}
    # Untouched customers and articles keep their vectors; touched ones moved.
    touched_u = after.user_index().rows([u, "zz_new"])
    keep_u = np.setdiff1d(np.arange(len(before.user_labels)), touched_u)
    np.testing.assert_array_equal(after.user_factors[keep_u], before.user_factors[keep_u])
    keep_i = np.setdiff1d(np.arange(len(before.item_labels)), after.item_index().rows([a, "a00"]))
    np.testing.assert_array_equal(after.item_factors[keep_i], before.item_factors[keep_i])
    assert not np.array_equal(after.user_factors[row], before.user_factors[row])
    # regularization="auto" follows the merged history, as training_loss reads it.
    lam_u, _ = reference.row_penalties(after.seen, "auto", model.regularization_exponent)
    n_u = np.diff(after.seen.indptr)
    nu = model.regularization_exponent
    np.testing.assert_allclose(lam_u, model.regularization_ * np.maximum(n_u, 1) ** nu, rtol=1e-6)


def test_touched_articles_are_solved_exactly_against_the_final_customers(log):
    half = len(log) // 2
    model = _als(alpha=1.0).from_transactions(log.iloc[:half], *COLS)
    model.partial_fit(log.iloc[half:], *COLS)
    state = model._fitted_state()
    touched = state.item_index().rows(np.unique(log.iloc[half:].article_id))
    conf_i = state.seen.T.tocsr()[touched]
    conf_i.sort_indices()
    _, lam_i = reference.row_penalties(state.seen, "auto", model.regularization_exponent)
    ref = reference.als_half_step(conf_i, state.user_factors, lam_i[touched])
    np.testing.assert_allclose(
        state.item_factors[touched], ref, atol=1e-5 * np.abs(ref).max(), rtol=0
    )


def test_more_sweeps_never_raise_the_loss_and_approach_a_refit(log):
    """Exact solves of blocks of rows can only lower the loss; after half the log was fitted,
    partial_fit of the other half ends within 2% of a full refit's loss (measured: 0.1-0.6%)."""
    half = len(log) // 2
    refit = _als().from_transactions(log, *COLS)
    losses = []
    for sweeps in (1, 2, 4, 8):
        model = _als().from_transactions(log.iloc[:half], *COLS)
        model.partial_fit(log.iloc[half:], *COLS, sweeps=sweeps)
        losses.append(model.training_loss())
    assert all(b <= a * (1 + 1e-6) for a, b in itertools.pairwise(losses))
    assert losses[-1] / refit.training_loss() < 1.02
    assert losses[0] / refit.training_loss() < 1.05


def test_seen_items_include_the_new_lines_and_new_rows_serve(small_purchases):
    model = _als().from_transactions(small_purchases, *COLS)
    model.recommend_items(model.user_labels[0])  # fills the old state's caches
    u = model.user_labels[0]
    top = model.recommend_items(u, n=3)[0][0]
    model.partial_fit(
        pd.DataFrame({"customer_id": [u, "zz"], "article_id": [top, "new_article"]}),
        "customer_id",
        "article_id",
    )
    assert top not in model.recommend_items(u, n=50)[0].tolist()
    assert "new_article" not in model.recommend_items("zz", n=50)[0].tolist()
    assert "new_article" in model.item_labels.tolist()
    assert model.similar_items("new_article", n=3)[0].size == 3
    # Fold-in after partial_fit uses the new item factors (the cached Y^T Y was rebuilt).
    state = model._fitted_state()
    vec = model.fold_in(
        pd.DataFrame({"c": ["q", "q"], "a": ["new_article", top]}), "c", "a", format="numpy"
    )["vector"]
    cols = np.sort(state.item_index().rows(["new_article", top]))
    conf = sp.csr_matrix((np.full(2, _log(1.0)), cols, [0, 2]), shape=(1, len(state.item_labels)))
    lam = model.regularization_ * 2**model.regularization_exponent  # two articles
    ref = reference.als_half_step(conf, state.item_factors, lam)
    np.testing.assert_allclose(vec, ref, atol=1e-5 * np.abs(ref).max(), rtol=0)


def test_model_stays_picklable_and_savable(tmp_path, small_purchases):
    model = _als().from_transactions(small_purchases.iloc[:200], *COLS)
    model.partial_fit(small_purchases.iloc[200:], *COLS)
    expected = model.batch_recommend(n=5, format="numpy")
    clone = pickle.loads(pickle.dumps(model))
    model.save(tmp_path / "m.npz")
    loaded = rusket.ALS.load(tmp_path / "m.npz")
    for other in (clone, loaded):
        got = other.batch_recommend(n=5, format="numpy")
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
    # The clone keeps growing on its own.
    clone.partial_fit(small_purchases.iloc[:10], *COLS)
    assert model.training_loss() != clone.training_loss()


def test_bad_input_is_a_clear_error_and_leaves_the_model(small_purchases):
    model = _als().from_transactions(small_purchases, *COLS)
    state = model._fitted_state()
    frame = small_purchases.copy(deep=True)
    bad = small_purchases.assign(sales_amount=-1.0)
    with pytest.raises(ValueError, match="negative"):
        model.partial_fit(bad, *COLS)
    with pytest.raises(ValueError, match="NaN"):
        model.partial_fit(small_purchases.assign(sales_amount=np.nan), *COLS)
    ints = pd.DataFrame({"customer_id": [1], "article_id": ["a00"]})
    with pytest.raises(TypeError, match="customer labels are strings.*integers"):
        model.partial_fit(ints, "customer_id", "article_id")
    with pytest.raises(KeyError, match="not in the data"):
        model.partial_fit(small_purchases, "customer", "article_id")
    with pytest.raises(ValueError, match="sweeps must be >= 1"):
        model.partial_fit(small_purchases, *COLS, sweeps=0)
    model.set_params(factors=5)
    with pytest.raises(ValueError, match="fitted with 8 factors"):
        model.partial_fit(small_purchases, *COLS)
    model.set_params(factors=8)
    assert model._fitted_state() is state
    pd.testing.assert_frame_equal(small_purchases, frame)
    model.partial_fit(small_purchases, *COLS)
    pd.testing.assert_frame_equal(small_purchases, frame)


def test_arrow_and_spark_lines_give_the_pandas_result(spark, small_purchases):
    base, more = small_purchases.iloc[:300], small_purchases.iloc[300:]
    expected = _als().from_transactions(base, *COLS).partial_fit(more, *COLS)
    for data in (pa.Table.from_pandas(more), spark.createDataFrame(more)):
        got = _als().from_transactions(base, *COLS).partial_fit(data, *COLS)
        assert got.user_labels.tolist() == expected.user_labels.tolist()
        np.testing.assert_array_equal(got.user_factors, expected.user_factors)
        np.testing.assert_array_equal(got.item_factors, expected.item_factors)


def test_readers_see_the_old_or_the_new_model_never_a_mix(small_purchases):
    from concurrent.futures import ThreadPoolExecutor

    base, more = small_purchases.iloc[:300], small_purchases.iloc[300:]
    user = base.customer_id.iloc[0]
    old = _als().from_transactions(base, *COLS)
    new = _als().from_transactions(base, *COLS).partial_fit(more, *COLS)
    answers = {tuple(m.recommend_items(user, n=5)[0].tolist()) for m in (old, new)}
    assert len(answers) == 2  # the update changes this customer's list
    model = _als().from_transactions(base, *COLS)
    with ThreadPoolExecutor(max_workers=4) as pool:
        reads = [pool.submit(model.recommend_items, user, 5) for _ in range(200)]
        model.partial_fit(more, *COLS)
        reads += [pool.submit(model.recommend_items, user, 5) for _ in range(50)]
        seen = {tuple(r.result()[0].tolist()) for r in reads}
    assert seen <= answers
    assert tuple(model.recommend_items(user, n=5)[0].tolist()) in answers - {
        tuple(old.recommend_items(user, n=5)[0].tolist())
    }


def test_serving_caches_follow_the_update(small_purchases):
    """Every cached scoring structure (prepared top-k index, seen items, label lookups, fold-in
    systems) belongs to one fitted state: after partial_fit the answers are those of the new
    factors, new articles included, checked by brute force."""
    model = _als().from_transactions(small_purchases, *COLS)
    users = model.user_labels[:5].tolist()
    for u in users:  # fill every cache of the old state
        model.recommend_items(u, n=5)
    model.similar_items(model.item_labels[0], n=3)
    model.recommend_basket(model.item_labels[:2].tolist())
    new = pd.DataFrame(
        {"customer_id": [*users, "zz"], "article_id": ["fresh"] * 5 + ["a00"], "r": 1.0}
    )
    model.partial_fit(new, "customer_id", "article_id", "r")
    state = model._fitted_state()
    n_items = len(state.item_labels)
    for u in [*users, "zz"]:
        row = state.user_index().rows(u)[0]
        s = state.item_factors @ state.user_factors[row]
        bought = set(state.seen[row].indices.tolist())
        order = [j for j in np.argsort(-s, kind="stable") if j not in bought]
        got, _ = model.recommend_items(u, n=n_items)
        assert got.tolist() == state.item_labels[order].tolist()
        assert "fresh" not in got.tolist() or u == "zz"
    unit = state.item_factors / np.linalg.norm(state.item_factors, axis=1, keepdims=True)
    sims = unit @ unit[state.item_index().rows("fresh")[0]]
    sims[state.item_index().rows("fresh")[0]] = -np.inf
    assert model.similar_items("fresh", n=1)[0][0] == state.item_labels[np.argmax(sims)]
