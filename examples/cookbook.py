"""The rusket cookbook, end to end, on a local embedded Spark and local tables.

Run it with `make demo`. Outputs go to ./out (git-ignored).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import rusket
from rusket._formats import get_spark

OUT = Path(os.environ.get("RUSKET_OUT", "out"))
OUT.mkdir(exist_ok=True)


def section(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


# 1. Order lines -> implicit ALS -------------------------------------------------------------------
section("1. Fit implicit ALS straight from the order lines")
rng = np.random.default_rng(7)
purchases = pd.DataFrame(
    {
        "customer_id": rng.integers(0, 1000, size=5000),
        "article_id": rng.integers(0, 500, size=5000),
        "sales_amount": rng.exponential(50, size=5000),
    }
)
t = time.perf_counter()
als = rusket.ALS(factors=64, iterations=15, alpha=40.0, seed=42).from_transactions(
    purchases, transaction_col="customer_id", item_col="article_id", rating_col="sales_amount"
)
print(
    f"fitted {als!r} on {len(purchases):,} order lines in {time.perf_counter() - t:.2f} s: "
    f"{len(als.user_labels):,} customers x {len(als.item_labels):,} articles"
)

section("2. Recommendations for one customer")
items, scores = als.recommend_items(user=17, n=10)
print(pd.DataFrame({"article_id": items, "score": scores}).to_string(index=False))
similar, sims = als.similar_items(item=int(items[0]), n=5)
print(f"articles most similar to {items[0]}: {similar.tolist()}")

section("3. The same model from a Spark DataFrame (collected through Arrow)")
spark = get_spark()
orders_sdf = spark.createDataFrame(purchases)
als_spark = rusket.ALS(factors=64, iterations=15, alpha=40.0, seed=42).from_transactions(
    orders_sdf, transaction_col="customer_id", item_col="article_id", rating_col="sales_amount"
)
assert np.array_equal(als_spark.item_factors, als.item_factors)
print("Spark-fitted factors are identical to the pandas-fitted ones")

section("4. Export the latent space: frames, Delta, LanceDB, FAISS")
user_factors_df = als.export_user_factors(normalize=True, format="spark")
item_factors_df = als.export_factors(normalize=True, format="spark")
user_factors_df.printSchema()
print(f"{user_factors_df.count():,} user vectors, {item_factors_df.count():,} item vectors")

from deltalake import DeltaTable, write_deltalake  # noqa: E402

delta_path = str((OUT / "item_factors_delta").resolve())
write_deltalake(
    delta_path, als.export_item_factors(normalize=True, format="arrow"), mode="overwrite"
)
back = spark.read.parquet(*DeltaTable(delta_path).file_uris())
print(f"Delta table at {delta_path}: {back.count():,} rows, read back in Spark")

import lancedb  # noqa: E402

db = lancedb.connect(str(OUT / "lancedb"))
items_tbl = db.create_table(
    "item_factors", als.export_item_factors(normalize=True, format="arrow"), mode="overwrite"
)
probe = als.export_item_factors(normalize=True, format="numpy")
hits = items_tbl.search(probe["vector"][0]).metric("cosine").limit(5).to_pandas()
print(f"LanceDB neighbours of article {probe['item_id'][0]}: {hits['item_id'].tolist()}")

import faiss  # noqa: E402

index = faiss.IndexFlatIP(probe["vector"].shape[1])
index.add(probe["vector"])
_, nn = index.search(probe["vector"][:1], 5)
print(f"FAISS neighbours of article {probe['item_id'][0]}: {probe['item_id'][nn[0]].tolist()}")

section("4b. Look at the latent space: PCA and an interactive 3D plot")
projection = als.pca(n_components=3)
fig = projection.plot(title="Latent Item Space")
html = OUT / "latent_item_space.html"
fig.write_html(html, include_plotlyjs=True)
print(
    f"3D plot of {len(projection.to_pandas()):,} articles written to {html} "
    f"(explained variance {', '.join(f'{v:.3f}' for v in projection.explained_variance_ratio_)})"
)
pca_model = rusket.PCA(n_components=10)
reduced = pca_model.fit_transform(als.item_embeddings)
print(
    f"rusket.PCA(10) on the item embeddings: {reduced.shape}, explained variance ratio "
    f"{', '.join(f'{v:.3f}' for v in pca_model.explained_variance_ratio_)}"
)

section("5. Score every customer at once and assign cross-sell tiers")
t = time.perf_counter()
recommendations = als.batch_recommend(n=20, exclude_seen=True, format="spark")
print(f"top-20 for {len(als.user_labels):,} customers in {time.perf_counter() - t:.2f} s")

from rusket import spark as rspark  # noqa: E402

distributed = rspark.batch_recommend(als, n=20, exclude_seen=True)
print(
    f"the same scoring inside the Spark executors: {distributed.count():,} rows "
    f"(local: {recommendations.count():,})"
)

from pyspark.sql import Window  # noqa: E402
from pyspark.sql import functions as F  # noqa: E402

w = Window.partitionBy("item_id").orderBy(F.col("score").desc())
tiers = recommendations.withColumn("pct", F.percent_rank().over(w)).withColumn(
    "potential",
    F.when(F.col("pct") <= 0.2, "High").when(F.col("pct") <= 0.5, "Medium").otherwise("Low"),
)
tiers.groupBy("potential").count().orderBy("potential").show()
queue = tiers.filter(F.col("potential") == "High").join(user_factors_df, "user_id")
print(f"High-potential marketing queue: {queue.count():,} (customer, article) pairs")
write_deltalake(
    str((OUT / "cross_sell_tiers_delta").resolve()),
    tiers.toArrow(),
    mode="overwrite",
)

section("Save and reload the model (npz + JSON, no pickle)")
path = OUT / "als_model.npz"
als.save(path)
again = rusket.ALS.load(path)
assert np.array_equal(again.recommend_items(17, n=10)[0], items)
print(f"saved to {path} ({path.stat().st_size / 1e3:.0f} kB) and reloaded: same recommendations")

print("\ncookbook finished", file=sys.stderr)
