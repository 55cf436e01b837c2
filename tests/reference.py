"""Slow, obvious numpy references the Rust kernels are tested against."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def dense_confidence(conf: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Dense confidence C (1 where unobserved) and preference P (1 where observed)."""
    c = np.ones(conf.shape)
    p = np.zeros(conf.shape)
    coo = conf.tocoo()
    c[coo.row, coo.col] = coo.data
    p[coo.row, coo.col] = 1.0
    return c, p


def als_half_step(conf: sp.csr_matrix, fixed: np.ndarray, reg) -> np.ndarray:
    """x_u = (Yᵀ C_u Y + λ_u I)⁻¹ Yᵀ C_u p_u for every row, with dense matrices and
    np.linalg.solve; ``reg`` is one λ for every row or one per row."""
    c, p = dense_confidence(conf)
    y = fixed.astype(np.float64)
    f = y.shape[1]
    lam = np.broadcast_to(np.asarray(reg, dtype=np.float64), (conf.shape[0],))
    out = np.zeros((conf.shape[0], f))
    for u in range(conf.shape[0]):
        if conf.indptr[u] == conf.indptr[u + 1]:
            continue  # no observed item: the solution is exactly 0
        a = y.T @ (c[u][:, None] * y) + lam[u] * np.eye(f)
        b = y.T @ (c[u] * p[u])
        out[u] = np.linalg.solve(a, b)
    return out


def als_loss(conf: sp.csr_matrix, users: np.ndarray, items: np.ndarray, reg, item_reg=None):
    """The ALS objective; ``reg`` (users) and ``item_reg`` (items, default ``reg``) are one λ or
    one per row."""
    c, p = dense_confidence(conf)
    u64, i64 = users.astype(np.float64), items.astype(np.float64)
    s = u64 @ i64.T
    item_reg = reg if item_reg is None else item_reg
    penalty = np.sum(np.asarray(reg) * (u64**2).sum(axis=1))
    penalty += np.sum(np.asarray(item_reg) * (i64**2).sum(axis=1))
    return float((c * (p - s) ** 2).sum() + penalty)


def row_penalties(seen: sp.csr_matrix, regularization, exponent: float):
    """``(λ per user, λ per item)`` of ``rusket.ALS`` for the user x item confidences ``seen``,
    written out plainly: ``λ_r = λ0 * max(n_r, 1) ** exponent`` with ``n_r`` the row's (column's)
    number of pairs; for ``"auto"``, ``λ0 = 3 * mean(c) / mean(max(n, 1) ** exponent)`` over the
    side with fewer rows (more pairs per row), items on a tie."""
    seen = sp.csr_matrix(seen)
    n_users, n_items = seen.shape
    per_user = [int(seen.indptr[u + 1] - seen.indptr[u]) for u in range(n_users)]
    per_item = [0] * n_items
    for j in seen.indices:
        per_item[j] += 1
    weight = lambda n: float(max(n, 1)) ** exponent  # noqa: E731
    if regularization == "auto":
        lam0 = 3.0 * float(np.mean(seen.data.astype(np.float64))) if seen.nnz else 3.0
        if seen.nnz and exponent != 0:
            denser = per_item if n_users >= n_items else per_user
            lam0 /= sum(weight(n) for n in denser) / len(denser)
    else:
        lam0 = float(regularization)
    return (
        np.array([lam0 * weight(n) for n in per_user]),
        np.array([lam0 * weight(n) for n in per_item]),
    )


def topk(scores: np.ndarray, n: int, exclude: list[set[int]] | None = None):
    """Best-first item indices per row by (-score, index), padded with -1 / NaN."""
    m, n_items = scores.shape
    idx = np.full((m, n), -1, dtype=np.int64)
    val = np.full((m, n), np.nan, dtype=np.float32)
    for u in range(m):
        cand = [i for i in range(n_items) if exclude is None or i not in exclude[u]]
        cand.sort(key=lambda i: (-scores[u, i], i))
        cand = cand[:n]
        idx[u, : len(cand)] = cand
        val[u, : len(cand)] = scores[u, cand]
    return idx, val
