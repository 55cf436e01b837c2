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

section("Save and reload the model (npz + JSON, no pickle)")
path = OUT / "als_model.npz"
als.save(path)
again = rusket.ALS.load(path)
assert np.array_equal(again.recommend_items(17, n=10)[0], items)
print(f"saved to {path} ({path.stat().st_size / 1e3:.0f} kB) and reloaded: same recommendations")

print("\ncookbook finished", file=sys.stderr)
