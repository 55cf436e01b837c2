"""Scale: fit ALS on tens of millions of synthetic interactions from a pandas frame (issue 10).

Generates ``--rows`` (customer, article, amount) rows with vectorised numpy: power-law customer
activity (Pareto weights), Zipf article popularity (exponent ``--zipf``), int64 ids (shuffled, not
``0..n-1``), float64 log-normal amounts. Then, in one process, measures each step separately:

* ``fit``: ``rusket.ALS(factors=64, iterations=15, num_threads=0).from_transactions(df,
  "customer_id", "article_id", "sales_amount")``, everything else at its default;
* ``batch_recommend``: ``model.batch_recommend(n=20, users=<--score-users labels>,
  format="pandas")``;
* ``frame -> CSR``: ``Interactions.from_frame`` alone (Arrow conversion, label encoding, COO ->
  CSR with summed duplicates), the fit's first phase, as a breakdown; run last, after the model
  is freed, so it cannot lend the fit pages (skip it with ``--no-breakdown``).

Peak memory: a background thread samples ``VmRSS`` from ``/proc/self/status`` every 50 ms; each
step reports its extra peak, the highest sample during the step less the RSS just before it, next
to the raw arrays' size (rows x (8 + 8 + 8) bytes). Target of issue 10: the fit's extra peak below
3x the raw arrays.

    .venv/bin/python benchmarks/bench_scale.py                      # 50M rows, 1M x 200k
    .venv/bin/python benchmarks/bench_scale.py --rows 5000000 --customers 100000 --articles 20000
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import os
import resource
import threading
import time

import numpy as np
import pandas as pd

import rusket
from rusket.interactions import Interactions

GIB = 1024**3
_LIBC = ctypes.CDLL(ctypes.util.find_library("c"))


def release_freed() -> None:
    """Collect garbage and hand freed heap back to the OS (glibc ``malloc_trim``), so a step's
    baseline RSS does not hide pages freed by the previous step that it would reuse."""
    gc.collect()
    if hasattr(_LIBC, "malloc_trim"):
        _LIBC.malloc_trim(0)


def rss_bytes() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class PeakRSS:
    """Highest VmRSS sampled every ``interval`` seconds while the ``with`` block runs."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_bytes())
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRSS:
        release_freed()
        self.before = rss_bytes()
        self.peak = self.before
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = time.perf_counter() - self.t0
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())
        self.extra = self.peak - self.before


def power_law_codes(
    rng: np.random.Generator, weights: np.ndarray, rows: int, chunk: int
) -> np.ndarray:
    """``rows`` draws of ``0..len(weights)-1`` with probabilities ``weights``, by inverse CDF in
    chunks (memory: the int64 output plus one chunk of uniforms)."""
    cdf = np.cumsum(weights, dtype=np.float64)
    cdf /= cdf[-1]
    out = np.empty(rows, dtype=np.int64)
    for start in range(0, rows, chunk):
        stop = min(start + chunk, rows)
        out[start:stop] = np.searchsorted(cdf, rng.random(stop - start), side="right")
    np.minimum(out, len(weights) - 1, out=out)  # guard against cdf[-1] rounding
    return out


def make_frame(args: argparse.Namespace) -> pd.DataFrame:
    rng = np.random.default_rng(args.seed)
    chunk = 5_000_000
    # Customer activity: Pareto(shape 1.5) weights, heavy-tailed like purchase logs.
    cust_w = rng.pareto(1.5, args.customers) + 1.0
    # Article popularity: Zipf over a random ranking of the articles.
    art_w = 1.0 / np.arange(1, args.articles + 1, dtype=np.float64) ** args.zipf
    art_w = art_w[rng.permutation(args.articles)]
    # Shuffled, non-contiguous int64 ids.
    cust_ids = 10_000_000 + 7 * rng.permutation(args.customers).astype(np.int64)
    art_ids = 500_000_000 + 3 * rng.permutation(args.articles).astype(np.int64)

    customer = power_law_codes(rng, cust_w, args.rows, chunk)
    np.take(cust_ids, customer, out=customer)
    article = power_law_codes(rng, art_w, args.rows, chunk)
    np.take(art_ids, article, out=article)
    amount = np.empty(args.rows, dtype=np.float64)
    for start in range(0, args.rows, chunk):
        stop = min(start + chunk, args.rows)
        amount[start:stop] = np.round(rng.lognormal(3.0, 1.0, stop - start), 2)
    return pd.DataFrame(
        {"customer_id": customer, "article_id": article, "sales_amount": amount}, copy=False
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=50_000_000)
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--articles", type=int, default=200_000)
    ap.add_argument("--iterations", type=int, default=15)
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--score-users", type=int, default=100_000)
    ap.add_argument("--zipf", type=float, default=1.0, help="article popularity exponent")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-breakdown", action="store_true", help="skip the frame -> CSR step")
    args = ap.parse_args()

    raw = args.rows * (8 + 8 + 8)
    print(
        f"rows={args.rows:,} customers={args.customers:,} articles={args.articles:,} "
        f"factors={args.factors} iterations={args.iterations} cpus={os.cpu_count()} "
        f"load={os.getloadavg()[0]:.2f}",
        flush=True,
    )
    with PeakRSS() as gen:
        df = make_frame(args)
    print(
        f"generate: {gen.seconds:.1f} s, extra peak {gen.extra / GIB:.2f} GiB, frame "
        f"{df.memory_usage(index=False).sum() / GIB:.2f} GiB, raw arrays {raw / GIB:.2f} GiB "
        f"({raw / 1e9:.2f} GB)",
        flush=True,
    )
    results = []

    def report(name: str, m: PeakRSS, note: str = "") -> None:
        results.append((name, m.seconds, m.extra))
        print(
            f"{name}: {m.seconds:.1f} s, RSS before {m.before / GIB:.2f} GiB, peak "
            f"{m.peak / GIB:.2f} GiB, extra peak {m.extra / GIB:.2f} GiB = "
            f"{m.extra / raw:.2f}x raw {note}",
            flush=True,
        )

    model = rusket.ALS(factors=args.factors, iterations=args.iterations, num_threads=0)
    with PeakRSS() as m:
        model.from_transactions(df, "customer_id", "article_id", "sales_amount")
    report("fit (from_transactions)", m, f"({len(model.user_labels):,} customers scored later)")

    rng = np.random.default_rng(args.seed + 1)
    k = min(args.score_users, len(model.user_labels))
    users = model.user_labels[rng.choice(len(model.user_labels), k, replace=False)]
    with PeakRSS() as m:
        recs = model.batch_recommend(n=20, users=users, format="pandas")
    report(f"batch_recommend ({k:,} users, n=20)", m, f"({len(recs):,} rows)")

    del recs, model
    if not args.no_breakdown:
        with PeakRSS() as m:
            inter = Interactions.from_frame(df, "customer_id", "article_id", "sales_amount")
        shape, nnz = inter.matrix.shape, inter.matrix.nnz
        report("frame -> CSR", m, f"({shape[0]:,} x {shape[1]:,}, nnz {nnz:,})")
        del inter

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"process ru_maxrss {maxrss / GIB:.2f} GiB", flush=True)
    print("\n| step | rows | time (s) | extra peak RSS (GiB) | ratio to raw arrays |")
    print("|---|---:|---:|---:|---:|")
    for name, seconds, extra in results:
        print(
            f"| {name} | {args.rows:,} | {seconds:.1f} | {extra / GIB:.2f} | {extra / raw:.2f}x |"
        )


if __name__ == "__main__":
    main()
