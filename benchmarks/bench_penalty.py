"""Per-row ALS penalty (frequency scaling) against rusket's one global penalty: ranking quality.

    .venv/bin/python benchmarks/bench_penalty.py            # 4 sets x 3 seeds x 8 variants
    .venv/bin/python benchmarks/bench_penalty.py --quick    # shop2k, seed 0, 2 variants (seconds)
    .venv/bin/python benchmarks/bench_penalty.py --sets shop20k,ml100k --seeds 0,1
    .venv/bin/python benchmarks/bench_penalty.py --variants rusket,nu0.5:1,nu1:1

What it measures: whether giving every customer and every article its own L2 penalty, growing
with its number of training pairs,

    lambda_r = lambda0 * max(n_r, 1) ** nu,

ranks better (nDCG@10, recall@10) than rusket's ``regularization="auto"``: one penalty
``3 * mean(c)`` for all rows (``rusket.als._penalty``). ``lambda0`` is shared by both sides and
set automatically: ``3 * mean(c)`` over the mean of ``max(n_r, 1) ** nu`` on the denser side
(the side with more pairs per row, usually the articles), so an average row of that side gets
today's penalty. ``nu = 0`` is today's global penalty; ``nu = 1`` is Spark MLlib's ALS-WR
objective with ``regParam = rusket._spark_fit.auto_reg_param`` (what ``rusket.spark.fit_als``
passes); ``nu = 0.5`` is in between. Variants (``--variants``, comma-separated):

* ``pop``: ``rusket.Popularity``;
* ``rusket``: ``rusket.ALS(factors=32, iterations=10, alpha=40, seed=s, solver="cholesky")``,
  the global automatic penalty solved exactly by the Rust core;
* ``nu{nu}:{k}``: the numpy solver below with ``lambda0`` times ``k``. Defaults: ``nu0:0.6``,
  ``nu0:1.6`` (``nu0:1`` is ``rusket``), ``nu0.5:0.6``, ``nu0.5:1``, ``nu0.5:1.6`` and
  ``nu1:1`` (MLlib's objective at rusket's automatic scale).

Every model has 32 factors, 10 iterations (users, then articles), the confidence
``c = 1 + 40 log(1 + amount)`` of rusket's defaults and rusket's start (``|N(0, 1)| * 0.01``
for the articles from ``numpy.random.default_rng(seed)``; the customers are solved first).
Scoring is the same for all: ``rusket.evaluation.evaluate(model, test, ..., k=10)`` (items
bought in training are neither ranked nor relevant); the numpy factors are put into a
``rusket.ALS`` shell for it.

The per-row solver here is a slow numpy reference, not a proposal: the Rust solver takes one
global penalty. It is exact (one dense f x f solve per row, batched) and is checked first
against ``rusket.ALS(solver="cholesky")`` at ``nu = 0`` from the same start, on rusket's own
confidences of a small log (``make_purchases(2_000, 500, 20_000, seed=0)``, time split): the
relative difference of the training losses is printed and must stay under 1e-6.

Data sets (``--sets``; the seed ``s`` makes a new synthetic log or a new split):

* ``shop2k``, ``shop20k``, ``shop50k``: ``rusket.datasets.make_purchases`` with 2k / 20k / 50k
  customers, 800 / 4k / 8k articles, 40k / 400k / 1M lines, ``seed=s``, split by time
  (``time_split(lines, "order_date", test_size=0.2)``), ``sales_amount`` as the amount;
* ``ml100k``: MovieLens-100k (``benchmarks/datasets.py``), the rating as the amount, split per
  customer (``train_test_split(df, "customer_id", "article_id", 0.2, seed=s)``).

Output: per set, each variant's mean nDCG@10 and recall@10 over the seeds with their min..max,
and the paired per-seed difference to ``rusket`` (mean [min..max]). One thread everywhere
(BLAS and rusket); a full run takes about 15 minutes on one core, most of it shop50k.
"""

from __future__ import annotations

import os

# One thread, set before numpy loads its BLAS.
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["OPENBLAS_NUM_THREADS"] = "1"
os.environ["MKL_NUM_THREADS"] = "1"

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

import rusket
from rusket._model import _Fitted
from rusket._spark_fit import auto_reg_param
from rusket.als import _initial_factors, _penalty
from rusket.evaluation import evaluate, time_split, train_test_split
from rusket.interactions import Interactions

sys.path.insert(0, str(Path(__file__).resolve().parent))
import datasets

COLS = ("customer_id", "article_id", "sales_amount")
FACTORS, ITERATIONS, ALPHA = 32, 10, 40.0
SHOPS = {
    "shop2k": (2_000, 800, 40_000),
    "shop20k": (20_000, 4_000, 400_000),
    "shop50k": (50_000, 8_000, 1_000_000),
}
SETS = (*SHOPS, "ml100k")
VARIANTS = (
    "pop",
    "rusket",
    "nu0:0.6",
    "nu0:1.6",
    "nu0.5:0.6",
    "nu0.5:1",
    "nu0.5:1.6",
    "nu1:1",
)
QUICK_VARIANTS = ("rusket", "nu0.5:1")
#: rows per batch of dense f x f systems (8192 x 32 x 32 float64 = 64 MiB)
CHUNK = 8192


# --- the exact per-row-penalty ALS (numpy reference) -------------------------------------------


def solve_side(C: sp.csr_matrix, Y: np.ndarray, lam: np.ndarray) -> np.ndarray:
    """Exact least-squares factors of every row of ``C`` against the fixed factors ``Y``.

    Row ``r`` (confidences ``c_rj`` on its observed columns, preference 1 there, confidence 1
    and preference 0 elsewhere) solves
    ``(Y^T Y + sum_j (c_rj - 1) y_j y_j^T + lam_r I) x_r = sum_j c_rj y_j``.
    The rank-one sums of a batch of rows are one sparse product with the row-wise outer
    products ``y_j y_j^T`` flattened to ``f * f`` columns.
    """
    n, f = C.shape[0], Y.shape[1]
    gram = Y.T @ Y
    extra = C.copy()
    extra.data -= 1.0
    outer = (Y[:, :, None] * Y[:, None, :]).reshape(Y.shape[0], f * f)
    rhs = np.asarray(C @ Y)
    out = np.empty((n, f))
    diag = np.arange(f)
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        A = np.asarray(extra[start:stop] @ outer).reshape(stop - start, f, f)
        A += gram
        A[:, diag, diag] += lam[start:stop, None]
        out[start:stop] = np.linalg.solve(A, rhs[start:stop, :, None])[..., 0]
    return out


def loss(
    C: sp.csr_matrix, X: np.ndarray, Y: np.ndarray, lam_u: np.ndarray, lam_i: np.ndarray
) -> float:
    """``sum_ui c_ui (p_ui - x_u . y_i)^2 + sum_u lam_u |x_u|^2 + sum_i lam_i |y_i|^2``.

    The sum over all pairs of ``s_ui^2`` is ``sum((X^T X) * (Y^T Y))``; observed pairs add
    ``c (1 - s)^2 - s^2``.
    """
    coo = C.tocoo()
    s = np.einsum("ij,ij->i", X[coo.row], Y[coo.col])
    every_pair = float(np.sum((X.T @ X) * (Y.T @ Y)))
    observed = float(np.sum(coo.data * (1.0 - s) ** 2 - s**2))
    penalty = float(lam_u @ np.sum(X * X, 1) + lam_i @ np.sum(Y * Y, 1))
    return every_pair + observed + penalty


def fit(
    C: sp.csr_matrix, lam_u: np.ndarray, lam_i: np.ndarray, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Users then items for ``ITERATIONS`` sweeps, from rusket's start for ``seed``."""
    # rusket's start: the articles drawn from the seed; the customers are solved from them first.
    Y = _initial_factors(np.random.default_rng(seed), C.shape[1], FACTORS).astype(np.float64)
    Ct = C.T.tocsr()
    for _ in range(ITERATIONS):
        X = solve_side(C, Y, lam_u)
        Y = solve_side(Ct, X, lam_i)
    return X, Y


def row_penalties(C: sp.csr_matrix, nu: float, k: float) -> tuple[np.ndarray, np.ndarray]:
    """``lambda_r = k * lambda0 * max(n_r, 1) ** nu`` for the users and the items of ``C``.

    ``lambda0 = 3 * mean(c) / mean(max(n_r, 1) ** nu)`` over the denser side's rows: at
    ``nu = 0`` every row gets rusket's automatic penalty, at ``nu = 1`` this is MLlib's ALS-WR
    with ``regParam = auto_reg_param``.
    """
    n_users, n_items = C.shape
    weight_u = np.maximum(np.diff(C.indptr), 1).astype(np.float64) ** nu
    n_i = np.bincount(C.indices, minlength=n_items)
    weight_i = np.maximum(n_i, 1).astype(np.float64) ** nu
    denser = weight_i if n_users >= n_items else weight_u  # more pairs per row
    lam0 = k * _penalty("auto", C.data) / float(np.mean(denser))
    return lam0 * weight_u, lam0 * weight_i


# --- data, models, the check --------------------------------------------------------------------


def load(name: str, seed: int) -> tuple[Any, Any]:
    if name in SHOPS:
        customers, articles, lines = SHOPS[name]
        df = rusket.datasets.make_purchases(
            n_customers=customers, n_articles=articles, n_lines=lines, seed=seed
        )
        return time_split(df, "order_date", test_size=0.2)
    return train_test_split(datasets.movielens_100k(), *COLS[:2], test_size=0.2, seed=seed)


def confidences(ratings: sp.csr_matrix) -> sp.csr_matrix:
    """rusket's default confidence ``1 + alpha * log(1 + r)``, in float64."""
    C = sp.csr_matrix(
        (1.0 + ALPHA * np.log1p(ratings.data.astype(np.float64)), ratings.indices, ratings.indptr),
        shape=ratings.shape,
    )
    C.eliminate_zeros()
    C.sort_indices()
    return C


def rusket_als(seed: int, nu: float = 0.0) -> rusket.ALS:
    return rusket.ALS(
        factors=FACTORS,
        iterations=ITERATIONS,
        alpha=ALPHA,
        seed=seed,
        solver="cholesky",
        num_threads=1,
        regularization_exponent=nu,
    )


def check_against_rusket() -> None:
    """The numpy solver against rusket's exact solver, same data and start, at ``nu = 0`` (one
    penalty) and ``nu = 0.5`` (rusket's per-row penalty, its default since it was built)."""
    df = rusket.datasets.make_purchases(n_customers=2_000, n_articles=500, n_lines=20_000, seed=0)
    train, _ = time_split(df, "order_date", test_size=0.2)
    for nu in (0.0, 0.5):
        model = rusket_als(0, nu).from_transactions(train, *COLS)
        state = model._fitted_state()
        C = sp.csr_matrix(state.seen, dtype=np.float64)  # the confidences rusket trained on
        lam_u, lam_i = row_penalties(C, nu, 1.0)
        n_u = np.maximum(np.diff(C.indptr), 1)
        assert np.allclose(lam_u, model.regularization_ * n_u**nu, rtol=1e-9, atol=0.0)
        if nu == 0.0:
            # nu = 1 is MLlib's objective with rusket's regParam (every row here has pairs)
            wr_u, wr_i = row_penalties(C, 1.0, 1.0)
            reg = auto_reg_param(C.data, *C.shape)
            assert np.allclose(wr_u, reg * np.diff(C.indptr), rtol=1e-9)
            assert np.allclose(wr_i, reg * np.bincount(C.indices, minlength=C.shape[1]), rtol=1e-9)
        X, Y = fit(C, lam_u, lam_i, seed=0)
        ours = loss(C, X, Y, lam_u, lam_i)
        theirs = loss(
            C,
            state.user_factors.astype(np.float64),
            state.item_factors.astype(np.float64),
            lam_u,
            lam_i,
        )
        rel = (ours - theirs) / theirs
        print(
            f"check: numpy per-row ALS at nu={nu} vs rusket.ALS(solver='cholesky', "
            f"regularization_exponent={nu}), {C.shape[0]} x {C.shape[1]}, {C.nnz} pairs, lambda "
            f"{model.regularization_:.4g}: loss {ours:.10g} vs {theirs:.10g}, relative difference "
            f"{rel:+.2e}; max |user factor difference| "
            f"{np.abs(X - state.user_factors).max():.2e} (max |factor| {np.abs(X).max():.2e})"
        )
        assert abs(rel) < 1e-6, f"the numpy solver does not match rusket: relative loss diff {rel}"


def parse_variant(variant: str) -> tuple[float, float]:
    """``"nu0.5:1.6"`` -> ``(0.5, 1.6)``."""
    try:
        nu, k = variant.removeprefix("nu").split(":")
        return float(nu), float(k)
    except ValueError:
        raise ValueError(
            f"unknown variant {variant!r}: use pop, rusket or nu<nu>:<multiplier> (e.g. nu0.5:1)"
        ) from None


def run_variant(
    variant: str, train: Any, inter: Interactions, C: sp.csr_matrix, seed: int
) -> tuple[Any, str]:
    """A fitted model for ``variant`` and a note on its penalties."""
    if variant == "pop":
        pop = rusket.Popularity.from_transactions(train, *COLS)
        pop.num_threads = 1  # scoring reads it like ALS's parameter (default: all cores)
        return pop, ""
    if variant == "rusket":
        model = rusket_als(seed).from_transactions(train, *COLS)
        return model, f"lambda {model.regularization_:.4g}"
    lam_u, lam_i = row_penalties(C, *parse_variant(variant))
    X, Y = fit(C, lam_u, lam_i, seed)
    shell = rusket.ALS(factors=FACTORS, iterations=ITERATIONS, seed=seed, num_threads=1)
    shell._state = _Fitted.build(
        X.astype(np.float32),
        Y.astype(np.float32),
        inter.user_labels,
        inter.item_labels,
        C.astype(np.float32),
    )
    note = (
        f"lambda users {lam_u.min():.4g}..{lam_u.max():.4g} (mean {lam_u.mean():.4g}), "
        f"items {lam_i.min():.4g}..{lam_i.max():.4g} (mean {lam_i.mean():.4g})"
    )
    return shell, note


# --- report -------------------------------------------------------------------------------------


def spread(values: list[float]) -> str:
    return f"{np.mean(values):.4f} [{min(values):.4f}..{max(values):.4f}]"


def delta(values: list[float]) -> str:
    return f"{np.mean(values):+.4f} [{min(values):+.4f}..{max(values):+.4f}]"


def report(name: str, scores: dict[str, dict[int, tuple[float, float]]]) -> None:
    base = scores.get("rusket", {})
    seeds = sorted({s for per_seed in scores.values() for s in per_seed})
    print(f"\n{name}: mean [min..max] over seeds {','.join(map(str, seeds))}; d = paired per-seed")
    print("difference to rusket (mean [min..max])")
    head = (
        f"{'variant':10s} {'nDCG@10':>24s} {'recall@10':>24s} "
        f"{'d nDCG@10':>26s} {'d recall@10':>26s}"
    )
    print(head)
    print("-" * len(head))
    for variant, per_seed in scores.items():
        nd = [per_seed[s][0] for s in per_seed]
        rc = [per_seed[s][1] for s in per_seed]
        paired = [s for s in per_seed if s in base]
        d_nd = delta([per_seed[s][0] - base[s][0] for s in paired]) if paired else ""
        d_rc = delta([per_seed[s][1] - base[s][1] for s in paired]) if paired else ""
        print(f"{variant:10s} {spread(nd):>24s} {spread(rc):>24s} {d_nd:>26s} {d_rc:>26s}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="shop2k, seed 0, two variants")
    parser.add_argument("--sets", default=",".join(SETS), help=f"comma-separated, of {SETS}")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated integers")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated")
    args = parser.parse_args()
    if args.quick:
        sets, seeds, variants = ["shop2k"], [0], list(QUICK_VARIANTS)
    else:
        sets = args.sets.split(",")
        seeds = [int(s) for s in args.seeds.split(",")]
        variants = args.variants.split(",")
    for name in sets:
        if name not in SETS:
            raise ValueError(f"unknown set {name!r} in --sets: use some of {', '.join(SETS)}")
    for variant in variants:
        if variant not in ("pop", "rusket"):
            parse_variant(variant)
    print(
        f"rusket {rusket.__version__}, numpy {np.__version__}; 1 thread; {FACTORS} factors, "
        f"{ITERATIONS} iterations, c = 1 + {ALPHA:g} log(1 + amount); nDCG@10 / recall@10"
    )
    check_against_rusket()
    for name in sets:
        scores: dict[str, dict[int, tuple[float, float]]] = {v: {} for v in variants}
        for seed in seeds:
            train, test = load(name, seed)
            inter = Interactions.from_frame(train, *COLS)
            C = confidences(inter.matrix)
            print(f"{name} seed {seed}: {C.shape[0]} x {C.shape[1]}, {C.nnz} pairs", flush=True)
            for variant in variants:
                start = time.perf_counter()
                model, note = run_variant(variant, train, inter, C, seed)
                r = evaluate(model, test, *COLS[:2], k=10)
                scores[variant][seed] = (r["ndcg@10"], r["recall@10"])
                print(
                    f"  {variant:10s} nDCG@10 {r['ndcg@10']:.4f} recall@10 {r['recall@10']:.4f} "
                    f"({r['users']} customers, {time.perf_counter() - start:.1f} s) {note}",
                    flush=True,
                )
        report(name, scores)


if __name__ == "__main__":
    main()
