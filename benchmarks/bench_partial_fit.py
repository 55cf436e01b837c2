"""How far ALS.partial_fit drifts from a full refit, and what it saves.

    .venv/bin/python benchmarks/bench_partial_fit.py              # 20k customers, 3 seeds
    .venv/bin/python benchmarks/bench_partial_fit.py --quick      # 2k customers, 1 seed

A year of ``rusket.datasets.make_purchases`` order lines (the raw ``sales_amount`` as the rating)
is cut by time: the first 60% of the lines (``--base``) train a base model (rusket's defaults),
the lines up to 80% arrive in ``--batches`` equal batches in date order, the last 20% are the
test period. After all batches are in, every variant is scored on the same test lines with
``rusket.evaluation.evaluate(model, test, ..., k=10)`` (nDCG@10, recall@10) and by its training
loss on the merged history (``model.training_loss()``, relative to the full refit):

* ``refit``: ``from_transactions`` on base + all batches (the reference);
* ``partial_fit (sweeps=1)`` / ``(sweeps=3)``: the base model, then one ``partial_fit`` per batch;
* ``stale``: the base model, never updated (new customers unknown, nothing new seen).

Two test sets: ``old`` is the test lines of customers already in the base period (every variant
knows them: the comparable numbers), ``all`` every test line (customers first seen in a batch are
unknown to the stale model, which is not scored there).

``seconds`` is the refit, the base fit, or all the ``partial_fit`` calls together; ``per_update``
one ``partial_fit`` call. Times are medians over the seeds (on 2 shared cores: read the ratios,
not the absolute numbers).
"""

from __future__ import annotations

import argparse
import itertools
import os
import time

import numpy as np
import pandas as pd

import rusket
from rusket.datasets import make_purchases

COLS = ("customer_id", "article_id", "sales_amount")


def _split(
    df: pd.DataFrame, batches: int, base_share: float
) -> tuple[pd.DataFrame, list[pd.DataFrame], pd.DataFrame]:
    df = df.sort_values("order_date", kind="stable").reset_index(drop=True)
    n = len(df)
    base_end, test_start = int(base_share * n), int(0.8 * n)
    # Cut on day boundaries so that a day's lines never straddle two parts.
    days = df["order_date"].to_numpy()
    base_end = int(np.searchsorted(days, days[base_end], side="right"))
    test_start = int(np.searchsorted(days, days[test_start], side="right"))
    base = df.iloc[:base_end]
    edges = np.linspace(base_end, test_start, batches + 1).astype(int)
    parts = [df.iloc[a:b] for a, b in itertools.pairwise(edges) if b > a]
    return base, parts, df.iloc[test_start:]


def run(
    n_customers: int, n_articles: int, n_lines: int, seed: int, batches: int, base_share: float
) -> list[dict]:
    df = make_purchases(n_customers, n_articles, n_lines, seed=seed)
    base, parts, test = _split(df, batches, base_share)
    everything = pd.concat([base, *parts])
    test_old = test[test["customer_id"].isin(base["customer_id"])]
    params = {"seed": 42 + seed, "num_threads": 0}
    rows = []

    def record(name: str, model: rusket.ALS, seconds: float, ref_loss: float | None) -> float:
        loss = model.training_loss()
        m = model.evaluate(test_old, "customer_id", "article_id", k=10)
        a = model.evaluate(test, "customer_id", "article_id", k=10)
        rows.append(
            {
                "seed": seed,
                "variant": name,
                "ndcg@10 old": m["ndcg@10"],
                "recall@10 old": m["recall@10"],
                "ndcg@10 all": a["ndcg@10"] if name != "stale (base only)" else float("nan"),
                "users all": a["users"],
                "loss / refit": loss / ref_loss if ref_loss else 1.0,
                "seconds": seconds,
            }
        )
        return loss

    t = time.perf_counter()
    refit = rusket.ALS(**params).from_transactions(everything, *COLS)
    ref_loss = record("refit (reference)", refit, time.perf_counter() - t, None)

    t = time.perf_counter()
    base_model = rusket.ALS(**params).from_transactions(base, *COLS)
    base_seconds = time.perf_counter() - t
    record("stale (base only)", base_model, base_seconds, None)
    rows[-1]["loss / refit"] = float("nan")  # another history: not comparable

    for sweeps in (1, 3):
        model = rusket.ALS(**params).from_transactions(base, *COLS)
        t = time.perf_counter()
        for part in parts:
            model.partial_fit(part, *COLS, sweeps=sweeps)
        record(
            f"partial_fit x{len(parts)} (sweeps={sweeps})", model, time.perf_counter() - t, ref_loss
        )
        rows[-1]["s/update"] = rows[-1]["seconds"] / len(parts)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--batches", type=int, default=8)
    ap.add_argument("--base", type=float, default=0.6, help="share of the lines in the base fit")
    args = ap.parse_args()
    size = (2_000, 500, 20_000) if args.quick else (20_000, 2_000, 200_000)
    seeds = 1 if args.quick else args.seeds
    print(
        f"make_purchases{size}, {args.base:.0%} base / {0.8 - args.base:.0%} in {args.batches} "
        "batches / 20% test, "
        f"ALS defaults, {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}"
    )
    rows = [
        r
        for s in range(seeds)
        for r in run(*size, seed=s, batches=args.batches, base_share=args.base)
    ]
    table = pd.DataFrame(rows)
    summary = table.groupby("variant", sort=False).agg(
        ndcg_old=("ndcg@10 old", "mean"),
        ndcg_old_sd=("ndcg@10 old", "std"),
        recall_old=("recall@10 old", "mean"),
        ndcg_all=("ndcg@10 all", "mean"),
        loss_ratio=("loss / refit", "mean"),
        seconds=("seconds", "median"),
        per_update=("s/update", "median"),
    )
    with pd.option_context("display.width", 160, "display.float_format", "{:.4f}".format):
        print(table.to_string(index=False))
        print()
        print(summary.to_string())


if __name__ == "__main__":
    main()
