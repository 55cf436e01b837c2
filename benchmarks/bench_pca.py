"""rusket.PCA against scikit-learn's PCA on tall float32 embeddings, in one process.

Data: ``n x d`` float32 with a decaying spectrum (16 latent directions plus isotropic noise), so
that the leading components are well defined and can be compared. For each data set and each
solver we time ``fit`` (``--repeats`` runs, median) and compare ``explained_variance_`` and
``components_`` with a float64 reference (``numpy.linalg.eigh`` of the float64 covariance).

Run (fair BLAS: some machines here set OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, which slow numpy;
unset them for this command only)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE .venv/bin/python benchmarks/bench_pca.py

Options: ``--threads 1`` pins both libraries to one thread (steadier on a shared machine),
``--wide`` adds a 20,000 x 2,000 case where both "auto" solvers are randomized, ``--scale 0.1``
makes a quick run.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.decomposition import PCA as SkPCA

from rusket.pca import PCA

SHAPES = [(1_000_000, 64), (100_000, 256)]


def make_data(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    latent = 16
    scales = 3.0 * 0.8 ** np.arange(latent)
    z = rng.standard_normal((n, latent), dtype=np.float32) * scales.astype(np.float32)
    w = np.linalg.qr(rng.standard_normal((d, latent)))[0].T.astype(np.float32)
    x = z @ w
    x += 0.1 * rng.standard_normal((n, d), dtype=np.float32)
    x += rng.normal(size=d).astype(np.float32)  # an offset: centring matters
    return x


def reference(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact float64 explained variances and components (sklearn's sign rule)."""
    x64 = x.astype(np.float64)
    x64 -= x64.mean(axis=0)
    cov = x64.T @ x64 / (len(x64) - 1)
    vals, vecs = np.linalg.eigh(cov)
    vals, vecs = vals[::-1][:k], vecs[:, ::-1][:, :k].T
    signs = np.sign(vecs[np.arange(k), np.argmax(np.abs(vecs), axis=1)])
    return vals, vecs * signs[:, None]


def timed(fit: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    times, model = [], None
    for _ in range(repeats):
        gc.collect()
        t0 = time.perf_counter()
        model = fit()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), model


def bench_shape(n: int, d: int, k: int, args: argparse.Namespace, with_full: bool) -> None:
    x = make_data(n, d)
    ev_ref, comp_ref = reference(x, k)
    print(f"\n== {n:,} x {d} float32, n_components={k}, threads={args.threads or 'all'} ==")
    nt = args.threads
    runs: dict[str, tuple[Callable[[], Any], int]] = {
        "rusket auto": (lambda: PCA(k, num_threads=nt).fit(x), args.repeats),
        "rusket randomized": (
            lambda: PCA(k, svd_solver="randomized", random_state=0, num_threads=nt).fit(x),
            args.repeats,
        ),
        "sklearn auto": (lambda: SkPCA(k).fit(x), args.repeats),
        # scikit-learn computes in the input's precision: give it float64 for equal accuracy.
        "sklearn auto, f64": (lambda: SkPCA(k).fit(x.astype(np.float64)), args.repeats),
        "sklearn randomized": (
            lambda: SkPCA(k, svd_solver="randomized", random_state=0).fit(x),
            args.repeats,
        ),
    }
    if with_full:
        runs["sklearn full"] = (lambda: SkPCA(k, svd_solver="full").fit(x), args.slow_repeats)
    medians = {}
    header = f"{'method':20s} {'solver':16s} {'median s':>9s} {'max rel err ev':>15s}"
    print(header + f" {'max abs err comp':>17s}")
    for name, (fit, reps) in runs.items():
        med, model = timed(fit, reps)
        medians[name] = med
        solver = getattr(model, "svd_solver_", None) or getattr(model, "_fit_svd_solver", "")
        ev_err = np.max(np.abs(model.explained_variance_ / ev_ref - 1))
        comp_err = np.max(np.abs(model.components_ - comp_ref))
        print(f"{name:20s} {solver:16s} {med:9.3f} {ev_err:15.2e} {comp_err:17.2e}")
    print("ratios (sklearn median / rusket median):")
    pairs = [
        ("sklearn auto", "rusket auto"),
        ("sklearn auto, f64", "rusket auto"),
        ("sklearn randomized", "rusket randomized"),
        ("sklearn randomized", "rusket auto"),
    ]
    if with_full:
        pairs.append(("sklearn full", "rusket auto"))
    for theirs, ours in pairs:
        print(f"  {theirs:20s} / {ours:18s} = {medians[theirs] / medians[ours]:6.1f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--slow-repeats", type=int, default=3, help="for sklearn's 'full' solver")
    ap.add_argument("--n-components", type=int, default=10)
    ap.add_argument("--scale", type=float, default=1.0, help="shrink the row counts (quick runs)")
    ap.add_argument(
        "--threads", type=int, default=0, help="threads for both libraries (0 = all cores)"
    )
    ap.add_argument("--wide", action="store_true", help="also 20,000 x 2,000 (randomized land)")
    args = ap.parse_args()

    from threadpoolctl import threadpool_info, threadpool_limits

    if args.threads:
        threadpool_limits(args.threads)
    blas = [(i["internal_api"], i.get("architecture"), i["num_threads"]) for i in threadpool_info()]
    print(f"cores={os.cpu_count()} BLAS={blas}")
    env = {v: os.environ.get(v) for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    print(f"environment: {env}")
    for n, d in SHAPES:
        bench_shape(int(n * args.scale), d, args.n_components, args, with_full=True)
    if args.wide:
        bench_shape(int(20_000 * args.scale), 2_000, args.n_components, args, with_full=False)


if __name__ == "__main__":
    main()
