"""Serving one customer at a time (issue 9): business filters, similar_users, the prepared
top-k index cached on the fitted state, and concurrent calls."""

from __future__ import annotations

import dataclasses
import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import pytest

import rusket
from rusket import _core
from rusket._model import _item_filter


def _purchases(seed: int = 3, n: int = 1500, users: int = 60, items: int = 70) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": rng.integers(0, users, n),
            "article_id": [f"sku-{i:03d}" for i in rng.integers(0, items, n)],
            "sales_amount": rng.exponential(30, n),
        }
    )


@pytest.fixture(scope="module")
def model() -> rusket.ALS:
    return rusket.ALS(factors=8, iterations=4, num_threads=1).from_transactions(
        _purchases(), "customer_id", "article_id", "sales_amount"
    )


@pytest.fixture(scope="module")
def tied(model: rusket.ALS) -> rusket.ALS:
    """The same model with small integer factors: float32 sums are exact and many scores tie
    exactly, so the answers can be compared with a brute force bit for bit."""
    rng = np.random.default_rng(0)
    clone = rusket.ALS(**model.get_params())
    items = rng.integers(-2, 3, model.item_factors.shape).astype(np.float32)
    items[5] = items[6]  # two identical items tie for every user
    clone._state = dataclasses.replace(
        model._fitted_state(),
        user_factors=rng.integers(-2, 3, model.user_factors.shape).astype(np.float32),
        item_factors=items,
    )
    return clone


def _brute(model, user, n, exclude_seen=True, candidates=None, exclude_items=None):
    """numpy reference: every allowed item's float64 score, best first, ties in item order."""
    state = model._fitted_state()
    labels = list(state.item_labels)
    row = list(state.user_labels).index(user)
    allowed = np.ones(len(labels), bool)
    if candidates is not None:
        allowed[:] = False
        allowed[[labels.index(c) for c in candidates]] = True
    if exclude_items is not None:
        allowed[[labels.index(c) for c in exclude_items]] = False
    if exclude_seen:
        allowed[state.seen[row].indices] = False
    scores = state.item_factors.astype(np.float64) @ state.user_factors[row].astype(np.float64)
    cols = np.flatnonzero(allowed)
    order = cols[np.lexsort((cols, -scores[cols]))][:n]
    return state.item_labels[order], scores[order]


FILTERS = [
    (None, None),
    ([], None),  # nothing allowed
    (["sku-005"], None),  # one article
    ([f"sku-{i:03d}" for i in range(0, 70, 9)], None),  # few: scored as a gathered subset
    ([f"sku-{i:03d}" for i in range(70) if i % 7], None),  # most: scored with a mask
    (None, ["sku-005", "sku-006", "sku-010"]),  # the two tied items among them
    ([f"sku-{i:03d}" for i in range(20)], [f"sku-{i:03d}" for i in range(10)]),
    (None, [f"sku-{i:03d}" for i in range(70)]),  # everything excluded
]


@pytest.mark.parametrize(("candidates", "exclude_items"), FILTERS)
@pytest.mark.parametrize("exclude_seen", [True, False])
def test_filters_match_brute_force_with_ties(tied, candidates, exclude_items, exclude_seen):
    present = set(tied.item_labels.tolist())
    candidates = None if candidates is None else [c for c in candidates if c in present]
    exclude_items = None if exclude_items is None else [c for c in exclude_items if c in present]
    for n in (1, 5, 100):
        rows = []
        for user in tied.user_labels[:25]:
            got, scores = tied.recommend_items(
                user, n=n, exclude_seen=exclude_seen, candidates=candidates,
                exclude_items=exclude_items,
            )  # fmt: skip
            want, want_scores = _brute(tied, user, n, exclude_seen, candidates, exclude_items)
            assert got.tolist() == want.tolist()
            np.testing.assert_array_equal(scores, want_scores.astype(np.float32))
            if candidates is not None:
                assert set(got.tolist()) <= set(candidates)
            if exclude_items:
                assert not set(got.tolist()) & set(exclude_items)
            rows.append(got.tolist())
        # batch_recommend gives every user the same list as recommend_items.
        labels, _ = tied.batch_recommend(
            n=n, exclude_seen=exclude_seen, users=tied.user_labels[:25], format="numpy",
            candidates=candidates, exclude_items=exclude_items,
        )  # fmt: skip
        assert labels.shape == (25, min(n, len(tied.item_labels)))
        for got, row in zip(labels, rows, strict=True):
            assert [x for x in got.tolist() if x is not None] == row
        frame = tied.batch_recommend(
            n=n, exclude_seen=exclude_seen, candidates=candidates, exclude_items=exclude_items
        )
        first = frame[frame.user_id == tied.user_labels[0]].sort_values("rank")
        assert first.item_id.tolist() == rows[0]


def test_filters_pad_like_exclusions(tied):
    nothing = tied.recommend_items(tied.user_labels[0], n=5, candidates=[])
    assert nothing[0].tolist() == [] and nothing[1].dtype == np.float32
    labels, scores = tied.batch_recommend(n=4, format="numpy", candidates=[])
    assert labels.shape == (len(tied.user_labels), 4)
    assert (labels == None).all() and np.isnan(scores).all()  # noqa: E711
    assert len(tied.batch_recommend(n=4, exclude_items=list(tied.item_labels))) == 0
    # Two allowed articles, n = 5: rows of width 5, two real entries, then padding.
    two = list(tied.item_labels[:2])
    labels, scores = tied.batch_recommend(n=5, exclude_seen=False, format="numpy", candidates=two)
    assert labels.shape[1] == 5
    assert all(sorted(r[:2].tolist()) == sorted(two) for r in labels)
    assert np.isnan(scores[:, 2:]).all() and np.isfinite(scores[:, :2]).all()


def test_unknown_users_get_the_popular_allowed_items(tied):
    allowed = list(tied.item_labels[10:30])
    recs = tied.batch_recommend(
        n=3, users=[-5], unknown="popular", candidates=allowed, exclude_items=allowed[:2]
    )
    state = tied._fitted_state()
    buyers = np.bincount(state.seen.indices, minlength=len(state.item_labels))
    cols = np.arange(10, 30)[2:]
    best = cols[np.lexsort((cols, -buyers[cols]))][:3]
    assert recs.item_id.tolist() == state.item_labels[best].tolist()


def test_filter_labels_are_checked(model):
    user = model.user_labels[0]
    with pytest.raises(KeyError, match=r"candidates.*'nope'.*'gone'"):
        model.recommend_items(user, candidates=["sku-001", "nope", "gone"])
    with pytest.raises(KeyError, match=r"exclude_items.*'nope'"):
        model.batch_recommend(exclude_items=["nope"])
    with pytest.raises(KeyError, match="exclude_items"):
        model.recommend_items(user, exclude_items=[3])  # an int for string labels
    with pytest.raises(KeyError, match="candidates"):
        model.recommend_items(user, candidates=[True])  # never a label
    # One label, a set, a Series and an array work; the caller's arrays are not modified.
    arr = np.array(["sku-001", "sku-002", "sku-003"], dtype=object)
    before = arr.copy()
    a = model.recommend_items(user, candidates=arr, exclude_seen=False)[0]
    b = model.recommend_items(user, candidates=set(arr), exclude_seen=False)[0]
    c = model.recommend_items(user, candidates=pd.Series(arr), exclude_seen=False)[0]
    assert a.tolist() == b.tolist() == c.tolist() and sorted(a.tolist()) == sorted(arr)
    np.testing.assert_array_equal(arr, before)
    one = model.recommend_items(user, candidates="sku-002", exclude_seen=False)[0]
    assert one.tolist() == ["sku-002"]


def test_item_filter_helper(model):
    state = model._fitted_state()
    assert _item_filter(state) is None
    mask = _item_filter(state, candidates=["sku-001", "sku-002"], exclude_items="sku-002")
    assert mask.dtype == bool and mask.shape == (len(state.item_labels),)
    assert state.item_labels[mask].tolist() == ["sku-001"]
    assert not _item_filter(state, candidates=[]).any()
    assert _item_filter(state, exclude_items=[]).all()


def test_similar_users_matches_numpy(model):
    state = model._fitted_state()
    U = state.user_factors.astype(np.float64)
    unit = U / np.linalg.norm(U, axis=1, keepdims=True)
    for row in range(0, len(state.user_labels), 7):
        got, sims = model.similar_users(state.user_labels[row], n=6)
        cos = unit @ unit[row]
        cos[row] = -np.inf  # the user itself is excluded
        order = np.argsort(-cos, kind="stable")[:6]
        assert state.user_labels[row] not in got.tolist()
        np.testing.assert_allclose(sims, cos[order], rtol=1e-5, atol=1e-6)
        # Same sets up to float32 near-ties at the boundary.
        assert len(set(got.tolist()) ^ set(state.user_labels[order].tolist())) <= 2
    with pytest.raises(KeyError):
        model.similar_users(-1)
    with pytest.raises(TypeError, match="one user"):
        model.similar_users([state.user_labels[0]])


def test_similar_users_ties_and_a_single_user():
    import scipy.sparse as sp

    X = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1], [1, 1, 0]], dtype=np.float32))
    als = rusket.ALS(factors=2, iterations=5, seed=1).fit(X, user_labels=["a", "b", "c", "d"])
    got, sims = als.similar_users("b", n=3)
    # a and d have the same vector as b (same rows): cosine 1, in label order, then c.
    assert got.tolist()[:2] == ["a", "d"]
    np.testing.assert_allclose(sims[:2], 1.0, rtol=1e-5)
    lone = rusket.ALS(factors=2, iterations=2).fit(sp.csr_matrix(np.ones((1, 3), np.float32)))
    assert lone.similar_users(0)[0].tolist() == []


def test_one_call_equals_its_batch_row_bit_for_bit(model):
    """Single calls go through the int8 screen, batches through the float32 kernel: the
    answers (labels and scores) must be identical."""
    labels, scores = model.batch_recommend(n=7, format="numpy")
    for k, user in enumerate(model.user_labels):
        got, s = model.recommend_items(user, n=7)
        assert got.tolist() == [x for x in labels[k].tolist() if x is not None]
        assert s.tobytes() == scores[k][: len(s)].tobytes()


def test_index_matches_the_plain_kernel():
    rng = np.random.default_rng(2)
    items = rng.standard_normal((3000, 24)).astype(np.float32)
    query = rng.standard_normal((9, 24)).astype(np.float32)
    index = _core.TopKIndex(items)
    assert (index.n_items, index.factors) == (3000, 24)
    allowed = rng.random(3000) < 0.3
    for m in (1, 2, 4, 9):
        for al in (None, allowed):
            a = index.topk(query[:m], 10, allowed=al)
            b = _core.topk(query[:m], items, 10, allowed=al)
            np.testing.assert_array_equal(a[0], b[0])
            assert a[1].tobytes() == b[1].tobytes()
            if al is not None:
                assert allowed[a[0]].all()
    with pytest.raises(ValueError, match="allowed has 5 entries"):
        index.topk(query[:1], 3, allowed=np.ones(5, bool))
    with pytest.raises(ValueError, match="factors"):
        index.topk(query[:1, :5].copy(), 3)
    with pytest.raises(ValueError, match="n must be"):
        index.topk(query[:1], 0)
    with pytest.raises(ValueError, match="non-finite"):
        _core.TopKIndex(np.array([[np.nan, 1.0]], np.float32))
    with pytest.raises(TypeError):
        pickle.dumps(index)


def test_concurrent_calls_equal_sequential(model):
    users = list(model.user_labels) * 3
    items = list(model.item_labels)
    cands = list(model.item_labels[::3])

    def calls(m: rusket.ALS, k: int):
        u, i = users[k], items[k % len(items)]
        return (
            m.recommend_items(u, n=5)[0].tolist(),
            m.recommend_items(u, n=5, candidates=cands, exclude_items=[i])[0].tolist(),
            m.similar_items(i, n=5)[0].tolist(),
            m.similar_users(u, n=5)[0].tolist(),
            m.batch_recommend(n=3, users=[u], format="numpy")[0].tolist(),
        )

    sequential = [calls(model, k) for k in range(len(users))]
    # A copy with empty caches: the threads also build the prepared indexes concurrently.
    fresh = rusket.ALS(**model.get_params())
    fresh._state = dataclasses.replace(model._fitted_state())
    assert fresh._fitted_state()._cache == {}
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(lambda k: calls(fresh, k), range(len(users))))
    assert concurrent == sequential


def test_caches_follow_refit_load_and_pickle(tmp_path):
    df = _purchases(seed=5)
    als = rusket.ALS(factors=6, iterations=3, seed=1).from_transactions(
        df, "customer_id", "article_id", "sales_amount"
    )
    user = als.user_labels[0]
    first = als.recommend_items(user, n=5)
    first_state = als._fitted_state()
    assert "topk_items" in first_state._cache  # the prepared index is kept on the state
    # Refit on other data: a new state, a new index, answers from the new factors.
    als.from_transactions(_purchases(seed=6), "customer_id", "article_id", "sales_amount")
    assert als._fitted_state() is not first_state
    assert "topk_items" not in als._fitted_state()._cache
    got = als.recommend_items(user, n=5)
    want = _brute(als, user, 5)
    assert set(got[0].tolist()) == set(want[0].tolist()) or np.allclose(got[1], want[1], rtol=1e-5)
    # Pickle and save/load carry no native index; the copy rebuilds it on first use.
    blob = pickle.dumps(als)
    copy = pickle.loads(blob)
    assert copy._fitted_state()._cache == {}
    assert copy.recommend_items(user, n=5)[0].tolist() == got[0].tolist()
    path = tmp_path / "m.npz"
    als.save(path)
    loaded = rusket.ALS.load(path)
    assert loaded._fitted_state()._cache == {}
    assert loaded.recommend_items(user, n=5)[0].tolist() == got[0].tolist()
    assert loaded.similar_users(user, n=3)[0].tolist() == als.similar_users(user, n=3)[0].tolist()
    assert first[0].tolist() != [] and len(first[0]) == 5


def test_popularity_serves_filters_too():
    pop = rusket.Popularity.from_transactions(_purchases(), "customer_id", "article_id")
    user = pop.user_labels[0]
    got = pop.recommend_items(user, n=3, exclude_items=pop.recommend_items(user, n=1)[0])
    assert len(got[0]) == 3
    assert pop.recommend_items(user, n=1)[0][0] not in got[0].tolist()
