"""Data sets shared by the benchmarks.

* ``synthetic(...)``: a power-law purchase log with latent taste clusters, so that a ranking model
  has something to learn (power-law user activity and item popularity; values exponential(50)).
* ``movielens_100k()``: MovieLens-100k as shipped inside the ``recbole==1.2.1`` wheel (downloaded
  once from PyPI into ``~/.cache/rusket-bench``; never committed, recbole is not installed).
* ``holdout(...)``: a per-user 80/20 split, and ``ndcg_at_k`` to score a top-k list against it.
"""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

CACHE = Path.home() / ".cache" / "rusket-bench"


def synthetic(
    n_users: int = 200_000,
    n_items: int = 50_000,
    n_rows: int = 5_000_000,
    n_clusters: int = 64,
    in_cluster: float = 0.6,
    seed: int = 0,
) -> pd.DataFrame:
    """Order lines ``customer_id, article_id, sales_amount`` with power-law activity/popularity."""
    rng = np.random.default_rng(seed)
    activity = rng.pareto(1.2, n_users) + 1.0
    users = rng.choice(n_users, size=n_rows, p=activity / activity.sum())
    cluster_of_user = rng.integers(0, n_clusters, n_users)
    # Global popularity: Zipf-like over a random permutation of the items.
    ranks = np.arange(1, n_items + 1, dtype=np.float64)
    pop = ranks**-0.9
    perm = rng.permutation(n_items)
    global_items = perm[rng.choice(n_items, size=n_rows, p=pop / pop.sum())]
    # In-cluster choice: items are dealt to clusters; inside a cluster popularity is Zipf too.
    per_cluster = n_items // n_clusters
    cr = np.arange(1, per_cluster + 1, dtype=np.float64) ** -0.7
    rank_in_cluster = rng.choice(per_cluster, size=n_rows, p=cr / cr.sum())
    cluster_items = perm[rank_in_cluster * n_clusters + cluster_of_user[users]]
    items = np.where(rng.random(n_rows) < in_cluster, cluster_items, global_items)
    return pd.DataFrame(
        {
            "customer_id": users.astype(np.int64),
            "article_id": items.astype(np.int64),
            "sales_amount": rng.exponential(50.0, n_rows),
        }
    )


def movielens_100k() -> pd.DataFrame:
    """MovieLens-100k ratings as ``customer_id, article_id, sales_amount`` (the rating)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    wheels = sorted(CACHE.glob("recbole-1.2.1-*.whl"))
    if not wheels:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "-q",
                "-d",
                str(CACHE),
                "recbole==1.2.1",
            ],
            check=True,
        )
        wheels = sorted(CACHE.glob("recbole-1.2.1-*.whl"))
    with zipfile.ZipFile(wheels[0]) as z:
        raw = z.read("recbole/dataset_example/ml-100k/ml-100k.inter")
    df = pd.read_csv(io.BytesIO(raw), sep="\t")
    df.columns = [c.split(":")[0] for c in df.columns]
    return pd.DataFrame(
        {
            "customer_id": df["user_id"].astype(np.int64),
            "article_id": df["item_id"].astype(np.int64),
            "sales_amount": df["rating"].astype(np.float64),
        }
    )


def to_csr(df: pd.DataFrame) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Users x items CSR of summed values, with the sorted user and item labels."""
    users, u = np.unique(df["customer_id"].to_numpy(), return_inverse=True)
    items, i = np.unique(df["article_id"].to_numpy(), return_inverse=True)
    m = sp.csr_matrix(
        (df["sales_amount"].to_numpy(np.float64), (u, i)), shape=(len(users), len(items))
    )
    m.sum_duplicates()
    return m, users, items


def holdout(
    m: sp.csr_matrix, frac: float = 0.2, seed: int = 0
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """Per-user split: ``frac`` of each user's items (at least one, when the user has >= 2) go to
    the test matrix, the rest to training. Same shape for both."""
    rng = np.random.default_rng(seed)
    m = m.tocsr()
    rows = np.repeat(np.arange(m.shape[0]), np.diff(m.indptr))
    key = rng.random(m.nnz)
    # Rank each entry inside its row by a random key; the lowest ranks go to test.
    order = np.lexsort((key, rows))
    rank = np.empty(m.nnz, dtype=np.int64)
    starts = m.indptr[:-1]
    rank[order] = np.arange(m.nnz) - np.repeat(starts, np.diff(m.indptr))
    n_row = np.diff(m.indptr)
    n_test = np.where(n_row >= 2, np.maximum(1, np.floor(n_row * frac)), 0).astype(np.int64)
    is_test = rank < np.repeat(n_test, n_row)
    coo = m.tocoo()
    train = sp.csr_matrix(
        (coo.data[~is_test], (coo.row[~is_test], coo.col[~is_test])), shape=m.shape
    )
    test = sp.csr_matrix((coo.data[is_test], (coo.row[is_test], coo.col[is_test])), shape=m.shape)
    return train, test


def ndcg_at_k(top: np.ndarray, test: sp.csr_matrix, k: int = 10) -> float:
    """Mean binary nDCG@k over users with at least one test item; ``top`` holds item indices
    (``-1`` for padding), one row per user."""
    test = test.tocsr()
    discounts = 1.0 / np.log2(np.arange(2, k + 2))
    scores = []
    for u in range(test.shape[0]):
        truth = test.indices[test.indptr[u] : test.indptr[u + 1]]
        if len(truth) == 0:
            continue
        hits = np.isin(top[u, :k], truth)
        ideal = discounts[: min(len(truth), k)].sum()
        scores.append((discounts[: len(hits)] * hits).sum() / ideal)
    return float(np.mean(scores))


def popularity_top(train: sp.csr_matrix, k: int = 10) -> np.ndarray:
    """The "most popular unseen items" baseline: top-k by number of buyers, per user."""
    counts = np.asarray((train > 0).sum(axis=0)).ravel().astype(np.float64)
    order = np.argsort(-counts, kind="stable")
    out = np.full((train.shape[0], k), -1, dtype=np.int64)
    for u in range(train.shape[0]):
        seen = train.indices[train.indptr[u] : train.indptr[u + 1]]
        cand = order[: k + len(seen)]
        cand = cand[~np.isin(cand, seen)][:k]
        out[u, : len(cand)] = cand
    return out
