"""The native exact top-n kernel ``rusket._core.topk`` against a slow numpy reference."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from rusket import _core

# --- reference ---------------------------------------------------------------------------------


def reference_topk(q, v, n, indptr=None, indices=None):
    """Slow numpy top-n: float64 scores, order (-score, index), excluded items removed, padded
    with -1 / NaN; ``min(n, n_items)`` columns, like the kernel."""
    m, n_items = q.shape[0], v.shape[0]
    n = min(n, n_items)
    scores = q.astype(np.float64) @ v.astype(np.float64).T
    out_i = np.full((m, n), -1, dtype=np.int64)
    out_s = np.full((m, n), np.nan)
    for u in range(m):
        keep = np.ones(n_items, dtype=bool)
        if indptr is not None:
            keep[indices[indptr[u] : indptr[u + 1]]] = False
        cand = np.flatnonzero(keep)
        order = cand[np.lexsort((cand, -scores[u, cand]))][:n]
        out_i[u, : len(order)] = order
        out_s[u, : len(order)] = scores[u, order]
    return out_i, out_s, scores


def assert_exact(q, v, n, indptr=None, indices=None, **kw):
    """For integer-valued factors every float32 sum is exact, so the answer is unique."""
    idx, sc = _core.topk(q, v, n, exclude_indptr=indptr, exclude_indices=indices, **kw)
    ri, rs, _ = reference_topk(q, v, n, indptr, indices)
    assert idx.dtype == np.int32 and sc.dtype == np.float32
    assert idx.shape == sc.shape == (q.shape[0], min(n, v.shape[0]))
    np.testing.assert_array_equal(idx, ri)
    np.testing.assert_array_equal(sc, rs.astype(np.float32))
    return idx, sc


def assert_close(q, v, n, indptr=None, indices=None, rtol=1e-4):
    """Real-valued factors: the float32 scores may differ from float64 in the last bits, so the
    top-n set must equal the reference's up to items whose scores tie within the tolerance."""
    idx, sc = _core.topk(q, v, n, exclude_indptr=indptr, exclude_indices=indices)
    ri, _, full = reference_topk(q, v, n, indptr, indices)
    tol = rtol * max(1.0, float(np.abs(full).max(initial=0.0)))
    for u in range(q.shape[0]):
        k = int((ri[u] >= 0).sum())
        assert (idx[u, k:] == -1).all() and np.isnan(sc[u, k:]).all()
        got = idx[u, :k]
        assert (got >= 0).all() and len(set(got.tolist())) == k
        if indptr is not None:
            assert not np.isin(got, indices[indptr[u] : indptr[u + 1]]).any()
        np.testing.assert_allclose(sc[u, :k], full[u, got], rtol=0, atol=tol)
        assert (np.diff(sc[u, :k]) <= 0).all()
        if k:
            # Everything left out scores no better than the worst kept item (up to ties).
            left_out = np.setdiff1d(ri[u, :k], got)
            assert (full[u, left_out] <= full[u, got].min() + tol).all()
            np.testing.assert_allclose(full[u, got], full[u, ri[u, :k]], rtol=0, atol=tol)
    return idx, sc


def random_csr(rng, m, n_items, max_per_row, *, shuffle=True, dupes=True):
    """Exclude rows with unsorted indices and duplicates (as the kernel must accept)."""
    counts = rng.integers(0, max_per_row + 1, m)
    indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    indices = rng.integers(0, max(n_items, 1), int(indptr[-1])).astype(np.int32)
    if not dupes:
        for u in range(m):
            a, b = indptr[u], indptr[u + 1]
            row = rng.permutation(n_items)[: b - a]
            indices[a:b] = row
    if not shuffle:
        for u in range(m):
            indices[indptr[u] : indptr[u + 1]].sort()
    return indptr, indices


def ints(rng, shape, lo=-3, hi=3):
    return rng.integers(lo, hi + 1, shape).astype(np.float32)


# --- exact answers (integer factors, many ties) -----------------------------------------------


@pytest.mark.parametrize(
    ("m", "n_items", "f", "n"),
    [(1, 1, 1, 1), (4, 10, 3, 3), (300, 700, 4, 20), (20, 50, 1, 60), (3, 2000, 2, 1500)],
)
def test_integer_factors_match_reference_exactly(m, n_items, f, n):
    rng = np.random.default_rng(m * 1000 + n_items)
    q, v = ints(rng, (m, f)), ints(rng, (n_items, f), -2, 2)
    assert_exact(q, v, n)
    indptr, indices = random_csr(rng, m, n_items, n_items // 2 + 1)
    assert_exact(q, v, n, indptr, indices)


def test_duplicated_item_rows_tie_by_lower_index():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((5, 8)).astype(np.float32)
    v = np.repeat(base, 4, axis=0)  # items 4k..4k+3 are identical
    q = rng.standard_normal((6, 8)).astype(np.float32)
    idx, sc = _core.topk(q, v, 10)
    for u in range(q.shape[0]):
        # Identical items have bit-identical scores, so within each group the indices ascend.
        for s in np.unique(sc[u]):
            grp = idx[u][sc[u] == s]
            assert (np.diff(grp) > 0).all()
    assert_close(q, v, 10)


def test_all_items_excluded_gives_padding():
    q = np.ones((3, 2), dtype=np.float32)
    v = np.arange(8, dtype=np.float32).reshape(4, 2)
    # row 0: everything (shuffled, duplicated); row 1: nothing; row 2: all but item 1
    indptr = np.array([0, 6, 6, 9], dtype=np.int64)
    indices = np.array([3, 1, 0, 2, 3, 1, 3, 0, 2], dtype=np.int32)
    idx, sc = assert_exact(q, v, 3, indptr, indices)
    assert (idx[0] == -1).all() and np.isnan(sc[0]).all()
    assert idx[1].tolist() == [3, 2, 1]
    assert idx[2].tolist() == [1, -1, -1]


def test_n_larger_than_unseen_items_pads_with_minus_one_and_nan():
    rng = np.random.default_rng(2)
    q, v = ints(rng, (7, 3)), ints(rng, (9, 3))
    indptr, indices = random_csr(rng, 7, 9, 6)
    idx, sc = assert_exact(q, v, 12, indptr, indices)
    assert idx.shape == (7, 9)  # n = 12 > 9 items: 9 columns
    unseen = 9 - np.array([len(set(indices[indptr[u] : indptr[u + 1]])) for u in range(7)])
    assert ((idx >= 0).sum(axis=1) == unseen).all()
    assert (np.isnan(sc) == (idx < 0)).all()


def test_unsorted_and_duplicate_excludes_equal_sorted_unique_ones():
    rng = np.random.default_rng(3)
    q = rng.standard_normal((40, 5)).astype(np.float32)
    v = rng.standard_normal((300, 5)).astype(np.float32)
    indptr, indices = random_csr(rng, 40, 300, 40)
    a = _core.topk(q, v, 15, exclude_indptr=indptr, exclude_indices=indices)
    clean = sp.csr_matrix((np.ones(len(indices)), indices, indptr), shape=(40, 300))
    clean.sum_duplicates()  # sorts and deduplicates each row
    b = _core.topk(
        q,
        v,
        15,
        exclude_indptr=clean.indptr.astype(np.int64),
        exclude_indices=clean.indices.astype(np.int32),
    )
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert_close(q, v, 15, indptr, indices)


def test_single_factor_and_single_user_and_item():
    q = np.array([[2.0], [-1.0], [0.0]], dtype=np.float32)
    v = np.array([[1.0], [3.0], [-2.0], [3.0]], dtype=np.float32)
    idx, sc = assert_exact(q, v, 2)
    assert idx.tolist() == [[1, 3], [2, 0], [0, 1]]
    assert sc.tolist() == [[6.0, 6.0], [2.0, -1.0], [0.0, 0.0]]
    # n = 3 but one item: one column.
    idx, sc = _core.topk(np.ones((1, 1), np.float32), np.ones((1, 1), np.float32), 3)
    assert idx.tolist() == [[0]] and sc.tolist() == [[1.0]]


def test_empty_query_and_empty_items():
    v = np.ones((5, 3), dtype=np.float32)
    idx, sc = _core.topk(np.ones((0, 3), np.float32), v, 4)
    assert idx.shape == sc.shape == (0, 4)
    # No items: no candidates, rows of width 0.
    idx, sc = _core.topk(np.ones((2, 3), np.float32), np.ones((0, 3), np.float32), 2)
    assert idx.shape == sc.shape == (2, 0)


# --- real-valued factors ------------------------------------------------------------------------


def test_random_real_factors_with_excludes_match_reference_up_to_ties():
    rng = np.random.default_rng(4)
    q = rng.standard_normal((600, 16)).astype(np.float32)  # crosses the 256-row blocks
    v = rng.standard_normal((1500, 16)).astype(np.float32)  # crosses the 256-item tiles
    indptr, indices = random_csr(rng, 600, 1500, 60)
    assert_close(q, v, 20)
    assert_close(q, v, 20, indptr, indices)


def test_result_does_not_depend_on_thread_count():
    rng = np.random.default_rng(5)
    q = rng.standard_normal((700, 12)).astype(np.float32)
    v = rng.standard_normal((900, 12)).astype(np.float32)
    indptr, indices = random_csr(rng, 700, 900, 30)
    runs = [
        _core.topk(q, v, 25, exclude_indptr=indptr, exclude_indices=indices, num_threads=t)
        for t in (1, 2, 3, 0)
    ]
    for idx, sc in runs[1:]:
        np.testing.assert_array_equal(idx, runs[0][0])
        np.testing.assert_array_equal(sc, runs[0][1])


def test_returns_fresh_writeable_c_contiguous_arrays():
    q = np.ones((3, 2), np.float32)
    idx, sc = _core.topk(q, q, 2)
    for a in (idx, sc):
        assert a.flags.c_contiguous and a.flags.writeable


# --- bad input ---------------------------------------------------------------------------------


def test_non_contiguous_input_is_rejected():
    q = np.ones((4, 6), np.float32)
    v = np.ones((5, 3), np.float32)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.topk(q[:, ::2], v, 2)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.topk(np.ones((4, 3), np.float32), np.asfortranarray(np.ones((5, 3), np.float32)), 2)
    indptr = np.zeros(9, np.int64)
    with pytest.raises(ValueError, match="C-contiguous"):
        _core.topk(
            np.ones((4, 3), np.float32),
            v,
            2,
            exclude_indptr=indptr[::2],
            exclude_indices=np.zeros(0, np.int32),
        )


def test_wrong_dtype_is_a_type_error():
    q = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError):
        _core.topk(q.astype(np.float64), q, 1)
    with pytest.raises(TypeError):
        _core.topk(q, q.astype(np.float16), 1)
    with pytest.raises(TypeError):
        _core.topk(
            q,
            q,
            1,
            exclude_indptr=np.zeros(3, np.int32),
            exclude_indices=np.zeros(0, np.int32),
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"items": np.ones((5, 4), np.float32)}, "factors"),
        ({"n": 0}, "n must be"),
        ({"n": -3}, "n must be"),
        ({"exclude_indptr": np.array([0, 0, 0], np.int64)}, "both"),
        ({"exclude_indices": np.array([1], np.int32)}, "both"),
        (
            {
                "exclude_indptr": np.array([0, 1], np.int64),
                "exclude_indices": np.array([1], np.int32),
            },
            "rows",
        ),
        (
            {
                "exclude_indptr": np.array([0, 1, 1], np.int64),
                "exclude_indices": np.array([5], np.int32),
            },
            "outside",
        ),
        (
            {
                "exclude_indptr": np.array([0, 1, 1], np.int64),
                "exclude_indices": np.array([-1], np.int32),
            },
            "outside",
        ),
        (
            {
                "exclude_indptr": np.array([0, 2, 1], np.int64),
                "exclude_indices": np.array([0], np.int32),
            },
            "non-decreasing",
        ),
        (
            {
                "exclude_indptr": np.array([0, 1, 3], np.int64),
                "exclude_indices": np.array([0], np.int32),
            },
            "indptr",
        ),
        ({"query": np.array([[np.nan, 1, 1], [1, 1, 1]], np.float32)}, "non-finite"),
        ({"items": np.full((5, 3), np.inf, np.float32)}, "non-finite"),
        ({"query": np.full((2, 3), 1e38, np.float32)}, "overflow"),
    ],
)
def test_bad_values_are_value_errors(kwargs, match):
    args = {"query": np.ones((2, 3), np.float32), "items": np.ones((5, 3), np.float32), "n": 2}
    args.update(kwargs)
    q, v, n = args.pop("query"), args.pop("items"), args.pop("n")
    with pytest.raises(ValueError, match=match):
        _core.topk(q, v, n, **args)


def test_keyword_only_options():
    q = np.ones((2, 3), np.float32)
    with pytest.raises(TypeError):
        _core.topk(q, q, 1, None, None)


# --- properties ----------------------------------------------------------------------------------


@st.composite
def problems(draw):
    m = draw(st.integers(0, 12))
    n_items = draw(st.integers(0, 40))
    f = draw(st.integers(1, 5))
    n = draw(st.integers(1, 45))
    seed = draw(st.integers(0, 2**32 - 1))
    with_excl = draw(st.booleans())
    rng = np.random.default_rng(seed)
    q = ints(rng, (m, f), -2, 2)
    v = ints(rng, (n_items, f), -2, 2)
    excl = random_csr(rng, m, n_items, n_items) if with_excl and n_items else (None, None)
    return q, v, n, excl


@settings(max_examples=150, deadline=None)
@given(problems())
def test_property_topk_equals_argsort_on_exact_scores(problem):
    q, v, n, (indptr, indices) = problem
    assert_exact(q, v, n, indptr, indices)


@settings(max_examples=60, deadline=None)
@given(
    st.integers(1, 30),
    st.integers(1, 300),
    st.integers(1, 20),
    st.integers(1, 30),
    st.integers(0, 2**32 - 1),
)
def test_property_real_factors_topk_set_equals_argsort_up_to_ties(m, n_items, f, n, seed):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((m, f)).astype(np.float32)
    v = rng.standard_normal((n_items, f)).astype(np.float32)
    indptr, indices = random_csr(rng, m, n_items, min(n_items, 50))
    assert_close(q, v, n, indptr, indices)
