"""Spark: ingestion from a Spark frame, and rusket against Spark MLlib ALS (issue 11).

Two parts (``--part ingest``, ``--part mllib``, default both):

``ingest``
    ``Interactions.from_frame(spark_df, ...)`` (what ``from_transactions`` runs first) on
    ``--lines`` order lines (default 10M) with ~3 lines per distinct (customer, article) pair,
    generated in Spark with ``spark.range`` and written once to parquet. Two paths:

    * ``today``: the path before issue 11, reproduced inline: collect the three raw columns
      to the driver through Arrow (``spark_to_arrow(df.select(...))``) and read that table;
    * ``spark-sum``: the current path: sum the pairs in Spark, collect the distinct pairs.

    Each run is a fresh process (a fresh local[2] Spark, driver heap 2g) reading the parquet
    files, so that the peaks are clean: the **Python driver's** peak RSS (``VmHWM`` of the
    process, and its rise over the RSS just before ingesting) and the **JVM's** peak RSS
    (``VmHWM`` of the Spark driver JVM, a child process). Paths interleaved, ``--repeats``
    each, medians.

``mllib``
    rusket in-process against Spark MLlib ALS on the same data (~1M interactions of
    ``rusket.datasets.make_purchases``, held-out last 20% by date):

    * rusket: Spark frame -> ``ALS.from_transactions`` -> ``batch_recommend(n=20,
      exclude_seen=True, format="spark")`` (counted until the Spark frame of the result
      exists and is counted);
    * MLlib: ``pyspark.ml.feature.StringIndexer`` is not needed (integer ids), ``ALS(
      implicitPrefs=True, rank, maxIter, alpha, regParam, checkpoint dir set)`` on the summed
      pairs, ``recommendForAllUsers(20 + longest history)`` and the bought articles filtered
      out afterwards (**MLlib has no exclusion**), cut to 20 per customer, counted.

    Same rank, iterations, alpha and regularization for both; rusket's confidence is its
    default ``log``, MLlib's is linear on the summed amounts (its only one): each library at its
    own objective, so nDCG@10 (``rusket.evaluation``) says what the time buys. MLlib's ``regParam``
    is scaled by each row's number of ratings (ALS-WR), rusket's ``regularization`` is not: the
    same number means different penalties; both runs also use each library's own default
    penalty style (see ``--reg``).

    .venv/bin/python benchmarks/bench_spark.py                 # both parts (~10 min)
    .venv/bin/python benchmarks/bench_spark.py --quick         # small, ~2 min
    .venv/bin/python benchmarks/bench_spark.py --part ingest --lines 10000000 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIB = 1024**2


# --- memory -------------------------------------------------------------------------------------


def _status(pid: int | str, key: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _jvm_pid() -> int | None:
    """The Spark driver JVM: the java process below this one."""
    todo = _children(os.getpid())
    while todo:
        pid = todo.pop()
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        if cmd.endswith(b"java"):
            return pid
        todo += _children(pid)
    return None


def _session(cores: int = 2, memory: str = "2g"):
    """local[2] with a full JVM (C2 compiler, parallel GC): ``local_session``'s quick-start JVM
    (C1 only, serial GC) is right for small jobs, not for shuffling millions of rows."""
    import rusket.spark

    spark = rusket.spark.local_session(
        "rusket-bench",
        cores=cores,
        driver_memory=memory,
        shuffle_partitions=cores * 2,
        config={"spark.driver.extraJavaOptions": "-XX:+UseParallelGC"},
    )
    return spark


# --- ingest -------------------------------------------------------------------------------------


def make_lines(path: str, lines: int, seed: int, write: bool = True) -> dict:
    """``lines`` order lines, ~3 per distinct pair: a line draws its pair uniformly among
    ``lines / 3 / 0.95`` pairs (Poisson(3.15) lines per pair, 95% of the pairs drawn)."""
    from pyspark.sql import functions as F

    spark = _session()
    n_pairs = int(lines / 3 / 0.95)
    n_customers = max(n_pairs // 20, 1)
    p = F.floor(F.rand(seed) * n_pairs).cast("long")
    k = F.floor(p / n_customers).cast("long")
    df = spark.range(lines).select(
        (p % n_customers).alias("customer_id"),
        (k * 1000 + (p * 7) % 1000).alias("article_id"),
        F.round(F.rand(seed + 1) * 100 + 0.5, 2).alias("sales_amount"),
    )
    if write:
        df.write.mode("overwrite").parquet(path)
    back = spark.read.parquet(path)
    stats = back.agg(
        F.count(F.lit(1)).alias("lines"),
        F.countDistinct("customer_id", "article_id").alias("pairs"),
        F.countDistinct("customer_id").alias("customers"),
        F.countDistinct("article_id").alias("articles"),
    ).collect()[0]
    return stats.asDict()


def ingest_child(path: str, variant: str) -> None:
    import numpy as np

    from rusket._formats import spark_to_arrow
    from rusket.interactions import Interactions

    spark = _session()
    df = spark.read.parquet(path)
    df.limit(1).collect()  # warm the reader
    jvm = _jvm_pid()
    cols = ("customer_id", "article_id", "sales_amount")
    before = _status("self", "VmRSS")
    t = time.perf_counter()
    if variant == "today":
        table = spark_to_arrow(df.select(*cols))
        inter = Interactions.from_frame(table, *cols)
    else:
        inter = Interactions.from_frame(df, *cols)
    seconds = time.perf_counter() - t
    m = inter.matrix
    result = {
        "variant": variant,
        "seconds": seconds,
        "py_peak": _status("self", "VmHWM"),
        "py_before": before,
        "jvm_peak": _status(jvm, "VmHWM") if jvm else 0,
        "shape": list(m.shape),
        "nnz": int(m.nnz),
        "sum": float(np.sum(m.data)),
    }
    print("RESULT " + json.dumps(result), flush=True)
    spark.stop()


def run_ingest(args: argparse.Namespace) -> None:
    if args.data:
        path = args.data
    else:
        path = os.path.join(tempfile.mkdtemp(prefix="rusket-bench-spark-"), "lines.parquet")
    t = time.perf_counter()
    stats = make_lines(path, args.lines, args.seed, write=not args.data)
    print(
        f"data: {stats['lines']:,} lines, {stats['pairs']:,} distinct pairs "
        f"({stats['lines'] / stats['pairs']:.2f} lines per pair), {stats['customers']:,} "
        f"customers x {stats['articles']:,} articles, int64 ids, float64 amounts "
        f"(generated and written in {time.perf_counter() - t:.0f} s)",
        flush=True,
    )
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        active.stop()
    runs: dict[str, list[dict]] = {"today": [], "spark-sum": []}
    for _ in range(args.repeats):
        for variant in runs:
            out = subprocess.run(
                [sys.executable, __file__, "--child-ingest", path, variant],
                capture_output=True,
                text=True,
                check=False,
            )
            line = [x for x in out.stdout.splitlines() if x.startswith("RESULT ")]
            if out.returncode or not line:
                print(out.stdout[-2000:], out.stderr[-4000:], file=sys.stderr)
                raise SystemExit(f"{variant} run failed")
            r = json.loads(line[0][len("RESULT ") :])
            runs[variant].append(r)
            print(
                f"  {variant:9s} {r['seconds']:6.1f} s  python peak {r['py_peak'] / MIB:6.0f} "
                f"MiB (+{(r['py_peak'] - r['py_before']) / MIB:.0f})  JVM peak "
                f"{r['jvm_peak'] / MIB:6.0f} MiB  nnz {r['nnz']:,} sum {r['sum']:.6e}",
                flush=True,
            )
    a, b = runs["today"], runs["spark-sum"]
    assert a[0]["nnz"] == b[0]["nnz"] and a[0]["shape"] == b[0]["shape"]
    med = {
        k: {f: statistics.median(r[f] for r in v) for f in a[0] if f not in ("variant", "shape")}
        for k, v in runs.items()
    }
    print(f"\nmedians of {args.repeats} (fresh process each):")
    head = ("path", "time s", "py peak MiB", "py rise MiB", "JVM peak MiB")
    print(f"{head[0]:10s} {head[1]:>8s} {head[2]:>12s} {head[3]:>12s} {head[4]:>13s}")
    for k, m in med.items():
        print(
            f"{k:10s} {m['seconds']:8.1f} {m['py_peak'] / MIB:12.0f} "
            f"{(m['py_peak'] - m['py_before']) / MIB:12.0f} {m['jvm_peak'] / MIB:13.0f}"
        )
    ta, tb = med["today"], med["spark-sum"]
    print(
        f"ratios today / spark-sum: time {ta['seconds'] / tb['seconds']:.2f}x, python rise "
        f"{(ta['py_peak'] - ta['py_before']) / max(tb['py_peak'] - tb['py_before'], 1):.2f}x, "
        f"JVM peak {ta['jvm_peak'] / max(tb['jvm_peak'], 1):.2f}x"
    )
    print(f"load average at the end: {os.getloadavg()}")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child-ingest":
        ingest_child(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("ingest", "mllib", "both"), default="both")
    ap.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    ap.add_argument("--lines", type=int, default=10_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", help="reuse the parquet lines a previous ingest run wrote")
    args = ap.parse_args()
    if args.quick:
        args.lines = min(args.lines, 300_000)
        args.repeats = 1
    if args.part in ("ingest", "both"):
        print("== ingestion: from_transactions(spark_df) ==", flush=True)
        run_ingest(args)


if __name__ == "__main__":
    main()
