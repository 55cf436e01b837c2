"""Batch top-n scoring: rusket's exact all-users kernel vs implicit's batched ``recommend``.

Trains implicit's CPU ALS briefly on the synthetic purchase log (200k users x 50k items x 5M rows)
to get realistic factors, then, in the same process, times

* implicit ``model.recommend(all users, user_items, N=20, filter_already_liked_items=True)``;
* ``rusket._core.topk(U, V, 20, exclude_indptr=..., exclude_indices=..., num_threads=2)``;
* numpy ``U @ V.T`` on a sample of users (blocked, into a reused buffer) as the GEMM flop-rate
  reference: the scoring can at best run at GEMM speed, since the product is its whole cost;

and checks that both libraries return the same top-n sets, up to ties.

    .venv/bin/python benchmarks/bench_batch.py            # full size, 3 repeats
    .venv/bin/python benchmarks/bench_batch.py --small    # 20k x 10k x 500k, quick

For numpy's GEMM at full speed on machines that set OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, run it
with both unset (``env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ...``); the kernel OpenBLAS uses
is printed.
"""

from __future__ import annotations

import os

# implicit asks for single-threaded BLAS (it parallelises itself); must precede numpy's import.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import synthetic, to_csr

from rusket import _core


def timed(fn, repeat):
    """(median seconds, all times, last result)."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times, out


def compare_sets(ours, theirs, users, items, rtol=1e-5):
    """Rows whose top-n sets differ, and how many of those are not explained by ties: every item
    in the symmetric difference must score (float64) within ``rtol`` of the row's boundary score
    (the worst score in our list)."""
    a = np.sort(ours, axis=1)
    b = np.sort(np.asarray(theirs, dtype=np.int64), axis=1)
    differ = np.flatnonzero((a != b).any(axis=1))
    unexplained = []
    for u in differ:
        sa, sb = set(ours[u].tolist()), set(theirs[u].tolist())
        sa.discard(-1)
        sb.discard(-1)
        q = users[u].astype(np.float64)
        boundary = float((items[ours[u][ours[u] >= 0]].astype(np.float64) @ q).min())
        diff = np.array(sorted(sa ^ sb), dtype=np.int64)
        s = items[diff].astype(np.float64) @ q
        if len(sa) != len(sb) or not np.all(np.abs(s - boundary) <= rtol * abs(boundary) + 1e-12):
            unexplained.append(int(u))
    return differ, unexplained


def blas_description():
    return ", ".join(
        f"{d['internal_api']} {d.get('version')} {d.get('architecture')} x{d['num_threads']}"
        for d in threadpool_info()
        if d["user_api"] == "blas"
    )


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="20k users x 10k items x 500k rows")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--factors", type=int, default=64)
    ap.add_argument("--iterations", type=int, default=3)
    ap.add_argument("--gemm-users", type=int, default=20_000, help="users in the GEMM sample")
    args = ap.parse_args()

    import implicit
    from implicit.cpu.als import AlternatingLeastSquares

    if args.small:
        df = synthetic(n_users=20_000, n_items=10_000, n_rows=500_000)
    else:
        df = synthetic()
    m, _, _ = to_csr(df)
    m = m.astype(np.float32).tocsr()
    n_users, n_items = m.shape
    print(f"data: {n_users} users x {n_items} items, {m.nnz} non-zeros")
    print(f"implicit {implicit.__version__}; BLAS: {blas_description()}")
    flags = Path("/proc/cpuinfo").read_text().split("flags")[1].split("\n")[0].split()
    print(f"CPU: avx2={'avx2' in flags} fma={'fma' in flags} avx512f={'avx512f' in flags}")

    t0 = time.perf_counter()
    model = AlternatingLeastSquares(
        factors=args.factors,
        iterations=args.iterations,
        random_state=0,
        num_threads=args.threads,
    )
    model.fit(m, show_progress=False)
    print(f"implicit fit ({args.iterations} iterations): {time.perf_counter() - t0:.1f} s")
    users = np.ascontiguousarray(model.user_factors, dtype=np.float32)
    items = np.ascontiguousarray(model.item_factors, dtype=np.float32)
    assert users.shape == (n_users, args.factors), users.shape  # no bias columns on CPU
    assert items.shape == (n_items, args.factors), items.shape
    f = users.shape[1]
    flops = 2.0 * n_users * n_items * f

    userids = np.arange(n_users)
    indptr = m.indptr.astype(np.int64)
    indices = m.indices.astype(np.int32)

    def run_implicit():
        return model.recommend(userids, m, N=args.n, filter_already_liked_items=True)

    def run_rusket():
        return _core.topk(
            users,
            items,
            args.n,
            exclude_indptr=indptr,
            exclude_indices=indices,
            num_threads=args.threads,
        )

    # Interleaved repeats, so that both see the same background load on a shared machine; the
    # speed-up is also reported as the median of the per-repeat ratios.
    times_imp, times_rk = [], []
    for _ in range(args.repeat):
        _, times, (imp_ids, _) = timed(run_implicit, 1)
        times_imp += times
        _, times, (rk_ids, rk_scores) = timed(run_rusket, 1)
        times_rk += times
    t_imp, t_rk = statistics.median(times_imp), statistics.median(times_rk)
    pair_ratio = statistics.median([a / b for a, b in zip(times_imp, times_rk, strict=True)])

    # GEMM reference: a sample of users, blocks of 500 rows into one reused output buffer.
    sample = users[: min(args.gemm_users, n_users)]
    block = 500
    buf = np.empty((block, n_items), dtype=np.float32)

    def gemm():
        for s in range(0, len(sample), block):
            e = min(s + block, len(sample))
            np.matmul(sample[s:e], items.T, out=buf[: e - s])

    with threadpool_limits(limits=args.threads, user_api="blas"):
        gemm_blas = blas_description()
        t_gemm, times_gemm, _ = timed(gemm, args.repeat)
    gemm_gflops = 2.0 * len(sample) * n_items * f / t_gemm / 1e9

    rk_gflops = flops / t_rk / 1e9
    imp_gflops = flops / t_imp / 1e9
    print()
    print(f"top-{args.n} for all {n_users} users, {args.threads} threads, {args.repeat} repeats")
    print(
        f"  implicit recommend : median {t_imp:7.2f} s  ({imp_gflops:5.1f} GFLOP/s)  "
        f"runs {[round(t, 2) for t in times_imp]}"
    )
    print(
        f"  rusket topk        : median {t_rk:7.2f} s  ({rk_gflops:5.1f} GFLOP/s)  "
        f"runs {[round(t, 2) for t in times_rk]}"
    )
    print(
        f"  numpy U @ V.T      : median {t_gemm:7.2f} s on {len(sample)} users "
        f"({gemm_gflops:5.1f} GFLOP/s)  runs {[round(t, 2) for t in times_gemm]}"
        f"\n    GEMM BLAS: {gemm_blas}"
    )
    print(
        f"  speed-up vs implicit     : {t_imp / t_rk:5.2f}x (ratio of medians), "
        f"{pair_ratio:5.2f}x (median of per-repeat ratios)"
    )
    print(f"  fraction of GEMM rate    : {rk_gflops / gemm_gflops:5.2f}")
    differ, unexplained = compare_sets(rk_ids, imp_ids, users, items)
    print(
        f"  rows with different sets : {len(differ)} of {n_users}; "
        f"not explained by ties (1e-5 rel.): {len(unexplained)}"
    )
    assert np.isfinite(rk_scores[:, 0]).all()
    if unexplained:
        print(f"  first unexplained rows: {unexplained[:10]}")
        sys.exit(1)


if __name__ == "__main__":
    main()
