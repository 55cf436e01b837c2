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


def als_half_step(conf: sp.csr_matrix, fixed: np.ndarray, reg: float) -> np.ndarray:
    """x_u = (Yᵀ C_u Y + λI)⁻¹ Yᵀ C_u p_u for every row, with dense matrices and np.linalg.solve."""
    c, p = dense_confidence(conf)
    y = fixed.astype(np.float64)
    f = y.shape[1]
    out = np.zeros((conf.shape[0], f))
    for u in range(conf.shape[0]):
        if conf.indptr[u] == conf.indptr[u + 1]:
            continue  # no observed item: the solution is exactly 0
        a = y.T @ (c[u][:, None] * y) + reg * np.eye(f)
        b = y.T @ (c[u] * p[u])
        out[u] = np.linalg.solve(a, b)
    return out


def als_loss(conf: sp.csr_matrix, users: np.ndarray, items: np.ndarray, reg: float) -> float:
    c, p = dense_confidence(conf)
    s = users.astype(np.float64) @ items.astype(np.float64).T
    return float((c * (p - s) ** 2).sum() + reg * ((users**2).sum() + (items**2).sum()))


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
