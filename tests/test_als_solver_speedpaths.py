"""The fast paths of the default ALS solver ("cg" with a tolerance) against the exact solves.

When the other side has clearly fewer rows than the target (users against a small catalogue),
the default solver writes short rows out by the exact Woodbury solve through
Z = Y (YᵀY + λI)⁻¹ and runs CG only on the long rows. These tests build data that takes that
path (`_takes_z_path` mirrors the kernel's rule) and compare every kind of row with the dense
numpy solve and the kernel's textbook f64 solve ("reference").
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from rusket import _core
from tests import reference


def _csr(m: sp.csr_matrix):
    return m.indptr.astype(np.int64), m.indices.astype(np.int32), m.data.astype(np.float32)


def _short_max(f: int) -> int:
    return min(round(f**0.5), f - 1)


def _cold_max(f: int) -> int:
    """Rows of at most this many items start their CG from zero (`cold_row_limit`)."""
    return min(round((f / 2) ** 0.5), f - 1)


#: The rank from which the Z path is taken (`Z_MIN_RANK` in src/kernels/als.rs).
Z_MIN_RANK = 96


def _takes_z_path(conf: sp.csr_matrix, f: int) -> bool:
    if f < Z_MIN_RANK:
        return False
    lengths = np.diff(conf.indptr)
    long = int((lengths > _short_max(f)).sum())
    return conf.shape[1] + 2 * long < 2 * conf.shape[0]


def _rows_of_lengths(lengths, n_items, rng, scale=40.0, duplicates=False):
    """A CSR matrix whose row u has lengths[u] stored entries (distinct items unless
    `duplicates`), confidences 1 + scale * Exp(1)."""
    indptr, indices = [0], []
    for n in lengths:
        if duplicates:
            cols = rng.integers(0, n_items, n)
        else:
            cols = np.sort(rng.choice(n_items, n, replace=False))
        indices.extend(cols.tolist())
        indptr.append(len(indices))
    data = (1.0 + scale * rng.exponential(1.0, len(indices))).astype(np.float32)
    return sp.csr_matrix(
        (data, np.array(indices, np.int32), np.array(indptr, np.int64)),
        shape=(len(lengths), n_items),
    )


def _solve(conf, fixed, solver, reg, tol=1e-5, start=None, steps=16):
    rng = np.random.default_rng(1)
    x = (
        rng.standard_normal((conf.shape[0], fixed.shape[1])).astype(np.float32)
        if start is None
        else start.copy()
    )
    _core.als_solve_side(
        *_csr(conf),
        fixed,
        x,
        regularization=reg,
        solver=solver,
        cg_steps=steps,
        num_threads=2,
        tol=tol,
    )
    return x


@pytest.mark.parametrize("f", [96, 97, 128])
def test_every_row_length_around_the_rank_matches_the_dense_solve(f):
    """Rows of 0, 1, the Woodbury limit, f-1, f and f+1 items; many short rows so that the
    default solver takes the Z path. Short rows are exact; long rows are CG to tolerance, which
    from any start converges to the solve when run long enough (cg_steps > f)."""
    rng = np.random.default_rng(f)
    n_items = f + 3
    special = [0, 1, _short_max(f), max(f - 1, 0), f, f + 1]
    lengths = [min(n, n_items) for n in special] + [
        int(v) for v in rng.integers(0, _short_max(f) + 1, 40 + 10 * f)
    ]
    conf = _rows_of_lengths(lengths, n_items, rng)
    assert _takes_z_path(conf, f)
    fixed = rng.standard_normal((n_items, f)).astype(np.float32)
    want = reference.als_half_step(conf, fixed, 0.5)
    got = _solve(conf, fixed, "cg", 0.5, tol=1e-12, steps=4 * f + 8)
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-3)
    assert not got[np.diff(conf.indptr) == 0].any()
    # solver="auto" is the same solver.
    np.testing.assert_array_equal(_solve(conf, fixed, "auto", 0.5, tol=1e-12, steps=4 * f + 8), got)


@pytest.mark.parametrize("f", [96, 128])
def test_short_rows_are_exact_whatever_the_starting_point(f):
    """Rows within the Woodbury limit do not depend on the warm start (no iteration)."""
    rng = np.random.default_rng(100 + f)
    n_items = 2 * f + 5
    lengths = [int(v) for v in rng.integers(1, _short_max(f) + 1, 300)]
    conf = _rows_of_lengths(lengths, n_items, rng)
    assert _takes_z_path(conf, f)
    fixed = rng.standard_normal((n_items, f)).astype(np.float32)
    want = reference.als_half_step(conf, fixed, 0.1)
    a = _solve(conf, fixed, "cg", 0.1, steps=1)
    b = _solve(conf, fixed, "cg", 0.1, steps=1, start=np.zeros_like(a))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(a, want, rtol=1e-4, atol=1e-4)


def test_below_the_z_rank_short_rows_start_from_zero():
    """Below the Z rank the default is the whitened CG, except that rows of at most sqrt(f / 2)
    items run their CG from zero (converged in n + 1 steps, no warm-start transform): they do
    not depend on the start, longer rows do (a warm start, stopped at the tolerance)."""
    rng = np.random.default_rng(3)
    f = Z_MIN_RANK - 1
    lengths = [int(v) for v in rng.integers(0, 4, 400)] + [40] * 20
    conf = _rows_of_lengths(lengths, 60, rng)
    fixed = rng.standard_normal((60, f)).astype(np.float32)
    want = reference.als_half_step(conf, fixed, 0.3)
    a = _solve(conf, fixed, "cg", 0.3)
    b = _solve(conf, fixed, "cg", 0.3, start=np.zeros_like(a))
    short = np.asarray(lengths) <= _cold_max(f)
    assert short.sum() >= 300 and (~short).sum() == 20
    np.testing.assert_array_equal(a[short], b[short])
    assert not np.array_equal(a[~short], b[~short])
    np.testing.assert_allclose(a[short], want[short], rtol=1e-4, atol=1e-4)
    # Both converge to the solve given the steps (the long rows here need more than 16).
    for solver in ("cg", "cg_whitened"):
        x = _solve(conf, fixed, solver, 0.3, tol=1e-9, steps=200)
        np.testing.assert_allclose(x, want, rtol=1e-3, atol=1e-3)


def test_one_item_catalogue_and_single_user():
    rng = np.random.default_rng(7)
    # One item, many users (each row 0 or 1 entries): every row short.
    conf = _rows_of_lengths([int(v) for v in rng.integers(0, 2, 50)], 1, rng)
    fixed = rng.standard_normal((1, Z_MIN_RANK)).astype(np.float32)
    assert _takes_z_path(conf, Z_MIN_RANK)
    np.testing.assert_allclose(
        _solve(conf, fixed, "cg", 0.2),
        reference.als_half_step(conf, fixed, 0.2),
        rtol=1e-4,
        atol=1e-6,
    )
    # One user: the whitened path (no Z), still right.
    one = _rows_of_lengths([4], 6, rng)
    fixed6 = rng.standard_normal((6, 4)).astype(np.float32)
    assert not _takes_z_path(one, 4)
    np.testing.assert_allclose(
        _solve(one, fixed6, "cg", 0.2, tol=1e-12, steps=20),
        reference.als_half_step(one, fixed6, 0.2),
        rtol=1e-3,
        atol=1e-4,
    )


def test_duplicate_items_in_a_row_match_the_textbook_kernel_solve():
    """A repeated item counts once per stored entry, as in every other solver."""
    rng = np.random.default_rng(11)
    f, n_items = Z_MIN_RANK, 5
    lengths = [int(v) for v in rng.integers(0, _short_max(f) + 1, 200)]
    conf = _rows_of_lengths(lengths, n_items, rng, duplicates=True)
    assert _takes_z_path(conf, f)
    assert any(len(set(conf[u].indices)) < conf[u].nnz for u in range(conf.shape[0]))
    fixed = rng.standard_normal((n_items, f)).astype(np.float32)
    np.testing.assert_allclose(
        _solve(conf, fixed, "cg", 0.3),
        _solve(conf, fixed, "reference", 0.3),
        rtol=1e-4,
        atol=1e-5,
    )


@pytest.mark.parametrize("scale", [1e4, 1e6, 1e8 - 1])
def test_huge_confidences_stay_exact(scale):
    """Linear confidences on raw amounts (up to the 1e8 limit): short rows, and long rows with a
    confidence above 1e5, are solved exactly in f64 and match the f64 reference to f32
    precision; the other long rows run CG as the whitened CG does."""
    rng = np.random.default_rng(int(np.log10(scale)))
    f, n_items = Z_MIN_RANK, Z_MIN_RANK + 2
    lengths = [int(v) for v in rng.integers(0, _short_max(f) + 1, 300)] + [f - 1, f, f + 1, n_items]
    conf = _rows_of_lengths(lengths, n_items, rng, scale=1.0)
    conf.data = np.minimum(1.0 + scale * rng.random(conf.nnz), 1e8).astype(np.float32)
    assert _takes_z_path(conf, f)
    fixed = rng.standard_normal((n_items, f)).astype(np.float32)
    want = _solve(conf, fixed, "reference", 0.01)
    got = _solve(conf, fixed, "cg", 0.01)
    assert np.isfinite(got).all()
    lengths_arr = np.diff(conf.indptr)
    top = np.array([conf.data[a:b].max(initial=0.0) for a, b in zip(conf.indptr, conf.indptr[1:])])
    exact = (lengths_arr <= _short_max(f)) | (top > 1e5)
    assert exact.sum() > 250
    np.testing.assert_allclose(
        got[exact], want[exact], rtol=2e-3, atol=2e-3 * np.abs(want[exact]).max()
    )
    # The few long rows below 1e5 run 16 CG steps as the whitened CG does (at this rank they
    # need more than 16 to converge): the same objective as the whitened CG on those rows.
    whitened = _solve(conf, fixed, "cg_whitened", 0.01)
    loss = _core.als_loss(*_csr(conf), got, fixed, regularization=0.01, num_threads=1)
    ref = _core.als_loss(*_csr(conf), whitened, fixed, regularization=0.01, num_threads=1)
    assert loss <= ref * (1 + 1e-3)


def test_default_matches_the_whitened_cg_on_a_realistic_shape():
    """Many users, a small catalogue, power-law row lengths: both forms of the default
    solver reach the same objective (each within the tolerance of the exact one)."""
    rng = np.random.default_rng(5)
    n_users, n_items, f = 3000, 200, Z_MIN_RANK
    lengths = np.minimum((rng.pareto(1.2, n_users) + 1).astype(int), n_items)
    conf = _rows_of_lengths(lengths.tolist(), n_items, rng)
    conf.data = (1.0 + 40.0 * np.log1p(conf.data)).astype(np.float32)
    assert _takes_z_path(conf, f)
    fixed = (0.1 * rng.standard_normal((n_items, f))).astype(np.float32)
    start = (0.1 * rng.standard_normal((n_users, f))).astype(np.float32)
    reg = 3.0 * float(conf.data.mean())
    exact = _solve(conf, fixed, "cholesky", reg, start=start)
    loss = {
        s: _core.als_loss(
            *_csr(conf),
            _solve(conf, fixed, s, reg, start=start),
            fixed,
            regularization=reg,
            num_threads=1,
        )
        for s in ["cg", "cg_whitened"]
    }
    ref = _core.als_loss(*_csr(conf), exact, fixed, regularization=reg, num_threads=1)
    for s, v in loss.items():
        assert ref <= v * (1 + 1e-6), s
        assert v <= ref * (1 + 1e-3), (s, v / ref)


def test_bad_tolerances_and_names_are_value_errors():
    conf = _rows_of_lengths([1, 2], 3, np.random.default_rng(0))
    fixed = np.ones((3, 2), np.float32)
    x = np.zeros((2, 2), np.float32)
    kw = {"regularization": 0.1, "cg_steps": 3, "num_threads": 1}
    with pytest.raises(ValueError, match="auto"):
        _core.als_solve_side(*_csr(conf), fixed, x, solver="auto", tol=0.0, **kw)
    with pytest.raises(ValueError, match="tolerance"):
        _core.als_solve_side(*_csr(conf), fixed, x, solver="cg", tol=float("nan"), **kw)
    with pytest.raises(ValueError, match="solver"):
        _core.als_solve_side(*_csr(conf), fixed, x, solver="woodbury", tol=1e-5, **kw)


@pytest.mark.parametrize("f", [16, Z_MIN_RANK])
@pytest.mark.parametrize("row_scale", [False, True])
def test_a_workspace_shared_by_both_sides_changes_no_bit(f, row_scale):
    """A fit hands one AlsWorkspace to all its half-steps (buffers of both sides' sizes kept
    between them): every half-step must equal the same half-step with fresh buffers."""
    rng = np.random.default_rng(9)
    n_users, n_items = 900, 120
    lengths = np.minimum((rng.pareto(1.2, n_users) + 1).astype(int), n_items)
    conf_u = _rows_of_lengths(lengths.tolist(), n_items, rng)
    conf_i = conf_u.T.tocsr()
    if f == Z_MIN_RANK:
        assert _takes_z_path(conf_u, f)
    scale_u = (np.diff(conf_u.indptr).clip(1) ** 0.5).astype(np.float32) if row_scale else None
    scale_i = (np.diff(conf_i.indptr).clip(1) ** 0.5).astype(np.float32) if row_scale else None
    kw = {"regularization": 2.0, "solver": "cg", "cg_steps": 16, "num_threads": 2, "tol": 1e-5}
    runs = []
    for workspace in (None, _core.AlsWorkspace()):
        users = np.zeros((n_users, f), np.float32)
        items = (0.1 * np.random.default_rng(3).random((n_items, f))).astype(np.float32)
        trace = []
        for _ in range(3):
            _core.als_solve_side(
                *_csr(conf_u), items, users, **kw, row_scale=scale_u, workspace=workspace
            )
            _core.als_solve_side(
                *_csr(conf_i), users, items, **kw, row_scale=scale_i, workspace=workspace
            )
            trace += [users.copy(), items.copy()]
        runs.append(trace)
    for fresh, shared in zip(*runs):
        assert np.all(np.isfinite(fresh))
        np.testing.assert_array_equal(fresh, shared)


def test_a_workspace_of_the_wrong_type_is_a_type_error():
    conf = _rows_of_lengths([1, 2], 3, np.random.default_rng(0))
    fixed = np.ones((3, 2), np.float32)
    x = np.zeros((2, 2), np.float32)
    kw = {"regularization": 0.1, "cg_steps": 3, "num_threads": 1, "solver": "cg"}
    with pytest.raises(TypeError, match="AlsWorkspace"):
        _core.als_solve_side(*_csr(conf), fixed, x, workspace={}, **kw)


def test_rotate_fixed_turns_both_sides_and_keeps_the_scores():
    """rotate_fixed with a per-row penalty: fixed becomes fixed @ Q (Q orthogonal: its Gram
    matrix diagonal, its norm kept) and target's rows score against it as the plain rows score
    against the original; one penalty leaves fixed alone."""
    rng = np.random.default_rng(4)
    conf = _rows_of_lengths([0, 1, 3, 8, 20, 2, 5] * 6, 30, rng)
    fixed = (0.3 * rng.standard_normal((30, 12))).astype(np.float32)
    start = (0.1 * rng.standard_normal((conf.shape[0], 12))).astype(np.float32)
    scale = (np.diff(conf.indptr).clip(1) ** 0.5).astype(np.float32)
    kw = {"regularization": 1.5, "solver": "cg", "cg_steps": 30, "num_threads": 2, "tol": 1e-8}
    plain = start.copy()
    _core.als_solve_side(*_csr(conf), fixed, plain, **kw, row_scale=scale)
    turned, rows = fixed.copy(), start.copy()
    _core.als_solve_side(*_csr(conf), turned, rows, **kw, row_scale=scale, rotate_fixed=True)
    want = plain @ fixed.T
    np.testing.assert_allclose(rows @ turned.T, want, atol=1e-4 * np.abs(want).max())
    gram = turned.astype(np.float64).T @ turned
    assert np.abs(gram - np.diag(np.diag(gram))).max() < 1e-4 * np.trace(gram)
    assert np.trace(gram) == pytest.approx(float(np.sum(fixed.astype(np.float64) ** 2)), rel=1e-5)
    assert not np.allclose(turned, fixed)
    kept, one = fixed.copy(), start.copy()
    _core.als_solve_side(*_csr(conf), kept, one, **kw, rotate_fixed=True)
    np.testing.assert_array_equal(kept, fixed)


def test_rotate_fixed_needs_a_writeable_fixed_side_of_its_own():
    conf = _rows_of_lengths([1, 2], 3, np.random.default_rng(0))
    kw = {"regularization": 0.1, "cg_steps": 3, "num_threads": 1, "solver": "cg", "tol": 1e-5}
    scale = np.ones(2, np.float32)
    fixed = np.ones((3, 2), np.float32)
    fixed.flags.writeable = False
    x = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match="fixed is read-only"):
        _core.als_solve_side(*_csr(conf), fixed, x, **kw, row_scale=scale, rotate_fixed=True)
    # Without rotation a read-only fixed side is fine.
    _core.als_solve_side(*_csr(conf), fixed, x, **kw, row_scale=scale)
    indptr, indices, data = _csr(conf)
    both = np.ones(4 + len(data), np.float32)  # fixed's last row is data's first values
    shared_fixed = both[:6].reshape(3, 2)
    shared_data = both[4:]
    with pytest.raises(ValueError, match="fixed shares memory with data"):
        _core.als_solve_side(
            indptr, indices, shared_data, shared_fixed, x, **kw, row_scale=scale, rotate_fixed=True
        )
    np.testing.assert_array_equal(both, 1.0)  # nothing written
