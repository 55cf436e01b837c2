"""Per-call serving latency: rusket vs implicit 0.7 for one customer / one article at a time.

The question of a web shop: one customer's suggestions while the page loads. Trains rusket's
ALS briefly on the synthetic purchase log (20k customers x 50k articles, 64 factors), copies its
factors into an implicit ``AlternatingLeastSquares`` so that both libraries answer from the same
vectors, then times, interleaved call by call on one thread (same customers, same articles):

* ``recommend_items(user, n=10)`` (seen items excluded) vs implicit
  ``recommend(userid, user_items[userid], N=10, filter_already_liked_items=True)``;
* ``similar_items(item, n=10)`` vs implicit ``similar_items(itemid, N=11)`` (implicit returns
  the item itself first; rusket excludes it);
* the fold-in of a 20-article basket (``recommend_basket``) vs implicit
  ``recommend(..., recalculate_user=True)``, when the model has ``recommend_basket``;

and prints the median and p99 per call, the ratio, and whether the answers agree (same items,
up to float32 ties).

    .venv/bin/python benchmarks/bench_serving.py             # 20k x 50k, 2,000 calls each
    .venv/bin/python benchmarks/bench_serving.py --small     # 5k x 10k, quick
"""

from __future__ import annotations

import os

# implicit asks for single-threaded BLAS; must precede numpy's import.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import synthetic

import rusket


def percentile(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs), q))


def interleaved(
    calls: list[tuple[str, Callable[[Any], Any]]], keys: list[Any]
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Per-call wall times and CPU times (seconds, every thread of the process) of each named
    function over ``keys``, the functions called one after the other for every key, so that
    all see the same background load. On a shared machine the wall time includes waiting for
    a core; the CPU time is what the call itself costs."""
    wall: dict[str, list[float]] = {name: [] for name, _ in calls}
    cpu: dict[str, list[float]] = {name: [] for name, _ in calls}
    for k in keys:
        for name, fn in calls:
            c0, t0 = time.process_time(), time.perf_counter()
            fn(k)
            wall[name].append(time.perf_counter() - t0)
            cpu[name].append(time.process_time() - c0)
    return wall, cpu


def report(
    title: str, times: tuple[dict[str, list[float]], dict[str, list[float]]], ours: str, peer: str
) -> None:
    print(f"\n{title}")
    for kind, tt in zip(("wall", "CPU"), times, strict=True):
        for name, ts in tt.items():
            print(
                f"  {kind:<4s} {name:<36s} median {1e3 * statistics.median(ts):7.3f} ms   "
                f"p99 {1e3 * percentile(ts, 99):7.3f} ms"
            )
        ratio = statistics.median(tt[peer]) / statistics.median(tt[ours])
        pair = statistics.median([b / a for a, b in zip(tt[ours], tt[peer], strict=True)])
        print(
            f"  {kind:<4s} speed-up of rusket over implicit: {ratio:5.2f}x (ratio of medians), "
            f"{pair:5.2f}x (median of per-call ratios)"
        )


def same_up_to_ties(
    ours: np.ndarray, theirs: np.ndarray, score: Callable[[np.ndarray], np.ndarray]
) -> bool:
    """The same item sets, or sets that differ only by items scoring (float64) within 1e-5
    (relative) of the last score of ours."""
    a, b = set(ours.tolist()), set(theirs.tolist())
    if a == b:
        return True
    if len(a) != len(b):
        return False
    boundary = float(score(ours).min())
    diff = np.array(sorted(a ^ b))
    return bool(np.all(np.abs(score(diff) - boundary) <= 1e-5 * abs(boundary) + 1e-9))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="5k customers x 10k articles")
    ap.add_argument("--calls", type=int, default=2000, help="calls per method")
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--n", type=int, default=10)
    ap.add_argument("--basket", type=int, default=20, help="articles per fold-in basket")
    ap.add_argument("--batch-repeat", type=int, default=3, help="runs of the batch comparison")
    args = ap.parse_args()

    import implicit
    from implicit.cpu.als import AlternatingLeastSquares
    from threadpoolctl import threadpool_limits

    if args.small:
        df = synthetic(n_users=5_000, n_items=10_000, n_rows=200_000)
    else:
        df = synthetic(n_users=20_000, n_items=50_000, n_rows=1_000_000)
    t0 = time.perf_counter()
    model = rusket.ALS(factors=args.factors, iterations=3, num_threads=0, seed=0)
    model.from_transactions(df, "customer_id", "article_id", "sales_amount")
    fit_s = time.perf_counter() - t0
    model.set_params(num_threads=1)  # serving: one thread per call, like a web worker
    users, items = model.user_labels, model.item_labels
    n_users, n_items = len(users), len(items)
    print(
        f"data: {n_users} customers x {n_items} articles, {len(df)} order lines; "
        f"{args.factors} factors; rusket fit {fit_s:.1f} s; implicit {implicit.__version__}; "
        f"rusket {rusket.__version__}"
    )
    print(f"load average before timing: {os.getloadavg()}")

    # implicit answers from rusket's vectors (user/item ids = rows), so the answers compare.
    state = model._fitted_state()
    seen = state.seen.tocsr()
    peer = AlternatingLeastSquares(factors=args.factors, num_threads=1, random_state=0)
    peer.user_factors = np.array(state.user_factors)
    peer.item_factors = np.array(state.item_factors)
    U = state.user_factors.astype(np.float64)
    V = state.item_factors.astype(np.float64)
    Vn = V / np.maximum(np.linalg.norm(V, axis=1, keepdims=True), 1e-30)

    rng = np.random.default_rng(1)
    rows = rng.integers(0, n_users, args.calls)
    cols = rng.integers(0, n_items, args.calls)
    n = args.n

    with threadpool_limits(limits=1):
        # Warm-up: first calls build caches on both sides.
        for r, c in zip(rows[:20], cols[:20], strict=True):
            model.recommend_items(users[r], n=n)
            peer.recommend(int(r), seen[int(r)], N=n, filter_already_liked_items=True)
            model.similar_items(items[c], n=n)
            peer.similar_items(int(c), N=n + 1)

        times = interleaved(
            [
                ("rusket recommend_items", lambda r: model.recommend_items(users[r], n=n)),
                (
                    "implicit recommend",
                    lambda r: peer.recommend(
                        int(r), seen[int(r)], N=n, filter_already_liked_items=True
                    ),
                ),
            ],
            list(rows),
        )
        report(
            f"recommend, top-{n}, seen items excluded, {args.calls} calls",
            times,
            "rusket recommend_items",
            "implicit recommend",
        )

        times = interleaved(
            [
                ("rusket similar_items", lambda c: model.similar_items(items[c], n=n)),
                ("implicit similar_items", lambda c: peer.similar_items(int(c), N=n + 1)),
            ],
            list(cols),
        )
        report(
            f"similar_items, top-{n}, {args.calls} calls",
            times,
            "rusket similar_items",
            "implicit similar_items",
        )

        # --- fold-in (issue 9, item 2): timed when the model has recommend_basket --------------
        if hasattr(model, "recommend_basket"):
            baskets = [
                rng.choice(n_items, args.basket, replace=False) for _ in range(min(args.calls, 500))
            ]
            basket_csr = [
                __import__("scipy.sparse").sparse.csr_matrix(
                    (
                        np.ones(args.basket, dtype=np.float32),
                        (np.zeros(args.basket, dtype=np.int64), b),
                    ),
                    shape=(1, n_items),
                )
                for b in baskets
            ]
            times = interleaved(
                [
                    (
                        "rusket recommend_basket",
                        lambda k: model.recommend_basket(items[baskets[k]], n=n),
                    ),
                    (
                        "implicit recommend(recalculate_user)",
                        lambda k: peer.recommend(0, basket_csr[k], N=n, recalculate_user=True),
                    ),
                ],
                list(range(len(baskets))),
            )
            report(
                f"fold-in of a {args.basket}-article basket, top-{n}",
                times,
                "rusket recommend_basket",
                "implicit recommend(recalculate_user)",
            )
        else:
            print("\nfold-in: this rusket has no recommend_basket yet (not timed)")

    # --- batch_recommend against today's one-shot kernel (items packed per call) ---------------
    from rusket import _core

    indptr, indices = state.seen_rows()
    model.set_params(num_threads=0)
    batch = interleaved(
        [
            (
                "rusket batch_recommend (cached index)",
                lambda _: model.batch_recommend(n=n, format="numpy"),
            ),
            (
                "_core.topk (packs per call)",
                lambda _: _core.topk(
                    state.user_factors,
                    state.item_factors,
                    n,
                    exclude_indptr=indptr,
                    exclude_indices=indices,
                    num_threads=0,
                ),
            ),
        ],
        list(range(args.batch_repeat)),
    )
    print(
        f"\nbatch_recommend, all {n_users} customers, top-{n}, all cores, {args.batch_repeat} runs"
    )
    for name, ts in batch[0].items():
        print(
            f"  wall {name:<40s} median {statistics.median(ts):7.3f} s  "
            f"runs {[round(t, 3) for t in ts]}"
        )
    model.set_params(num_threads=1)

    # --- answers ---------------------------------------------------------------------------------
    bad_rec = bad_sim = 0
    for r, c in zip(rows[:300], cols[:300], strict=True):
        ours, _ = model.recommend_items(users[r], n=n)
        ours_idx = np.searchsorted(items, ours)
        theirs, _ = peer.recommend(int(r), seen[int(r)], N=n, filter_already_liked_items=True)
        if not same_up_to_ties(ours_idx, np.asarray(theirs), lambda ix, r=r: V[ix] @ U[r]):
            bad_rec += 1
        ours, _ = model.similar_items(items[c], n=n)
        ours_idx = np.searchsorted(items, ours)
        theirs, _ = peer.similar_items(int(c), N=n + 1)
        theirs = np.asarray([t for t in theirs if t != c][:n])
        if not same_up_to_ties(ours_idx, theirs, lambda ix, c=c: Vn[ix] @ Vn[c]):
            bad_sim += 1
    labels, _ = model.batch_recommend(n=n, format="numpy", users=users[rows[:300]])
    same_batch = sum(
        model.recommend_items(users[r], n=n)[0].tolist() == [x for x in row.tolist() if x != -1]
        for r, row in zip(rows[:300], labels, strict=True)
    )
    print(
        f"\nanswers ({len(labels)} calls each): recommend differs from implicit beyond ties "
        f"in {bad_rec}, "
        f"similar_items in {bad_sim}; recommend_items equals its batch_recommend row in "
        f"{same_batch} of {len(labels)}"
    )
    print(f"load average after timing: {os.getloadavg()}")


if __name__ == "__main__":
    main()
