"""Spark: ingestion from a Spark frame, and rusket against Spark MLlib ALS (issue 11).

Three parts (``--part ingest``, ``--part mllib``, default both; ``--part rusket`` alone):

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

    Same rank, iterations and alpha for both, and the same confidences: MLlib is fed
    ``log1p(summed amount)``, rusket's default ``log`` confidence. The penalty: rusket's
    ``regularization="auto"``; MLlib gets ``regParam`` = ``fit_als``'s mapping of that penalty
    (``auto_reg_param``), which MLlib scales by each row's number of ratings (ALS-WR), so the
    two objectives differ in the penalty only; nDCG@10 (``rusket.evaluation``, bought articles
    excluded for both) says what the time buys.

``rusket``
    rusket's side of ``mllib`` alone (no MLlib, ~3 min), ``--rusket-repeats`` runs in one
    process: the pipeline as ``mllib`` times it, then its phases one by one
    (``Interactions.from_frame`` on the Spark frame: the Spark sum and its collection; the
    in-process fit on the collected matrix; ``batch_recommend`` to Arrow; the Arrow -> Spark
    frame and its ``count()``; and ``rusket.spark.batch_recommend`` in the executors), each with
    its median, its first run (JIT warm-up included) and the number of Spark jobs it ran.

    .venv/bin/python benchmarks/bench_spark.py                 # ingest and mllib (MLlib: 6-10 min)
    .venv/bin/python benchmarks/bench_spark.py --part rusket   # rusket's phases only (~3 min)
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
from typing import Any

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


# --- rusket vs MLlib -----------------------------------------------------------------------------


def _als_from_factors(params: dict, users, items, ulab, ilab, seen):
    """A rusket.ALS holding MLlib's factors (for nDCG with rusket.evaluation)."""
    import rusket
    from rusket._model import _Fitted

    model = rusket.ALS(**params)
    model._state = _Fitted.build(users, items, ulab, ilab, seen)
    return model


def _split_data(args: argparse.Namespace) -> tuple[Any, Any, Any, tuple[str, str, str]]:
    """The session, the train lines as a cached Spark frame, and the test lines (pandas)."""
    import pyarrow as pa

    from rusket._formats import arrow_to_spark
    from rusket.datasets import make_purchases
    from rusket.evaluation import time_split

    n_lines, n_customers, n_articles = (
        (40_000, 4_000, 800) if args.quick else (args.mllib_lines, args.mllib_lines // 20, 8_000)
    )
    t = time.perf_counter()
    lines = make_purchases(
        n_customers=n_customers, n_articles=n_articles, n_lines=n_lines, seed=args.seed
    )
    train, test = time_split(lines, "order_date", test_size=0.2)
    cols = ("customer_id", "article_id", "sales_amount")
    spark = _session()
    sdf = arrow_to_spark(spark, pa.Table.from_pandas(train[list(cols)], preserve_index=False))
    sdf = sdf.persist()
    n_train = sdf.count()
    print(
        f"data: make_purchases({n_customers:,} customers, {n_articles:,} articles, "
        f"{n_lines:,} lines, seed={args.seed}); time split: {n_train:,} train lines (a cached "
        f"Spark frame, {sdf.rdd.getNumPartitions()} partitions), {len(test):,} test lines "
        f"({time.perf_counter() - t:.0f} s)",
        flush=True,
    )
    return spark, sdf, test, cols


def _jobs(spark: Any) -> int:
    """Spark jobs run so far in this session (each costs ~0.1-0.3 s of fixed work on local[2])."""
    return len(spark.sparkContext.statusTracker().getJobIdsForGroup(None))


def run_rusket(args: argparse.Namespace) -> None:
    """rusket's pipeline alone (no MLlib), timed as in ``mllib``, then phase by phase."""
    import rusket
    import rusket.spark
    from rusket._formats import arrow_to_spark
    from rusket.evaluation import evaluate
    from rusket.interactions import Interactions

    spark, sdf, test, cols = _split_data(args)
    params = {"factors": args.factors, "iterations": args.iterations, "alpha": 40.0, "seed": 0}
    print(
        f"load average at the start: {os.getloadavg()}; {args.rusket_repeats} runs, each the "
        "pipeline then its phases one by one",
        flush=True,
    )
    phases = (
        "pipeline: from_transactions(spark_df)",
        "pipeline: batch_recommend(format='spark') + count",
        "pipeline: end to end",
        "  Interactions.from_frame(spark_df): Spark sum + collection + encoding",
        "  ALS.fit on the collected matrix (in-process, Rust)",
        "  batch_recommend(format='arrow') (Rust top-20)",
        "  Arrow -> Spark frame (arrow_to_spark)",
        "  count() of that frame",
        "  rusket.spark.batch_recommend (in the executors) + count",
    )
    times: dict[str, list[float]] = {k: [] for k in phases}
    jobs: dict[str, int] = {}

    def timed(name: str, fn: Any, *fn_args: Any) -> Any:
        j, t0 = _jobs(spark), time.perf_counter()
        out = fn(*fn_args)
        times[name].append(time.perf_counter() - t0)
        jobs[name] = _jobs(spark) - j
        return out

    def fit(data: Any) -> Any:
        return rusket.ALS(**params).from_transactions(data, *cols)

    def top20_spark_counted(model: Any) -> int:
        return int(model.batch_recommend(n=20, exclude_seen=True, format="spark").count())

    def fit_matrix(inter: Any) -> Any:
        return rusket.ALS(**params).fit(inter.matrix, inter.user_labels, inter.item_labels)

    def top20_arrow(model: Any) -> Any:
        return model.batch_recommend(n=20, exclude_seen=True, format="arrow")

    def executors_top20_counted(model: Any) -> int:
        return int(rusket.spark.batch_recommend(model, n=20, exclude_seen=True).count())

    for run in range(args.rusket_repeats):
        model = timed(phases[0], fit, sdf)
        n_recs = timed(phases[1], top20_spark_counted, model)
        times[phases[2]].append(times[phases[0]][-1] + times[phases[1]][-1])
        jobs[phases[2]] = jobs[phases[0]] + jobs[phases[1]]
        inter = timed(phases[3], Interactions.from_frame, sdf, *cols)
        timed(phases[4], fit_matrix, inter)
        table = timed(phases[5], top20_arrow, model)
        frame = timed(phases[6], arrow_to_spark, spark, table)
        timed(phases[7], frame.count)
        timed(phases[8], executors_top20_counted, model)
        print(
            f"  run {run + 1}: " + ", ".join(f"{times[k][-1]:.2f}" for k in phases) + " s",
            flush=True,
        )
    ndcg = evaluate(model, test, "customer_id", "article_id", k=10)["ndcg@10"]
    width = max(map(len, phases))
    print(
        f"\n{'phase':{width}s} {'median s':>9s} {'first s':>8s} {'Spark jobs':>11s}   "
        f"(medians of {len(times[phases[0]])} runs; {n_recs:,} result rows; nDCG@10 {ndcg:.4f})"
    )
    for k in phases:
        print(f"{k:{width}s} {statistics.median(times[k]):9.2f} {times[k][0]:8.2f} {jobs[k]:11d}")
    print(f"load average at the end: {os.getloadavg()}")
    spark.stop()


def run_mllib(args: argparse.Namespace) -> None:
    import numpy as np
    from pyspark.ml.recommendation import ALS as MLlibALS
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    import rusket
    import rusket.spark
    from rusket._formats import spark_to_arrow
    from rusket._spark_fit import _fit_mllib, auto_reg_param
    from rusket.evaluation import evaluate

    spark, sdf, test, cols = _split_data(args)
    ckpt = tempfile.mkdtemp(prefix="rusket-bench-ckpt-")
    spark.sparkContext.setCheckpointDir(ckpt)
    f, iters, alpha = args.factors, args.iterations, 40.0
    params = {"factors": f, "iterations": iters, "alpha": alpha, "seed": 0}

    # rusket, in-process: Spark frame -> fit -> top-20 as a Spark frame. Repeated (the first
    # run also pays the session's first jobs and JIT warm-up): the median run counts, the
    # first is printed too.
    fits, tops = [], []
    for _ in range(args.rusket_repeats):
        t0 = time.perf_counter()
        model = rusket.ALS(**params).from_transactions(sdf, *cols)
        t1 = time.perf_counter()
        recs = model.batch_recommend(n=20, exclude_seen=True, format="spark")
        n_recs = recs.count()
        t2 = time.perf_counter()
        fits.append(t1 - t0)
        tops.append(t2 - t1)
        print(f"  rusket run: fit {t1 - t0:.1f} s, top-20 {t2 - t1:.1f} s", flush=True)
    t0, t1 = 0.0, statistics.median(fits)
    t2 = t1 + statistics.median(tops)
    lam = model.regularization_
    seen = model._fitted_state().seen
    reg_param = auto_reg_param(seen.data, *seen.shape)  # fit_als's mapping of "auto"
    ours = evaluate(model, test, "customer_id", "article_id", k=10)["ndcg@10"]
    print(
        f"rusket (median of {len(fits)}): fit {t1 - t0:.1f} s, top-20 (Spark frame, {n_recs:,} "
        f"rows) {t2 - t1:.1f} s, "
        f"nDCG@10 {ours:.4f} (lambda {lam:.4g}; MLlib gets regParam {reg_param:.4g})",
        flush=True,
    )

    # MLlib: sums in Spark, ALS(implicitPrefs) on log1p(amount) (rusket's confidence), top-20
    # with bought articles filtered out after recommendForAllUsers(20 + longest history).
    t3 = time.perf_counter()
    pairs = sdf.groupBy("customer_id", "article_id").agg(F.sum("sales_amount").alias("v"))
    pairs = pairs.filter(F.col("v") > 0)
    train_df = pairs.select("customer_id", "article_id", F.log1p("v").alias("r"))
    mllib = MLlibALS(
        rank=f,
        maxIter=iters,
        regParam=reg_param,
        alpha=alpha,
        implicitPrefs=True,
        userCol="customer_id",
        itemCol="article_id",
        ratingCol="r",
        seed=0,
        checkpointInterval=5,
    ).fit(train_df)
    t4 = time.perf_counter()
    longest = pairs.groupBy("customer_id").count().agg(F.max("count")).collect()[0][0]
    top = mllib.recommendForAllUsers(20 + longest).select(
        "customer_id", F.posexplode("recommendations").alias("pos", "rec")
    )
    top = top.select(
        "customer_id", F.col("rec.article_id").alias("article_id"), F.col("rec.rating").alias("s")
    ).join(pairs.select("customer_id", "article_id"), ["customer_id", "article_id"], "left_anti")
    rank = F.row_number().over(Window.partitionBy("customer_id").orderBy(F.desc("s")))
    top = top.withColumn("rank", rank).filter(F.col("rank") <= 20)
    n_top = top.count()
    t5 = time.perf_counter()
    # nDCG of MLlib's factors with the same exclusion (not timed).
    uf = spark_to_arrow(mllib.userFactors).to_pydict()
    itf = spark_to_arrow(mllib.itemFactors).to_pydict()
    ulab, ilab = model.user_labels, model.item_labels
    users = np.zeros((len(ulab), f), np.float32)
    items = np.zeros((len(ilab), f), np.float32)
    users[np.searchsorted(ulab, uf["id"])] = np.asarray(uf["features"], np.float32)
    items[np.searchsorted(ilab, itf["id"])] = np.asarray(itf["features"], np.float32)
    theirs_model = _als_from_factors(params, users, items, ulab, ilab, seen)
    theirs = evaluate(theirs_model, test, "customer_id", "article_id", k=10)["ndcg@10"]
    print(
        f"MLlib:  fit {t4 - t3:.1f} s, top-20 (recommendForAllUsers({20 + longest}) then "
        f"filtered, {n_top:,} rows) {t5 - t4:.1f} s, nDCG@10 {theirs:.4f}",
        flush=True,
    )
    t6 = time.perf_counter()
    via = _fit_mllib(sdf, *cols, **params)
    t7 = time.perf_counter()
    via_ndcg = evaluate(via.model, test, "customer_id", "article_id", k=10)["ndcg@10"]
    print(
        f"rusket.spark.fit_als (MLlib + Spark indexing + collection): {t7 - t6:.1f} s, "
        f"nDCG@10 {via_ndcg:.4f}",
        flush=True,
    )
    ours_total, theirs_total = t2 - t0, t5 - t3
    print(
        f"\nratios MLlib / rusket: fit {(t4 - t3) / (t1 - t0):.1f}x, top-20 "
        f"{(t5 - t4) / (t2 - t1):.1f}x, end to end {theirs_total / ours_total:.1f}x "
        f"({theirs_total:.1f} s vs {ours_total:.1f} s); fit_als / in-process fit "
        f"{(t7 - t6) / (t1 - t0):.1f}x; nDCG@10 rusket {ours:.4f} vs MLlib {theirs:.4f} "
        f"(fit_als {via_ndcg:.4f})"
    )
    print(f"load average at the end: {os.getloadavg()}")


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--child-ingest":
        ingest_child(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("ingest", "mllib", "rusket", "both"), default="both")
    ap.add_argument("--quick", action="store_true", help="small sizes, one repeat")
    ap.add_argument("--lines", type=int, default=10_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", help="reuse the parquet lines a previous ingest run wrote")
    ap.add_argument("--mllib-lines", type=int, default=1_000_000)
    ap.add_argument("--factors", type=int, default=32)
    ap.add_argument("--iterations", type=int, default=10)
    ap.add_argument("--rusket-repeats", type=int, default=5)
    args = ap.parse_args()
    if args.quick:
        args.lines = min(args.lines, 300_000)
        args.repeats = 1
    if args.part in ("ingest", "both"):
        print("== ingestion: from_transactions(spark_df) ==", flush=True)
        run_ingest(args)
    if args.part == "rusket":
        print("== rusket in-process, phase by phase (no MLlib) ==", flush=True)
        run_rusket(args)
    if args.part in ("mllib", "both"):
        print("\n== rusket in-process vs Spark MLlib ALS ==", flush=True)
        run_mllib(args)


if __name__ == "__main__":
    main()
