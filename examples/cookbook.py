"""The rusket cookbook, end to end, on a local embedded Spark and local tables.

Run it with `make demo` (about a minute). Outputs go to ./out (git-ignored).

The order lines come from `rusket.datasets.make_purchases`: a seeded synthetic retail log with
customer segments, product families, a popularity skew, rebuys, prices and dates, so that there
is something to learn beyond "best sellers" (uniform random lines have nothing to learn).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

import rusket
import rusket.spark
from rusket.datasets import make_articles, make_purchases
from rusket.evaluation import evaluate, time_split

OUT = Path(os.environ.get("RUSKET_OUT", "out"))
OUT.mkdir(exist_ok=True)
pd.set_option("display.width", 120)


def section(title: str) -> None:
    print(f"\n=== {title} ===", flush=True)


# 0. The data ---------------------------------------------------------------------------------
section("0. A year of order lines (synthetic, seeded)")
N_CUSTOMERS, N_ARTICLES, N_LINES, SEED = 5_000, 800, 60_000, 7
purchases = make_purchases(
    n_customers=N_CUSTOMERS, n_articles=N_ARTICLES, n_lines=N_LINES, seed=SEED
)
# The catalogue the lines were drawn from: category and price of every article.
articles = make_articles(n_articles=N_ARTICLES, seed=SEED)
category_of = dict(zip(articles["article_id"].tolist(), articles["category"].tolist()))
print(purchases.head().to_string(index=False))
print(
    f"{len(purchases):,} lines, {purchases['order_id'].nunique():,} orders, "
    f"{purchases['customer_id'].nunique():,} customers, "
    f"{purchases['article_id'].nunique():,} articles in {articles['category'].nunique()} "
    f"categories, {purchases['order_date'].min():%Y-%m-%d} to "
    f"{purchases['order_date'].max():%Y-%m-%d}"
)

# 1. Order lines -> implicit ALS ----------------------------------------------------------------
section("1. Fit implicit ALS straight from the order lines")
t = time.perf_counter()
als = rusket.ALS(factors=64, iterations=15, alpha=40.0, seed=42).from_transactions(
    purchases, transaction_col="customer_id", item_col="article_id", rating_col="sales_amount"
)
print(
    f"fitted {als!r} on {len(purchases):,} order lines in {time.perf_counter() - t:.2f} s: "
    f"{len(als.user_labels):,} customers x {len(als.item_labels):,} articles"
)

# 1b. Hold out the last 20% of the year and compare with "best sellers" ------------------------
section("1b. How good are these recommendations?")
train, test = time_split(purchases, "order_date", test_size=0.2)
print(
    f"train: {len(train):,} lines up to {train['order_date'].max():%Y-%m-%d}; "
    f"test: {len(test):,} lines after it"
)
cols = {"user_col": "customer_id", "item_col": "article_id"}
als_train = rusket.ALS(factors=64, iterations=15, alpha=40.0, seed=42).from_transactions(
    train, transaction_col="customer_id", item_col="article_id", rating_col="sales_amount"
)
popularity = rusket.Popularity().from_transactions(
    train, transaction_col="customer_id", item_col="article_id"
)
ours = evaluate(als_train, test, **cols, k=10)
base = evaluate(popularity, test, **cols, k=10)
METRICS = ("ndcg@10", "recall@10", "hit_rate@10", "coverage@10")
table = pd.DataFrame(
    {
        "ALS": [f"{ours[m]:.4f}" for m in METRICS] + [f"{ours['users']:,}"],
        "Popularity": [f"{base[m]:.4f}" for m in METRICS] + [f"{base['users']:,}"],
        "ALS / Popularity": [f"{ours[m] / base[m]:.2f}x" for m in METRICS] + [""],
    },
    index=[*METRICS, "users"],
)
print(table.to_string())
print(
    "ndcg@10: how high a customer's new purchases rank in their top 10 | recall@10: the share\n"
    "of them found | hit_rate@10: customers with at least one found | coverage@10: share of the\n"
    "catalogue recommended to someone | users: customers who bought something new after the\n"
    f"cut-off ({ours['unknown_users']:,} more were new customers: not scored). "
    "Articles that a customer\nalready bought are never recommended to them again."
)
ratio = ours["ndcg@10"] / base["ndcg@10"]
assert ratio >= 1.2, f"ALS should rank well above best sellers, got {ratio:.2f}x popularity"
print(f"ALS ranks the next purchases {ratio:.1f}x better than best sellers (nDCG@10)")

# Search the hyper-parameters on a validation cut of the training lines (successive halving).
t = time.perf_counter()
tuned = rusket.ALS.tune(
    train, "customer_id", "article_id", "sales_amount", time_col="order_date", n_trials=12
)
tuned_scores = evaluate(tuned.best_model, test, **cols, k=10)
params = tuned.best_params
reg = params["regularization"]
print(
    f"ALS.tune (12 trials, {time.perf_counter() - t:.1f} s) picked factors={params['factors']}, "
    f"regularization={reg if reg == 'auto' else f'{reg:.3g}'}, alpha={params['alpha']:.3g}, "
    f"confidence={params['confidence']!r}, iterations={params['iterations']}"
)
print(
    f"nDCG@10 on the test lines: tuned {tuned_scores['ndcg@10']:.4f}, the call above "
    f"{ours['ndcg@10']:.4f}, popularity {base['ndcg@10']:.4f}"
)

section("2. Recommendations for one customer")
articles_per_customer = purchases.groupby("customer_id")["article_id"].nunique()
customer = int(articles_per_customer[articles_per_customer.between(8, 12)].index[0])
bought = purchases.loc[purchases["customer_id"] == customer]
print(
    f"customer {customer} bought {articles_per_customer[customer]} different articles in "
    f"{len(bought)} order lines: "
    + ", ".join(f"{n} x {cat}" for cat, n in bought["category"].value_counts().items())
)
items, scores = als.recommend_items(user=customer, n=10)
print(
    pd.DataFrame(
        {
            "article_id": items,
            "category": [category_of[i] for i in items.tolist()],
            "score": scores.round(3),
        }
    ).to_string(index=False)
)
similar, sims = als.similar_items(item=int(items[0]), n=5)
print(
    f"articles most similar to {items[0]} ({category_of[int(items[0])]}): "
    + ", ".join(f"{i} ({category_of[i]})" for i in similar.tolist())
)

section("3. The same model from a Spark DataFrame (collected through Arrow)")
spark = rusket.spark.local_session()  # a quiet local Spark, or the session already running
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
# The factors were learnt from baskets alone, yet neighbours share the article's category.
_, nn = index.search(probe["vector"], 6)
cats = np.array([category_of[i] for i in probe["item_id"].tolist()])
same = (cats[nn[:, 1:]] == cats[:, None]).mean()
chance = (pd.Series(cats).value_counts(normalize=True) ** 2).sum()
print(
    f"{same:.0%} of every article's 5 nearest neighbours share its category (chance: {chance:.0%})"
)

section("4b. Look at the latent space: PCA and an interactive 3D plot")
projection = als.pca(n_components=3)
# color/hover: a dict keyed by article_id (a list or array would have to follow the order of
# projection.labels).
price_of = dict(zip(articles["article_id"].tolist(), articles["price"].tolist()))
fig = projection.plot(
    title="Latent Item Space (coloured by category)",
    color=category_of,
    hover={i: f"{category_of[i]}, {price_of[i]:.2f}" for i in projection.labels.tolist()},
)
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

distributed = rusket.spark.batch_recommend(als, n=20, exclude_seen=True)
print(
    f"the same scoring inside the Spark executors: {distributed.count():,} rows "
    f"(local: {recommendations.count():,})"
)

# For each article, its recommended customers ranked by score (Spark's percent_rank window):
# the top 20% are "High", the next 30% "Medium", the rest "Low".
tiers = rusket.potential_tiers(recommendations, by="item_id", cuts=(0.2, 0.5))
tiers = tiers.cache()  # used by the next three actions
tiers.groupBy("potential").count().orderBy("potential").show()
queue = tiers.filter(tiers["potential"] == "High").join(user_factors_df, "user_id")
print(f"High-potential marketing queue: {queue.count():,} (customer, article) pairs")
write_deltalake(
    str((OUT / "cross_sell_tiers_delta").resolve()),
    rusket.spark.to_arrow(tiers),
    mode="overwrite",
)

section("Save and reload the model (npz + JSON, no pickle)")
path = OUT / "als_model.npz"
als.save(path)
again = rusket.ALS.load(path)
assert np.array_equal(again.recommend_items(customer, n=10)[0], items)
print(f"saved to {path} ({path.stat().st_size / 1e3:.0f} kB) and reloaded: same recommendations")

print("\ncookbook finished", file=sys.stderr)
