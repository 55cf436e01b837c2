"""Ranking quality: rusket's ALS (defaults, solvers, tuned) vs implicit and popularity.

    .venv/bin/python benchmarks/bench_quality.py            # 4 data sets x 5 seeds (~8-18 min)
    .venv/bin/python benchmarks/bench_quality.py --quick    # 1 seed, small sets (~1-2 min)
    .venv/bin/python benchmarks/bench_quality.py --sets movielens --seeds 10

Data sets (every seed ``s`` is a new split, or a new synthetic log):

* MovieLens-100k, the rating as the amount, per-customer 80/20 split
  (``rusket.evaluation.train_test_split(df, ..., 0.2, seed=s)``);
* the same split with every rating counted as 1 (``rating_col=None``);
* ``rusket.datasets.make_purchases(seed=s)`` (2,000 customers x 500 articles x 20k lines) and
  ``make_purchases(20_000, 2_000, 200_000, seed=s)``, split by time
  (``time_split(df, "order_date", 0.2)``), the raw ``sales_amount`` as the rating.

Every model is scored by the same code, ``rusket.evaluation.evaluate(model, test, ..., k=10)``
(nDCG@10 and recall@10; items bought in training are excluded from the ranking and from the
relevant set; test customers unknown to the model are not scored). implicit's rankings come from
its own ``recommend(..., filter_already_liked_items=True)``: the small adapter ``ImplicitRanker``
below gives ``evaluate`` the labels, the training items and a ``batch_recommend`` that calls it.

Models (model seed ``42 + s``; for ``s = 0`` row "defaults" is exactly the call
``rusket.ALS(factors=64, iterations=15, alpha=40.0, seed=42)``):

* rusket defaults: ``confidence="log"`` (c = 1 + alpha log(1 + r)), alpha=40,
  ``regularization="auto"`` with ``regularization_exponent=0.5`` (row r's penalty
  ``lambda * max(n_r, 1) ** 0.5``), the default CG (run to the tolerance ``cg_tol``, at most
  ``cg_steps`` steps; both printed in the header); the same with ``solver="cholesky"`` (exact)
  and with the old fixed 3-step CG (``cg_steps=3, cg_tol=0``);
* "one penalty": the same with ``regularization_exponent=0`` (3 x mean observed c for every
  row: implicit's objective, and rusket's default before the per-row penalty);
* the same three solvers at the classic settings: ``confidence="linear"`` (c = 1 + 40 r),
  ``regularization=0.01``, one penalty;
* implicit 0.7.3 ``AlternatingLeastSquares(factors=64, iterations=15, alpha=40,
  regularization=0.01)``, CG (3 steps) and exact (``use_cg=False``): its confidence is
  c = 40 r, not 1 + 40 r;
* implicit fed rusket's default confidences: the matrix of ``1 + 40 log(1 + r)`` with
  ``alpha=1`` (so c is exactly rusket's) and rusket's resolved ``regularization_`` (the same
  lambda): the same objective as rusket's "one penalty" rows;
* ``rusket.Popularity`` (the number of buyers);
* ``rusket.ALS.tune(train, ..., n_trials=24, seed=s)``: tuned on the training part only (its own
  inner split: by time for the purchase logs, per customer for MovieLens), its ``best_model``
  (refitted on all of the training part) scored on the test part.

``loss/exact`` is ``model.training_loss()`` over the exact solver's at the same settings and seed.
``x pop`` is the mean over the seeds of the per-seed ratio to popularity (its minimum in
brackets). Times are medians over the seeds of one fit (rusket: ``from_transactions`` from the
frame; implicit: ``fit`` on a prepared CSR; ``tune``: the whole search and refit), 2 threads.
"Equal settings" pairs (and defaults vs one penalty) are compared by the paired nDCG@10
difference over the seeds with a 95% t-interval: ``BELOW`` when the whole interval is under
zero.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit asks for it; BLAS threads off

import argparse
import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import scipy.stats

sys.path.insert(0, str(Path(__file__).parent))
import datasets

import rusket
from rusket.datasets import make_purchases
from rusket.evaluation import evaluate, time_split, train_test_split

THREADS = 2
K = 10
USER, ITEM = "customer_id", "article_id"
FACTORS, ITERATIONS, ALPHA, CLASSIC_REG = 64, 15, 40.0, 0.01
N_TRIALS = 24
TUNE_ROW = "rusket ALS.tune"


# --- implicit behind the interface evaluate() reads -------------------------------------------


class _Seen:
    """What ``evaluate`` reads of a fitted model's state: labels and the training items."""

    def __init__(self, user_labels: np.ndarray, item_labels: np.ndarray, seen: sp.csr_matrix):
        self.user_labels, self.item_labels, self.seen = user_labels, item_labels, seen


class ImplicitRanker:
    """A fitted implicit model seen through ``evaluate``'s model interface: the top-k lists are
    implicit's own ``recommend(..., filter_already_liked_items=True)``."""

    def __init__(self, model: Any, train: sp.csr_matrix, users: np.ndarray, items: np.ndarray):
        self.model, self.train = model, train
        self.user_labels, self.item_labels = users, items
        self._state = _Seen(users, items, train)

    def _fitted_state(self) -> _Seen:
        return self._state

    def batch_recommend(self, n: int, exclude_seen: bool, users: Any, format: str):
        assert exclude_seen and format == "numpy"
        rows = np.searchsorted(self.user_labels, users)
        ids, scores = self.model.recommend(
            rows, self.train[rows], N=n, filter_already_liked_items=True
        )
        ids, scores = np.asarray(ids), np.asarray(scores, dtype=np.float64)
        pad = (ids < 0) | ~np.isfinite(scores)
        labels = self.item_labels[np.where(pad, 0, ids)]
        labels[pad] = -1
        scores[pad] = np.nan
        return labels, scores


def ratings_matrix(train: pd.DataFrame, rating: str | None):
    """Users x items CSR of the summed ratings (1 per line without a rating), sorted labels."""
    users, u = np.unique(train[USER].to_numpy(), return_inverse=True)
    items, i = np.unique(train[ITEM].to_numpy(), return_inverse=True)
    vals = np.ones(len(train)) if rating is None else train[rating].to_numpy(np.float64)
    m = sp.csr_matrix((vals, (u, i)), shape=(len(users), len(items)))
    m.sum_duplicates()
    m.eliminate_zeros()
    return m, users, items


def fit_implicit(m: sp.csr_matrix, seed: int, alpha: float, reg: float, use_cg: bool):
    from implicit.cpu.als import AlternatingLeastSquares

    model = AlternatingLeastSquares(
        factors=FACTORS,
        regularization=reg,
        alpha=alpha,
        iterations=ITERATIONS,
        use_cg=use_cg,
        random_state=seed,
        num_threads=THREADS,
        calculate_training_loss=False,
    )
    t = time.perf_counter()
    model.fit(m, show_progress=False)
    return model, time.perf_counter() - t


# --- data sets ---------------------------------------------------------------------------------


def movielens_splits(seed: int, counts: bool):
    df = movielens_100k()
    train, test = train_test_split(df, USER, ITEM, test_size=0.2, seed=seed)
    return train, test, (None if counts else "sales_amount"), None


_ML: list[pd.DataFrame] = []


def movielens_100k() -> pd.DataFrame:
    if not _ML:
        _ML.append(datasets.movielens_100k())
    return _ML[0]


def purchases_splits(seed: int, n_customers: int, n_articles: int, n_lines: int):
    df = make_purchases(n_customers, n_articles, n_lines, seed=seed)
    train, test = time_split(df, "order_date", 0.2)
    return train, test, "sales_amount", "order_date"


DATASETS = {
    "MovieLens-100k, ratings": lambda s: movielens_splits(s, counts=False),
    "MovieLens-100k, counts (all ones)": lambda s: movielens_splits(s, counts=True),
    "make_purchases 2,000 x 500 x 20k": lambda s: purchases_splits(s, 2_000, 500, 20_000),
    "make_purchases 20,000 x 2,000 x 200k": lambda s: purchases_splits(s, 20_000, 2_000, 200_000),
}
QUICK = ("MovieLens-100k, ratings", "MovieLens-100k, counts (all ones)")
QUICK += ("make_purchases 2,000 x 500 x 20k",)
REAL = QUICK[:2]


# --- one split ---------------------------------------------------------------------------------

DEFAULTS = {}  # rusket's defaults: log confidence, alpha=40, "auto" penalty, exponent 0.5, CG
# The defaults with one penalty for every row (regularization_exponent=0): implicit's objective.
ONE_PENALTY = {"regularization_exponent": 0.0}
CLASSIC = {"confidence": "linear", "regularization": CLASSIC_REG, "regularization_exponent": 0.0}
SETTINGS = {"defaults": DEFAULTS, "one penalty": ONE_PENALTY, "classic": CLASSIC}
SOLVERS = {
    "cg (default)": {},
    "exact": {"solver": "cholesky"},
    "cg 3 steps": {"cg_steps": 3, "cg_tol": 0.0},
}
ROWS = [
    *(f"rusket {setting}, {s}" for setting in SETTINGS for s in SOLVERS),
    "implicit classic, cg 3 steps",
    "implicit classic, exact",
    "implicit fed log conf., cg 3 steps",
    "implicit fed log conf., exact",
    "popularity",
    TUNE_ROW,
]
# Equal settings: (rusket row, implicit row).
PAIRS = [
    ("rusket classic, exact", "implicit classic, exact"),
    ("rusket classic, cg 3 steps", "implicit classic, cg 3 steps"),
    ("rusket classic, cg (default)", "implicit classic, cg 3 steps"),
    ("rusket one penalty, exact", "implicit fed log conf., exact"),
    ("rusket one penalty, cg 3 steps", "implicit fed log conf., cg 3 steps"),
    ("rusket one penalty, cg (default)", "implicit fed log conf., cg 3 steps"),
    # What the per-row penalty (exponent 0.5) adds over one penalty, same solver.
    ("rusket defaults, cg (default)", "rusket one penalty, cg (default)"),
    ("rusket defaults, exact", "rusket one penalty, exact"),
]
#: The pairs against implicit (the rest compare rusket's own settings).
IMPLICIT_PAIRS = [pair for pair in PAIRS if pair[1].startswith("implicit")]


def run_split(train, test, rating, time_col, s: int, n_trials: int) -> dict[str, dict]:
    out: dict[str, dict] = {}

    def score(name: str, model: Any, seconds: float, **extra: Any) -> None:
        r = evaluate(model, test, USER, ITEM, k=K)
        out[name] = {"ndcg": r[f"ndcg@{K}"], "recall": r[f"recall@{K}"], "time": seconds, **extra}
        out[name]["users"] = r["users"]

    seed = 42 + s
    for setting, params in SETTINGS.items():
        fitted = {}
        for solver, sp_ in SOLVERS.items():
            als = rusket.ALS(
                factors=FACTORS,
                iterations=ITERATIONS,
                alpha=ALPHA,
                seed=seed,
                num_threads=THREADS,
                **params,
                **sp_,
            )
            t = time.perf_counter()
            als.from_transactions(train, USER, ITEM, rating)
            fitted[solver] = (als, time.perf_counter() - t)
        exact_loss = fitted["exact"][0].training_loss()
        for solver, (als, secs) in fitted.items():
            score(f"rusket {setting}, {solver}", als, secs, loss=als.training_loss() / exact_loss)
        if setting == "one penalty":
            penalty = fitted["exact"][0].regularization_

    m, users, items = ratings_matrix(train, rating)
    m32 = m.astype(np.float32)
    log_conf = m.copy()
    log_conf.data = 1.0 + ALPHA * np.log1p(m.data)  # rusket's default confidence (epsilon 1)
    log_conf = log_conf.astype(np.float32)
    for name, mat, alpha, reg in (
        ("implicit classic", m32, ALPHA, CLASSIC_REG),
        ("implicit fed log conf.", log_conf, 1.0, penalty),
    ):
        for solver, use_cg in (("cg 3 steps", True), ("exact", False)):
            model, secs = fit_implicit(mat, seed, alpha, reg, use_cg)
            score(f"{name}, {solver}", ImplicitRanker(model, m32, users, items), secs)

    t = time.perf_counter()
    pop = rusket.Popularity.from_transactions(train, USER, ITEM, rating)
    score("popularity", pop, time.perf_counter() - t)

    t = time.perf_counter()
    tuned = rusket.ALS.tune(
        train, USER, ITEM, rating, time_col=time_col, n_trials=n_trials, seed=s, num_threads=THREADS
    )
    bp = tuned.best_params
    reg = bp["regularization"]
    desc = (
        f"f={bp['factors']} {bp['confidence']} alpha={bp['alpha']:.3g} "
        f"reg={reg if isinstance(reg, str) else f'{reg:.3g}'} nu={bp['regularization_exponent']} "
        f"it={bp['iterations']}"
    )
    score(TUNE_ROW, tuned.best_model, time.perf_counter() - t)
    out[TUNE_ROW]["params"] = desc
    out["_shape"] = {"users": len(users), "items": len(items), "pairs": m.nnz}
    return out


# --- report ------------------------------------------------------------------------------------


def _ms(xs: list[float]) -> str:
    if len(xs) < 2:
        return f"{xs[0]:.4f}"
    return f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs):.4f}"


def _ratio(xs: list[float]) -> str:
    if len(xs) < 2:
        return f"{xs[0]:.2f}x"
    return f"{statistics.mean(xs):.2f}x (min {min(xs):.2f})"


def report(name: str, runs: list[dict[str, dict]], n_trials: int) -> dict[str, Any]:
    shape = runs[0]["_shape"]
    print(
        f"\n== {name}: {len(runs)} seed(s); split 0: {shape['users']:,} customers x "
        f"{shape['items']:,} articles, {shape['pairs']:,} train pairs, "
        f"{runs[0]['popularity']['users']:,} test customers scored"
    )
    header = (
        f"  {'model':<36} {'nDCG@10':>17} {'x pop':>16} {'recall@10':>17} {'x pop':>16} "
        f"{'loss/exact':>10} {'fit s':>7}"
    )
    print(header)
    print("  " + "-" * (len(header) - 2))
    summary: dict[str, Any] = {}
    for row in ROWS:
        nd = [r[row]["ndcg"] for r in runs]
        rc = [r[row]["recall"] for r in runs]
        nd_ratio = [r[row]["ndcg"] / r["popularity"]["ndcg"] for r in runs]
        rc_ratio = [r[row]["recall"] / r["popularity"]["recall"] for r in runs]
        losses = [r[row]["loss"] for r in runs if "loss" in r[row]]
        loss = f"{statistics.mean(losses):.4f}" if losses else ""
        secs = statistics.median(r[row]["time"] for r in runs)
        label = f"{row} ({n_trials} trials)" if row == TUNE_ROW else row
        print(
            f"  {label:<36} {_ms(nd):>17} {_ratio(nd_ratio):>16} {_ms(rc):>17} "
            f"{_ratio(rc_ratio):>16} {loss:>10} {secs:>7.2f}"
        )
        summary[row] = {"ndcg": nd, "ratio": nd_ratio}
    tuned = [r[TUNE_ROW]["params"] for r in runs]
    print("  tuned: " + " | ".join(tuned))
    print("  nDCG@10 differences (paired over seeds, 95% interval): equal settings rusket -")
    print("  implicit, then the per-row penalty (defaults) - one penalty:")
    verdicts = []
    for a, b in PAIRS:
        d = [r[a]["ndcg"] - r[b]["ndcg"] for r in runs]
        mean = statistics.mean(d)
        if len(d) < 2:
            half, verdict = math.nan, "one seed: no verdict"
        else:
            half = scipy.stats.t.ppf(0.975, len(d) - 1) * statistics.stdev(d) / math.sqrt(len(d))
            verdict = "BELOW" if mean + half < 0 else ("above" if mean - half > 0 else "tie")
        if (a, b) in IMPLICIT_PAIRS:
            verdicts.append(verdict)
        print(f"    {a:<32} vs {b:<36} {mean:+.4f} ± {half:.4f}  {verdict}")
    summary["_verdicts"] = verdicts
    return summary


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="one seed, the small data sets")
    ap.add_argument("--seeds", type=int, default=None, help="seeds per data set (default 5)")
    ap.add_argument("--trials", type=int, default=N_TRIALS, help="ALS.tune n_trials")
    ap.add_argument(
        "--sets", default="", help="only the data sets whose name contains this (e.g. MovieLens)"
    )
    args = ap.parse_args()
    n_seeds = args.seeds or (1 if args.quick else 5)
    names = [n for n in (QUICK if args.quick else DATASETS) if args.sets.lower() in n.lower()]
    import implicit

    d = rusket.ALS().get_params()
    print(
        f"rusket {rusket.__version__} (ALS defaults: confidence={d['confidence']!r} "
        f"alpha={d['alpha']} regularization={d['regularization']!r} solver={d['solver']!r} "
        f"cg_steps={d['cg_steps']} cg_tol={d['cg_tol']}), implicit {implicit.__version__}; "
        f"{THREADS} threads; k={K}; seeds 0..{n_seeds - 1} (model seed 42 + s); "
        f"OPENBLAS_NUM_THREADS={os.environ['OPENBLAS_NUM_THREADS']}"
    )
    started = time.perf_counter()
    summaries = {}
    for name in names:
        runs = []
        for s in range(n_seeds):
            train, test, rating, time_col = DATASETS[name](s)
            runs.append(run_split(train, test, rating, time_col, s, args.trials))
        summaries[name] = report(name, runs, args.trials)
        sys.stdout.flush()

    seed_call = "rusket defaults, cg (default)"
    print("\n== targets (nDCG@10 over popularity, every seed)")
    for name, summ in summaries.items():
        real = "real" if name in REAL else "synthetic"
        sc, tn = min(summ[seed_call]["ratio"]), min(summ[TUNE_ROW]["ratio"])
        below = sum(v == "BELOW" for v in summ["_verdicts"])
        print(
            f"  {name:<38} ({real:>9}): defaults >= 1.1x: {'yes' if sc >= 1.1 else 'NO'} "
            f"(min {sc:.2f}x); tune >= 1.5x: {'yes' if tn >= 1.5 else 'NO'} (min {tn:.2f}x); "
            f"pairs below implicit: {below} of {len(IMPLICIT_PAIRS)}"
        )
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
