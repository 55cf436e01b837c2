"""Why this article? ALS.explain (issue 9, item 4)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

import rusket
from tests import reference


def _reference(model: rusket.ALS, user, item) -> tuple[float, dict, np.ndarray]:
    """Slow and obvious: A_u = Y^T C_u Y + lambda I with a dense C_u, its inverse, and
    c_uj * y_i^T A_u^-1 y_j for every past article j; also the exactly solved x_u."""
    state = model._fitted_state()
    u = state.user_index().rows(user)[0]
    i = state.item_index().rows(item)[0]
    y = state.item_factors.astype(np.float64)
    c = np.ones(len(y))
    row = state.seen[u]
    c[row.indices] = row.data
    lam_u, _ = reference.row_penalties(
        state.seen, model.regularization, model.regularization_exponent
    )
    a = y.T @ (c[:, None] * y) + lam_u[u] * np.eye(y.shape[1])
    inv = np.linalg.inv(a)
    parts = {state.item_labels[j]: c[j] * y[i] @ inv @ y[j] for j in row.indices}
    x = inv @ (y[row.indices].T @ c[row.indices])
    return float(y[i] @ x), parts, x


@pytest.fixture
def model(small_purchases) -> rusket.ALS:
    return rusket.ALS(factors=6, iterations=5).from_transactions(
        small_purchases, "customer_id", "article_id", "sales_amount"
    )


def test_contributions_sum_to_the_score_and_match_the_reference(model):
    for user in model.user_labels[:15]:
        for item in model.item_labels[::7]:
            score, labels, parts = model.explain(user, item, n=1000)
            ref_score, ref_parts, _ = _reference(model, user, item)
            assert parts.dtype == np.float64
            assert score == pytest.approx(float(np.sum(parts)), rel=1e-12, abs=1e-12)
            assert score == pytest.approx(ref_score, rel=1e-6, abs=1e-8)
            assert sorted(labels.tolist()) == sorted(ref_parts)
            np.testing.assert_allclose(
                parts, [ref_parts[k] for k in labels.tolist()], rtol=1e-6, atol=1e-9
            )
            assert np.all(np.diff(parts) <= 0)  # largest first


def test_the_score_is_that_of_the_folded_in_vector(model, small_purchases):
    user = model.user_labels[4]
    vec = model.fold_in(
        small_purchases[small_purchases.customer_id == user],
        "customer_id",
        "article_id",
        "sales_amount",
        format="numpy",
    )["vector"][0]
    items = model.item_labels[:20]
    scores = [model.explain(user, item)[0] for item in items]
    y = model.item_factors[model._fitted_state().item_index().rows(items)]
    np.testing.assert_allclose(scores, y @ vec, rtol=1e-5, atol=1e-6)
    # ... and that vector is the dense reference's exactly solved x_u.
    _, _, x = _reference(model, user, items[0])
    np.testing.assert_allclose(vec, x, rtol=1e-5, atol=1e-6)


def test_n_keeps_the_largest_contributions(model):
    user = max(
        model.user_labels,
        key=lambda u: model._fitted_state().seen[model._fitted_state().user_index().rows(u)[0]].nnz,
    )
    item = model.item_labels[0]
    score, labels, parts = model.explain(user, item, n=1000)
    assert len(labels) > 3
    s3, l3, p3 = model.explain(user, item, n=3)
    assert s3 == score
    assert l3.tolist() == labels[:3].tolist()
    np.testing.assert_array_equal(p3, parts[:3])


def test_one_article_customers_and_empty_histories():
    # Customer 2's only amount is 0: the user exists with an empty history (score 0).
    X = sp.csr_matrix(np.array([[2.0, 0.0, 1.0], [0.0, 0.0, 0.0], [0.0, 3.0, 0.0]]))
    model = rusket.ALS(factors=2, iterations=3, solver="cholesky").fit(
        X, user_labels=["a", "b", "c"], item_labels=[10, 20, 30]
    )
    score, labels, parts = model.explain("b", 10)
    assert score == 0.0 and labels.size == 0 and parts.size == 0
    score, labels, parts = model.explain("c", 20)
    assert labels.tolist() == [20] and parts[0] == pytest.approx(score)
    ref_score, _, _ = _reference(model, "c", 20)
    assert score == pytest.approx(ref_score, rel=1e-6)


def test_bad_arguments(model):
    u, i = model.user_labels[0], model.item_labels[0]
    with pytest.raises(KeyError, match="unknown user"):
        model.explain("nobody", i)
    with pytest.raises(KeyError, match="unknown item"):
        model.explain(u, "nothing")
    with pytest.raises(TypeError, match="one user label"):
        model.explain([u], i)
    with pytest.raises(TypeError, match="one item label"):
        model.explain(u, [i, i])
    with pytest.raises(ValueError, match="n must be >= 1"):
        model.explain(u, i, n=0)
    with pytest.raises(rusket.NotFittedError):
        rusket.ALS().explain(u, i)


def test_explain_after_partial_fit_sees_the_new_lines(model):
    user, item = model.user_labels[0], model.item_labels[0]
    new = pd.DataFrame({"c": [user], "a": ["brand_new"], "r": [5.0]})
    model.partial_fit(new, "c", "a", "r")
    _, labels, _ = model.explain(user, item, n=1000)
    assert "brand_new" in labels.tolist()


def test_fold_in_recommend_basket_and_explain_agree_with_implicit(small_purchases):
    """The peer's exact user step (implicit 0.7 ``recalculate_user`` / ``explain`` with
    ``use_cg=False``), given rusket's item factors, confidences and penalty, gives the same
    vector, ranking, score and contributions."""
    pytest.importorskip("implicit")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # implicit's BLAS-threads advice
        from implicit.cpu.als import AlternatingLeastSquares

        # implicit has one penalty for every row: rusket's regularization_exponent=0.
        model = rusket.ALS(
            factors=6, iterations=4, solver="cholesky", regularization_exponent=0.0
        ).from_transactions(small_purchases, "customer_id", "article_id", "sales_amount")
        state = model._fitted_state()
        peer = AlternatingLeastSquares(
            factors=6, regularization=model.regularization_, use_cg=False, random_state=0
        )
        peer.item_factors = state.item_factors.copy()
        peer.user_factors = state.user_factors[:1].copy()
        for u in (0, 7, 21):
            user = state.user_labels[u]
            row = sp.csr_matrix(state.seen[u])
            lines = small_purchases[small_purchases.customer_id == user]
            ours = model.fold_in(
                lines, "customer_id", "article_id", "sales_amount", format="numpy"
            )["vector"][0]
            theirs = peer.recalculate_user(0, row)
            np.testing.assert_allclose(ours, theirs, atol=1e-5 * np.abs(theirs).max())
            ids, _ = peer.recommend(0, row, N=5, recalculate_user=True)
            labels, _ = model.recommend_basket(
                lines.article_id.tolist(), lines.sales_amount.tolist(), n=5
            )
            assert labels.tolist() == state.item_labels[ids].tolist()
            item = state.item_labels[3]
            score, parts, _ = peer.explain(0, row, 3, N=4)
            s, got_labels, got = model.explain(user, item, n=4)
            assert s == pytest.approx(score, rel=1e-5)
            assert got_labels.tolist() == [state.item_labels[j] for j, _ in parts]
            np.testing.assert_allclose(got, [c for _, c in parts], rtol=1e-5)
