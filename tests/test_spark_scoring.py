"""Scoring inside Spark executors gives exactly the rows of the local batch scoring."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import rusket
from rusket._formats import spark_to_arrow


@pytest.fixture(scope="module")
def models():
    rng = np.random.default_rng(21)
    n = 1500
    df = pd.DataFrame(
        {
            "customer_id": rng.integers(0, 150, n),
            "article_id": rng.integers(0, 70, n),
            "sales_amount": rng.exponential(30, n),
        }
    )
    df_str = df.assign(customer_id="c" + df.customer_id.astype(str))
    fit = rusket.ALS(factors=8, iterations=4)
    return (
        fit.from_transactions(df, "customer_id", "article_id", "sales_amount"),
        rusket.ALS(factors=8, iterations=4).from_transactions(
            df_str, "customer_id", "article_id", "sales_amount"
        ),
    )


def _rows(sdf):
    t = spark_to_arrow(sdf)
    return sorted(
        zip(t["user_id"].to_pylist(), t["rank"].to_pylist(), t["item_id"].to_pylist()),
        key=lambda r: (str(r[0]), r[1]),
    )


@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("exclude_seen", [True, False])
def test_distributed_scoring_equals_local(spark, models, which, exclude_seen):
    from rusket import spark as rspark

    model = models[which]
    dist = rspark.batch_recommend(model, n=7, exclude_seen=exclude_seen, num_partitions=3)
    local = model.batch_recommend(n=7, exclude_seen=exclude_seen, format="spark")
    assert dist.schema == local.schema
    assert _rows(dist) == _rows(local)
    scores = spark_to_arrow(dist)["score"].to_numpy()
    assert np.isfinite(scores).all()


def test_distributed_scoring_rejects_bad_arguments(spark, models):
    from rusket import spark as rspark

    with pytest.raises(ValueError, match="n must be >= 1"):
        rspark.batch_recommend(models[0], n=0)
    with pytest.raises(ValueError, match="num_partitions"):
        rspark.batch_recommend(models[0], n=3, num_partitions=0)
    with pytest.raises(rusket.NotFittedError):
        rspark.batch_recommend(rusket.ALS(), n=3)


@pytest.mark.parametrize("which", [0, 1])
def test_distributed_business_filters_equal_local(spark, models, which):
    from rusket import spark as rspark

    model = models[which]
    labels = model.item_labels
    candidates = list(labels[::3])  # a third of the catalogue "in stock"
    banned = [labels[0], labels[6]]  # also candidates: the ban wins
    dist = rspark.batch_recommend(
        model, n=5, num_partitions=2, candidates=candidates, exclude_items=banned
    )
    local = model.batch_recommend(n=5, format="spark", candidates=candidates, exclude_items=banned)
    rows = _rows(dist)
    assert rows == _rows(local)
    got = {r[2] for r in rows}
    assert got <= set(candidates) - set(banned)
    assert len(got) > 1
    with pytest.raises(KeyError, match="exclude_items"):
        rspark.batch_recommend(model, n=5, exclude_items=["no such article"])
