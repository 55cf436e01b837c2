"""ALS training: rusket vs the `implicit` library, same data, same run, 2 threads, at equal
answer quality.

    .venv/bin/python benchmarks/bench_als.py             # MovieLens-100k + synthetic 200k x 50k
    .venv/bin/python benchmarks/bench_als.py --small     # MovieLens-100k only
    .venv/bin/python benchmarks/bench_als.py --factors 32,64,128,256,512 --small
    # issue 13: ranks 32..512 on 100k users x 20k items x 1M lines, 5 sweeps, loss relative to
    # rusket's default (the exact solve is f^3 per long row: too slow at 512)
    .venv/bin/python benchmarks/bench_als.py --synthetic 100000,20000,1000000 --no-movielens \
        --iterations 5 --reference default --settings defaults --factors 32,64,128,256,512

Every model trains on the same per-user 80/20 hold-out split. Next to each time the script
prints the training loss relative to rusket's exact solver (how converged the answer is) and
nDCG@10 on the held-out 20% (bought items excluded, same exact top-k code for every model), and
"most popular unseen items" as the baseline. A speed-up counts only at equal quality.

Two settings:
* classic: linear confidence, alpha=40, regularization=0.01 (the formulas differ nominally:
  rusket's confidence is 1 + alpha * r (Hu et al.), implicit feeds alpha * r);
* defaults: rusket's defaults (confidence 1 + 40 log(1 + r), regularization "auto" = 3 x the mean
  confidence) with one penalty for every row (``regularization_exponent=0``: implicit's
  objective); implicit gets the same transformed values (40 log(1 + r) as its alpha * r with
  alpha=1... i.e. its matrix holds 40 log(1 + r)) and the same penalty. One more row times the
  true default, the per-row penalty (``regularization_exponent=0.5``): a different objective
  (its loss is not comparable, "n/a"), compared by time and nDCG@10.
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
from rusket.als import _penalty

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


def loss_of(conf: sp.csr_matrix, users: np.ndarray, items: np.ndarray, lam: float) -> float:
    """rusket's objective (confidences c = 1 + alpha * t(r)) for any pair of factor matrices."""
    return _core.als_loss(
        conf.indptr.astype(np.int64),
        conf.indices.astype(np.int32),
        conf.data.astype(np.float32),
        np.ascontiguousarray(users, dtype=np.float32),
        np.ascontiguousarray(items, dtype=np.float32),
        regularization=lam,
        num_threads=THREADS,
    )


def train_rusket(train: sp.csr_matrix, **kw) -> tuple[float, rusket.ALS]:
    t = time.perf_counter()
    m = rusket.ALS(num_threads=THREADS, **kw).fit(train)
    return time.perf_counter() - t, m


def train_implicit(values: sp.csr_matrix, factors, iterations, alpha, regularization):
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
    model.fit(values, show_progress=False)
    return time.perf_counter() - t, model.user_factors, model.item_factors


#: The row of the true default: the per-row penalty (not implicit's objective).
PER_ROW = "rusket default, per-row penalty 0.5"


def run(
    name: str,
    df,
    repeats: int,
    factors: int,
    setting: str,
    iterations: int = 15,
    reference: str = "cholesky",
) -> None:
    m, _, _ = datasets.to_csr(df)
    train, test = datasets.holdout(m, 0.2, seed=0)
    train = train.astype(np.float32)
    # One penalty for every row in both settings: implicit's objective.
    if setting == "classic":
        rk = {
            "confidence": "linear",
            "alpha": 40.0,
            "regularization": 0.01,
            "regularization_exponent": 0.0,
        }
        conf_values = 40.0 * train.data
    else:
        rk = {"regularization_exponent": 0.0}
        conf_values = 40.0 * np.log1p(train.data)
    conf = sp.csr_matrix((1.0 + conf_values, train.indices, train.indptr), shape=train.shape)
    lam = _penalty("auto" if setting == "defaults" else 0.01, 1.0 + conf_values)
    implicit_values = sp.csr_matrix((conf_values, train.indices, train.indptr), shape=train.shape)
    print(
        f"\n== {name}: {m.shape[0]:,} users x {m.shape[1]:,} items, {train.nnz:,} train pairs; "
        f"{setting} settings ({rk}; penalty {lam:.4g}); "
        f"factors={factors} iterations={iterations}",
        flush=True,
    )
    base = {"factors": factors, "iterations": iterations, **rk}
    variants = {
        "rusket default solver, one penalty": {},
        "rusket cg 3 fixed steps": {"cg_steps": 3, "cg_tol": 0.0},
    }
    if setting == "defaults":
        variants[PER_ROW] = {"regularization_exponent": 0.5}
    times: dict[str, list[float]] = {k: [] for k in [*variants, "implicit cg"]}
    fitted: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for _ in range(repeats):
        for label, extra in variants.items():
            t, model = train_rusket(train, **{**base, **extra})
            times[label].append(t)
            fitted[label] = (model.user_factors, model.item_factors)
        t, u, v = train_implicit(
            implicit_values, factors, iterations, alpha=1.0, regularization=lam
        )
        times["implicit cg"].append(t)
        fitted["implicit cg"] = (u, v)
    if reference == "cholesky":
        t_exact, exact = train_rusket(train, **base, solver="cholesky")
        fitted["rusket exact (cholesky)"] = (exact.user_factors, exact.item_factors)
        ref = loss_of(conf, *fitted["rusket exact (cholesky)"], lam)
    else:
        ref = loss_of(conf, *fitted["rusket default solver, one penalty"], lam)
    t_imp = statistics.median(times["implicit cg"])
    for label, (u, v) in fitted.items():
        t = statistics.median(times[label]) if label in times else t_exact
        nd = datasets.ndcg_at_k(top_items(u, v, train, 10), test, 10)
        ratio = f"{t_imp / t:5.2f}x" if label != "implicit cg" else "  1.00x"
        rel = "n/a" if label == PER_ROW else f"{loss_of(conf, u, v, lam) / ref:8.4f}"
        print(
            f"  {label:34s} {t:7.2f} s  implicit/this {ratio}  "
            f"loss/{reference} {rel:>8}  nDCG@10 {nd:.4f}",
            flush=True,
        )
    if repeats > 1:
        for key in ("rusket default solver, one penalty", PER_ROW):
            if key not in times:
                continue
            per_run = statistics.median(
                i / r for i, r in zip(times["implicit cg"], times[key], strict=True)
            )
            print(f"  median of per-run ratios implicit/{key}: {per_run:.2f}x ({repeats} runs)")
    nd_p = datasets.ndcg_at_k(datasets.popularity_top(train, 10), test, 10)
    print(f"  popularity nDCG@10 {nd_p:.4f}", flush=True)


def kernel_ab(name: str, df, repeats: int, factors: int, iterations: int) -> None:
    """The default solver ("cg" with its tolerance: Woodbury short rows through Z where the
    other side is smaller) against the whitened CG on every row ("cg_whitened", the previous
    default), as bare half-steps at rusket's defaults, interleaved, on 2 threads."""
    m, _, _ = datasets.to_csr(df)
    conf = m.astype(np.float32).tocsr()
    conf.data = (1.0 + 40.0 * np.log1p(conf.data)).astype(np.float32)
    lam = _penalty("auto", conf.data)
    sides = [
        (c.indptr.astype(np.int64), c.indices.astype(np.int32), c.data.astype(np.float32))
        for c in (conf, conf.T.tocsr())
    ]
    times: dict[str, list[float]] = {"cg": [], "cg_whitened": []}
    losses = {}
    for _ in range(repeats):
        for solver in times:
            rng = np.random.default_rng(0)
            u = (0.01 * rng.standard_normal((conf.shape[0], factors))).astype(np.float32)
            v = (0.01 * rng.standard_normal((conf.shape[1], factors))).astype(np.float32)
            t = time.perf_counter()
            for _ in range(iterations):
                for csr, fixed, target in ((sides[0], v, u), (sides[1], u, v)):
                    _core.als_solve_side(
                        *csr,
                        fixed,
                        target,
                        regularization=lam,
                        solver=solver,
                        cg_steps=16,
                        num_threads=THREADS,
                        tol=1e-5,
                    )
            times[solver].append(time.perf_counter() - t)
            losses[solver] = loss_of(conf, u, v, lam)
    a, b = statistics.median(times["cg"]), statistics.median(times["cg_whitened"])
    per_run = statistics.median(
        w / c for w, c in zip(times["cg_whitened"], times["cg"], strict=True)
    )
    print(
        f"{name} f={factors}: half-steps x{2 * iterations}: default {a:.2f} s, whitened "
        f"{b:.2f} s, whitened/default {b / a:.2f}x (median per run {per_run:.2f}x); "
        f"loss default/whitened {losses['cg'] / losses['cg_whitened']:.5f}",
        flush=True,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true", help="MovieLens-100k only")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--factors", default="64", help="comma-separated ranks, e.g. 32,64,128")
    ap.add_argument("--settings", default="defaults,classic")
    ap.add_argument("--iterations", type=int, default=15)
    ap.add_argument(
        "--synthetic",
        default="200000,50000,5000000",
        help="users,items,order lines of the synthetic set",
    )
    ap.add_argument("--no-movielens", action="store_true")
    ap.add_argument(
        "--reference",
        choices=["cholesky", "default"],
        default="cholesky",
        help="the loss every model is divided by: the exact solver's or rusket's default's",
    )
    ap.add_argument(
        "--kernel-ab",
        action="store_true",
        help="only the default solver against the whitened CG, as bare half-steps",
    )
    args = ap.parse_args()
    sets = [] if args.no_movielens else [("MovieLens-100k", datasets.movielens_100k())]
    if not args.small:
        n_users, n_items, n_rows = (int(x) for x in args.synthetic.split(","))
        sets.append(
            (
                f"synthetic power-law {n_users:,} x {n_items:,} x {n_rows:,}",
                datasets.synthetic(n_users, n_items, n_rows),
            )
        )
    for name, df in sets:
        if args.kernel_ab:
            for f in (int(x) for x in args.factors.split(",")):
                kernel_ab(name, df, args.repeats, f, args.iterations)
            continue
        for setting in args.settings.split(","):
            for f in (int(x) for x in args.factors.split(",")):
                run(name, df, args.repeats, f, setting, args.iterations, args.reference)


if __name__ == "__main__":
    main()
