"""ALS training: rusket vs the `implicit` library, same data, same run, 2 threads.

    .venv/bin/python benchmarks/bench_als.py            # synthetic 200k x 50k x 5M + MovieLens-100k
    .venv/bin/python benchmarks/bench_als.py --small    # quick: MovieLens-100k only

Both train on the same per-user 80/20 hold-out split with the same factors, iterations, alpha and
regularization; nDCG@10 is scored on the held-out 20% with the same exact top-k code for both
models, next to the "most popular unseen items" baseline. Note the formulas differ nominally:
rusket uses confidence 1 + alpha * r (Hu et al.), implicit feeds alpha * r.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit asks for it; BLAS threads off

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).parent))
import datasets

import rusket
from rusket import _core

THREADS = 2


def top_items(users: np.ndarray, items: np.ndarray, train: sp.csr_matrix, k: int) -> np.ndarray:
    idx, _ = _core.topk(
        np.ascontiguousarray(users, dtype=np.float32),
        np.ascontiguousarray(items, dtype=np.float32),
        k,
        exclude_indptr=train.indptr.astype(np.int64),
        exclude_indices=train.indices.astype(np.int32),
        num_threads=THREADS,
    )
    return idx


def train_rusket(train: sp.csr_matrix, **kw) -> tuple[float, np.ndarray, np.ndarray]:
    t = time.perf_counter()
    m = rusket.ALS(num_threads=THREADS, **kw).fit(train)
    return time.perf_counter() - t, m.user_factors, m.item_factors


def train_implicit(train: sp.csr_matrix, factors, iterations, alpha, regularization):
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(
        factors=factors,
        regularization=regularization,
        alpha=alpha,
        iterations=iterations,
        random_state=0,
        num_threads=THREADS,
        calculate_training_loss=False,
    )
    t = time.perf_counter()
    model.fit(train, show_progress=False)
    return time.perf_counter() - t, model.user_factors, model.item_factors


def run(name: str, df, repeats: int, factors=64, iterations=15, alpha=40.0, reg=0.01) -> None:
    m, _, _ = datasets.to_csr(df)
    train, test = datasets.holdout(m, 0.2, seed=0)
    train = train.astype(np.float32)
    print(
        f"\n== {name}: {m.shape[0]:,} users x {m.shape[1]:,} items, {train.nnz:,} train pairs; "
        f"factors={factors} iterations={iterations} alpha={alpha} regularization={reg}"
    )
    hp = {"factors": factors, "iterations": iterations, "alpha": alpha, "regularization": reg}
    t_r, t_i = [], []
    for _ in range(repeats):
        tr, ur, vr = train_rusket(train, **hp)
        ti, ui, vi = train_implicit(train, **hp)
        t_r.append(tr)
        t_i.append(ti)
        print(f"  run: rusket {tr:7.2f} s   implicit {ti:7.2f} s   ratio {ti / tr:5.2f}x")
    mr, mi = statistics.median(t_r), statistics.median(t_i)
    nd_r = datasets.ndcg_at_k(top_items(ur, vr, train, 10), test, 10)
    nd_i = datasets.ndcg_at_k(top_items(ui, vi, train, 10), test, 10)
    nd_p = datasets.ndcg_at_k(datasets.popularity_top(train, 10), test, 10)
    _, ul, vl = train_rusket(train, **{**hp, "alpha": 1.0, "regularization": 1.0}, confidence="log")
    nd_l = datasets.ndcg_at_k(top_items(ul, vl, train, 10), test, 10)
    per_run = statistics.median(i / r for i, r in zip(t_i, t_r))
    print(
        f"  median training time: rusket {mr:.2f} s, implicit {mi:.2f} s -> rusket is "
        f"{mi / mr:.2f}x faster (ratio of medians; median of per-run ratios {per_run:.2f}x, "
        f"{repeats} runs)"
    )
    print(
        f"  nDCG@10: rusket {nd_r:.4f}  implicit {nd_i:.4f}  popularity {nd_p:.4f}  "
        f"| rusket confidence='log' alpha=1 reg=1: {nd_l:.4f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true", help="MovieLens-100k only")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    run("MovieLens-100k", datasets.movielens_100k(), args.repeats)
    if not args.small:
        run("synthetic power-law", datasets.synthetic(), args.repeats)


if __name__ == "__main__":
    main()
