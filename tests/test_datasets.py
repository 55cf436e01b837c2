"""rusket.datasets: seeded synthetic purchase logs with the structure of real retail logs."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from rusket.datasets import make_articles, make_customers, make_purchases

COLUMNS = [
    "order_id",
    "order_date",
    "customer_id",
    "article_id",
    "category",
    "quantity",
    "sales_amount",
]
SMALL = {"n_customers": 300, "n_articles": 120, "n_lines": 3000}


@pytest.fixture(scope="module")
def lines() -> pd.DataFrame:
    """The defaults (2,000 customers, 500 articles, 20,000 lines), with the hidden segment."""
    df = make_purchases(seed=0)
    segment = make_customers(seed=0).set_index("customer_id")["segment"]
    return df.assign(segment=segment.loc[df["customer_id"]].to_numpy())


# --- reproducibility, columns, formats ---------------------------------------------------------


def test_same_seed_same_lines_other_seed_other_lines():
    a = make_purchases(seed=3, format="arrow", **SMALL)
    assert a.equals(make_purchases(seed=3, format="arrow", **SMALL))
    assert not a.equals(make_purchases(seed=4, format="arrow", **SMALL))
    assert make_articles(seed=3, format="arrow").equals(make_articles(seed=3, format="arrow"))
    assert make_customers(seed=3, format="arrow").equals(make_customers(seed=3, format="arrow"))


def test_columns_and_dtypes(lines):
    df = make_purchases(seed=1, **SMALL)
    assert list(df.columns) == COLUMNS
    assert len(df) == SMALL["n_lines"]
    for col in ("order_id", "customer_id", "article_id", "quantity"):
        assert df[col].dtype == np.int64, col
    assert df["sales_amount"].dtype == np.float64
    assert df["order_date"].dtype.kind == "M"
    assert df["category"].map(type).eq(str).all()
    assert len(lines) == 20_000


def test_arrow_schema():
    t = make_purchases(seed=1, format="arrow", **SMALL)
    assert t.schema.names == COLUMNS
    assert t.schema.field("order_date").type == pa.timestamp("us")
    assert t.schema.field("article_id").type == pa.int64()
    assert t.schema.field("category").type == pa.string()
    assert t.schema.field("sales_amount").type == pa.float64()


def test_every_format_holds_the_same_lines():
    pl = pytest.importorskip("polars")
    arrow = make_purchases(seed=2, format="arrow", **SMALL)
    pdf = make_purchases(seed=2, format="pandas", **SMALL)
    pldf = make_purchases(seed=2, format="polars", **SMALL)
    cols = make_purchases(seed=2, format="numpy", **SMALL)
    assert isinstance(pldf, pl.DataFrame)
    assert pldf.columns == COLUMNS
    assert pldf.schema["customer_id"] == pl.Int64
    assert pldf.schema["order_date"] == pl.Datetime("us")
    pd.testing.assert_frame_equal(pdf, arrow.to_pandas())
    assert pl.from_arrow(arrow).equals(pldf)
    np.testing.assert_array_equal(cols["sales_amount"], pdf["sales_amount"].to_numpy())
    np.testing.assert_array_equal(cols["article_id"], pdf["article_id"].to_numpy())


def test_string_article_labels_name_the_same_articles():
    ints = make_purchases(seed=5, **SMALL)
    strs = make_purchases(seed=5, article_labels="str", **SMALL)
    assert strs["article_id"].str.fullmatch(r"SKU-\d{4}").all()
    expected = ints["article_id"].map(lambda i: f"SKU-{i:04d}")
    pd.testing.assert_series_equal(strs["article_id"], expected)
    pd.testing.assert_frame_equal(strs.drop(columns="article_id"), ints.drop(columns="article_id"))
    wide = make_articles(n_articles=12_345, seed=0, article_labels="str")
    assert wide["article_id"].iloc[[0, -1]].tolist() == ["SKU-00001", "SKU-12345"]


def test_catalogue_and_customers_match_the_lines():
    kw = {"n_articles": SMALL["n_articles"], "seed": 6}
    df = make_purchases(n_customers=300, n_lines=3000, **kw)
    articles = make_articles(**kw).set_index("article_id")
    assert articles.index.tolist() == list(range(1, SMALL["n_articles"] + 1))
    assert articles["price"].between(2.0, 2000.0).all()
    assert articles["category"].nunique() == 16
    art = articles.loc[df["article_id"]]
    np.testing.assert_array_equal(art["category"].to_numpy(), df["category"].to_numpy())
    # sales_amount = price * quantity less a discount of at most 50%
    full = art["price"].to_numpy() * df["quantity"].to_numpy()
    amount = df["sales_amount"].to_numpy()
    assert np.all(amount <= full + 0.01)
    assert np.all(amount >= 0.5 * full - 0.01)
    assert (np.abs(amount - full) < 0.01).mean() > 0.7
    # nothing is bought before its launch
    assert np.all(df["order_date"].to_numpy() >= art["launch_date"].to_numpy())
    customers = make_customers(n_customers=300, seed=6, n_segments=8)
    assert customers["customer_id"].tolist() == list(range(1, 301))
    assert customers["segment"].between(0, 7).all()
    assert set(df["customer_id"]) == set(customers["customer_id"])  # n_lines >= n_customers


def test_dates_and_orders(lines):
    start = pd.Timestamp("2025-01-01")
    assert lines["order_date"].min() >= start
    assert lines["order_date"].max() < start + pd.Timedelta(days=365)
    assert lines["order_date"].is_monotonic_increasing
    assert lines["order_id"].is_monotonic_increasing
    per_order = lines.groupby("order_id")
    assert (per_order["customer_id"].nunique() == 1).all()
    assert (per_order["order_date"].nunique() == 1).all()
    assert 1.5 < per_order.size().mean() < 3.5
    # an order lists an article (almost always) once
    assert lines.duplicated(["order_id", "article_id"]).mean() < 0.02
    # each customer shops over time: the median span between first and last order is months
    dates = lines.groupby("customer_id")["order_date"]
    span = dates.max() - dates.min()
    assert span.median() > pd.Timedelta(days=60)
    # mild seasonality: toys sell more in Q4 than in Q2
    toys = lines[lines["category"] == "toys"]["order_date"].dt.quarter.value_counts()
    assert toys.get(4, 0) > toys.get(2, 0)


def test_start_and_days():
    df = make_purchases(seed=0, start=dt.date(2024, 3, 1), days=30, **SMALL)
    assert df["order_date"].min() >= pd.Timestamp("2024-03-01")
    assert df["order_date"].max() < pd.Timestamp("2024-03-31")
    same = make_purchases(seed=0, start=np.datetime64("2024-03-01"), days=30, **SMALL)
    pd.testing.assert_frame_equal(df, same)


# --- the shape of real retail logs -------------------------------------------------------------


def test_popularity_is_skewed_but_not_everything(lines):
    counts = lines["article_id"].value_counts()
    top = counts.iloc[: len(counts) // 10].sum() / len(lines)
    assert 0.3 < top < 0.8
    assert lines["article_id"].nunique() > 0.9 * 500  # a long tail that still sells


def test_few_articles_per_customer_with_a_heavy_tail(lines):
    distinct = lines.groupby("customer_id")["article_id"].nunique()
    assert distinct.median() <= 8
    assert distinct.max() >= 5 * distinct.median()
    assert lines["customer_id"].nunique() == 2000


def test_a_share_of_lines_rebuy(lines):
    first = lines.groupby(["customer_id", "article_id"])["order_id"].transform("min")
    rebuy = lines["order_id"] > first
    assert 0.15 < rebuy.mean() < 0.6
    # consumables come back far more often than durables
    by_cat = rebuy.groupby(lines["category"]).mean()
    assert by_cat["fresh food"] > 2 * by_cat["electronics"]
    assert make_purchases(seed=0, repeat_share=0.0, **SMALL).shape[0] == SMALL["n_lines"]


def test_amounts_span_orders_of_magnitude(lines):
    amount = lines["sales_amount"]
    assert amount.min() > 0
    assert amount.max() / amount.min() >= 100
    assert lines["quantity"].min() >= 1
    assert lines["quantity"].median() <= 2


def test_segments_buy_their_own_categories(lines):
    ct = pd.crosstab(lines["segment"], lines["category"])
    inside = ct.div(ct.sum(axis=1), axis=0)
    outside = (ct.sum(axis=0) - ct).div(ct.to_numpy().sum() - ct.sum(axis=1), axis=0)
    lifts = []
    for s in ct.index:
        lift = inside.loc[s] / outside.loc[s].clip(lower=1e-9)
        top3 = lift.sort_values(ascending=False).index[:3]
        lifts.append(inside.loc[s, top3].sum() / outside.loc[s, top3].sum())
    assert min(lifts) > 1.3
    assert np.median(lifts) > 2.5


def test_segment_favourites_are_not_the_global_best_sellers(lines):
    best = set(lines["article_id"].value_counts().index[:10])
    overlap = [
        len(best & set(g["article_id"].value_counts().index[:10]))
        for _, g in lines.groupby("segment")
    ]
    assert np.mean(overlap) < 5


def test_the_future_is_predictable_from_the_past(lines):
    """On a time split, each segment's own best sellers predict a customer's new articles far
    better than the global best sellers: latent structure that popularity cannot see."""
    cut = pd.Timestamp("2025-01-01") + pd.Timedelta(days=292)
    past = (lines["order_date"] < cut).to_numpy()
    user = lines["customer_id"].to_numpy() - 1
    item = lines["article_id"].to_numpy() - 1
    segment = make_customers(seed=0)["segment"].to_numpy()
    seen = np.zeros((2000, 500), dtype=bool)
    seen[user[past], item[past]] = True
    new = np.zeros_like(seen)
    new[user[~past], item[~past]] = True
    new &= ~seen
    counts = np.zeros((8, 500))
    np.add.at(counts, (segment[user[past]], item[past]), 1.0)
    rows = seen.any(axis=1) & new.any(axis=1)
    assert rows.sum() > 300  # most customers come back in the last 20% of the year

    def recall_at_10(scores: np.ndarray) -> float:
        scores = np.where(seen[rows], -np.inf, scores)
        top = np.argsort(-scores, axis=1, kind="stable")[:, :10]
        hits = np.take_along_axis(new[rows], top, axis=1).sum(axis=1)
        return float(np.mean(hits / np.minimum(new[rows].sum(axis=1), 10)))

    popularity = recall_at_10(np.broadcast_to(counts.sum(axis=0), (rows.sum(), 500)))
    by_segment = recall_at_10(counts[segment[rows]])
    assert popularity > 0.05  # popularity is a real baseline
    assert by_segment > 1.5 * popularity


# --- edge cases and bad arguments ---------------------------------------------------------------


def test_small_and_odd_sizes():
    one = make_purchases(n_customers=1, n_articles=1, n_lines=1, n_segments=1, n_categories=1)
    assert len(one) == 1 and one["article_id"].iloc[0] == 1
    few = make_purchases(n_customers=500, n_articles=30, n_lines=100, seed=2)
    assert len(few) == 100 and few["customer_id"].nunique() <= 100
    many = make_purchases(n_articles=200, n_categories=40, n_lines=2000, seed=2)
    assert many["category"].nunique() > 16
    assert make_articles(n_articles=40, n_categories=40)["category"].nunique() == 40


@pytest.mark.parametrize(
    ("kwargs", "exc", "name"),
    [
        ({"n_customers": 0}, ValueError, "n_customers"),
        ({"n_customers": 2.5}, TypeError, "n_customers"),
        ({"n_articles": 0}, ValueError, "n_articles"),
        ({"n_lines": 0}, ValueError, "n_lines"),
        ({"n_lines": True}, TypeError, "n_lines"),
        ({"n_segments": 0}, ValueError, "n_segments"),
        ({"n_segments": 11, "n_articles": 10, "n_categories": 5}, ValueError, "n_segments"),
        ({"n_categories": 0}, ValueError, "n_categories"),
        ({"n_categories": 11, "n_articles": 10}, ValueError, "n_categories"),
        ({"seed": -1}, ValueError, "seed"),
        ({"seed": "0"}, TypeError, "seed"),
        ({"days": 0}, ValueError, "days"),
        ({"start": "not a date"}, ValueError, "start"),
        ({"start": 20250101}, TypeError, "start"),
        ({"repeat_share": 1.5}, ValueError, "repeat_share"),
        ({"repeat_share": -0.1}, ValueError, "repeat_share"),
        ({"article_labels": "sku"}, ValueError, "article_labels"),
        ({"format": "excel"}, ValueError, "format"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, exc, name):
    with pytest.raises(exc, match=name):
        make_purchases(**kwargs)


def test_helpers_check_their_arguments():
    with pytest.raises(ValueError, match="n_articles"):
        make_articles(n_articles=0)
    with pytest.raises(ValueError, match="format"):
        make_articles(format="csv")
    with pytest.raises(ValueError, match="n_customers"):
        make_customers(n_customers=0)
    with pytest.raises(TypeError, match="seed"):
        make_customers(seed=1.0)
