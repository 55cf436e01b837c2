"""A newcomer's first hour (issue 12): no silent wrong answers, a discoverable API.

Plots coloured by a Series follow its index; one-label calls refuse many labels; fit keeps the
caller's row order; from_transactions has its real signature and near-match errors; score of
given pairs; unknown customers in batches.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import scipy.sparse as sp

import rusket
from rusket.pca import project

# --- a small shop: 4 customer segments, 5 categories of "SKU-###" articles -----------------------

CATEGORIES = ["bags", "shoes", "hats", "belts", "socks"]


def _shop(seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    articles = [f"SKU-{i:03d}" for i in range(60)]
    catalogue = pd.DataFrame(
        {
            "article_id": articles,
            "category": [CATEGORIES[i % 5] for i in range(60)],
            "name": [f"Product {i}" for i in range(60)],
            "price": rng.uniform(5, 50, 60).round(2),
        }
    )
    customers = rng.integers(10_000, 10_300, 3000)
    # Each segment (customer % 4) buys mostly from "its" categories.
    seg = customers % 4
    cat = (seg + rng.integers(0, 2, 3000)) % 5
    art = cat + 5 * rng.integers(0, 12, 3000)
    lines = pd.DataFrame(
        {
            "customer_id": customers,
            "article_id": [articles[a] for a in art],
            "sales_amount": rng.exponential(20, 3000),
        }
    )
    return lines, catalogue


@pytest.fixture(scope="module")
def shop() -> tuple[pd.DataFrame, pd.DataFrame]:
    return _shop()


@pytest.fixture(scope="module")
def als(shop: tuple[pd.DataFrame, pd.DataFrame]) -> rusket.ALS:
    lines, _ = shop
    return rusket.ALS(factors=8, iterations=5, seed=3).from_transactions(
        lines, "customer_id", "article_id", "sales_amount"
    )


@pytest.fixture(scope="module")
def pop(shop: tuple[pd.DataFrame, pd.DataFrame]) -> rusket.Popularity:
    lines, _ = shop
    return rusket.Popularity.from_transactions(lines, "customer_id", "article_id")


# --- 1. plots: a Series is aligned by its index -------------------------------------------------


def _points(fig: Any) -> dict[str, list[str]]:
    """Trace name -> the labels it draws."""
    return {t.name: list(t.text) for t in fig.data}


def test_color_series_is_aligned_by_its_index(als: rusket.ALS, shop: Any) -> None:
    pytest.importorskip("plotly")
    _, catalogue = shop
    shuffled = catalogue.sample(frac=1.0, random_state=7).set_index("article_id")
    assert list(shuffled.index) != sorted(shuffled.index)  # really another order
    fig = als.pca(n_components=3).plot(color=shuffled["category"])
    traces = _points(fig)
    assert sorted(traces) == sorted(CATEGORIES)
    truth = catalogue.set_index("article_id")["category"]
    for category, labels in traces.items():
        assert set(labels) == set(truth.index[truth == category]), category
    assert sum(len(v) for v in traces.values()) == len(als.item_labels)
    # hover= too: every point's hover text is its own article's name.
    fig = als.pca(n_components=2).plot(hover=shuffled["name"])
    trace = fig.data[0]
    names = catalogue.set_index("article_id")["name"]
    assert [names[label] for label in trace.text] == list(trace.customdata)


def test_color_series_with_missing_labels_and_extra_entries() -> None:
    pytest.importorskip("plotly")
    labels = [f"SKU-{i:03d}" for i in range(20)]
    p = project(np.random.default_rng(0).normal(size=(20, 6)), labels)
    # Labels 15..19 are not in the Series; it holds ids the projection does not have.
    series = pd.Series(
        [*("odd" if i % 2 else "even" for i in range(15)), "extra", "extra", "extra"],
        index=[*labels[:15], "SKU-900", "SKU-901", "SKU-902"],
    ).sample(frac=1.0, random_state=1)
    traces = _points(p.plot(color=series))
    assert sorted(traces) == ["(none)", "even", "odd"]
    assert traces["(none)"] == labels[15:]
    assert traces["even"] == labels[0:15:2] and traces["odd"] == labels[1:15:2]
    # Numbers with gaps: one continuous trace for the known, a grey "(none)" group for the rest.
    prices = pd.Series(np.arange(15.0), index=labels[:15])[::-1]
    fig = p.plot(color=prices)
    assert len(fig.data) == 2 and fig.data[1].name == "(none)"
    assert list(fig.data[0].text) == labels[:15]
    np.testing.assert_array_equal(fig.data[0].marker.color, np.arange(15.0))
    hover = p.plot(hover=pd.Series({"SKU-003": "three"})).data[0]
    assert hover.customdata[3] == "three" and hover.customdata[4] == ""


def test_series_mistakes_are_errors_and_arrays_stay_positional() -> None:
    pytest.importorskip("plotly")
    labels = [f"SKU-{i:03d}" for i in range(10)]
    p = project(np.random.default_rng(1).normal(size=(10, 5)), labels)
    cats = ["a" if i < 5 else "b" for i in range(10)]
    # A Series that is not indexed by the ids (the default RangeIndex): a clear error.
    with pytest.raises(ValueError, match=r"none of the 10 point labels.*set_index"):
        p.plot(color=pd.Series(cats))
    dup = pd.Series(["a", "b"], index=["SKU-001", "SKU-001"])
    with pytest.raises(ValueError, match="'SKU-001' more than once"):
        p.plot(color=dup)
    # Plain lists and arrays mean "in labels order", and need one value per point.
    traces = _points(p.plot(color=np.array(cats)))
    assert traces == {"a": labels[:5], "b": labels[5:]}
    with pytest.raises(ValueError, match="one value per point"):
        p.plot(color=cats[:9])
    with pytest.raises(ValueError, match="one value per point"):
        p.plot(hover=[*cats, "x"])
    # A sample keeps each point's own value.
    q = project(np.random.default_rng(1).normal(size=(10, 5)), labels, max_points=4)
    for trace in q.plot(color=pd.Series(cats, index=labels)[::-1]).data:
        assert all((label < "SKU-005") == (trace.name == "a") for label in trace.text)


# --- 2. one label means one label ---------------------------------------------------------------


@pytest.mark.parametrize("kind", ["list", "tuple", "array", "series", "set"])
def test_one_label_calls_refuse_many_labels(als: rusket.ALS, kind: str) -> None:
    users = [int(als.user_labels[1]), int(als.user_labels[0])]
    items = [str(als.item_labels[1]), str(als.item_labels[0])]

    def many(values: list[Any]) -> Any:
        return {
            "list": list,
            "tuple": tuple,
            "array": np.asarray,
            "series": pd.Series,
            "set": set,
        }[kind](values)

    with pytest.raises(TypeError, match=r"batch_recommend\(users="):
        als.recommend_items(many(users), n=3)
    with pytest.raises(TypeError, match="recommend_users takes one item label"):
        als.recommend_users(many(items), n=3)
    with pytest.raises(TypeError, match="similar_items takes one item label"):
        als.similar_items(many(items), n=3)
    # One-element containers too: never silently their first element.
    with pytest.raises(TypeError, match="one user label"):
        als.recommend_items(many(users[:1]), n=3)


def test_one_label_calls_take_numpy_scalars(als: rusket.ALS) -> None:
    user = als.user_labels[4]
    want = als.recommend_items(int(user), n=3)
    for key in (user, np.int32(user), np.array(user)):
        got = als.recommend_items(key, n=3)
        np.testing.assert_array_equal(got[0], want[0])


# --- 3. fit keeps the caller's row and column order ---------------------------------------------


def _blocks(seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Two groups of users buying from two disjoint groups of items; rows and columns shuffled,
    so the labels are not sorted. Returns the matrix, each row's group and each column's."""
    rng = np.random.default_rng(seed)
    n_users, n_items = 40, 12
    user_group = np.arange(n_users) % 2
    item_group = np.arange(n_items) % 2
    dense = (user_group[:, None] == item_group[None, :]) & (rng.random((n_users, n_items)) < 0.7)
    dense[np.arange(n_users), user_group] = True  # everyone bought something of their group
    pu, pi = rng.permutation(n_users), rng.permutation(n_items)
    X = sp.csr_matrix(dense[pu][:, pi].astype(np.float64) * rng.integers(1, 5, (n_users, n_items)))
    return X, user_group[pu], item_group[pi]


@pytest.mark.parametrize("labels", ["strings", "integers"])
def test_fit_keeps_row_i_as_user_labels_i(labels: str) -> None:
    X, user_group, item_group = _blocks()
    rng = np.random.default_rng(5)
    if labels == "strings":
        user_labels = [f"cust-{v}" for v in rng.permutation(100)[: X.shape[0]]]
        item_labels = [f"SKU-{v:03d}" for v in rng.permutation(100)[: X.shape[1]]]
    else:
        user_labels = rng.permutation(1000)[: X.shape[0]].tolist()
        item_labels = (rng.permutation(1000)[: X.shape[1]] + 5000).tolist()
    assert user_labels != sorted(user_labels) and item_labels != sorted(item_labels)
    als = rusket.ALS(factors=4, iterations=8, seed=0).fit(
        X, user_labels=user_labels, item_labels=item_labels
    )
    assert als.user_labels.tolist() == user_labels
    assert als.item_labels.tolist() == item_labels
    seen = als._fitted("_user_items")
    np.testing.assert_array_equal(seen.toarray() > 0, X.toarray() > 0)
    # Row i of the factors is user_labels[i]: its best items are those of its own group.
    scores = als.user_factors @ als.item_factors.T
    same = user_group[:, None] == item_group[None, :]
    assert np.all(np.where(same, scores, -np.inf).max(1) > np.where(same, -np.inf, scores).max(1))
    for i in (0, 7, 23):
        items, got = als.recommend_items(user_labels[i], n=3, exclude_seen=False)
        cols = [item_labels.index(v) for v in items.tolist()]
        assert item_group[cols[0]] == user_group[i]
        np.testing.assert_allclose(got, scores[i, cols], rtol=1e-5)
        users, _ = als.recommend_users(item_labels[i % 12], n=40, exclude_seen=True)
        buyers = {user_labels[r] for r in X[:, i % 12].nonzero()[0]}
        assert buyers.isdisjoint(users.tolist()) and len(users) == 40 - len(buyers)
    # Labels reach every output as the caller gave them.
    recs = als.batch_recommend(n=2, format="pandas")
    assert recs.user_id.unique().tolist() == user_labels
    assert als.export_user_factors(format="numpy")["user_id"].tolist() == user_labels
    np.testing.assert_array_equal(
        als.export_item_factors(format="numpy")["vector"], als.item_factors
    )
    sims, _ = als.similar_items(item_labels[0], n=3)
    assert item_labels[0] not in sims.tolist()


def test_popularity_fit_keeps_the_column_order_and_evaluates() -> None:
    X, _, _ = _blocks(1)
    items = [f"SKU-{v:03d}" for v in (9, 3, 11, 0, 5, 2, 8, 1, 10, 4, 7, 6)]
    users = list(range(139, 99, -1))
    pop = rusket.Popularity().fit(X, user_labels=users, item_labels=items)
    assert pop.item_labels.tolist() == items
    np.testing.assert_array_equal(pop.buyer_counts, np.diff(X.tocsc().indptr))
    test = pd.DataFrame({"c": [139, 138], "a": [items[0], items[1]]})
    result = pop.evaluate(test, "c", "a", k=12)
    assert result["users"] + result["users_without_new_items"] == 2


# --- 4. a discoverable from_transactions ------------------------------------------------------


@pytest.mark.parametrize("cls", [rusket.ALS, rusket.Popularity])
def test_from_transactions_shows_its_real_signature(cls: type) -> None:
    names = ["data", "transaction_col", "item_col", "rating_col"]
    if cls is rusket.ALS:
        names.append("params")
    for target in (cls.from_transactions, cls().from_transactions):
        sig = inspect.signature(target)
        assert list(sig.parameters) == names
        assert sig.parameters["rating_col"].default is None
        assert "transaction_col" in (target.__doc__ or "")
        assert target.__name__ == "from_transactions"


@pytest.mark.parametrize("cls", [rusket.ALS, rusket.Popularity])
def test_unknown_keywords_name_the_valid_ones_and_a_near_match(shop: Any, cls: type) -> None:
    lines, _ = shop
    with pytest.raises(TypeError, match=r"'user_col' \(did you mean transaction_col\?\)") as e:
        cls.from_transactions(lines, user_col="customer_id", item_col="article_id")
    assert "transaction_col, item_col, rating_col" in str(e.value)
    assert "customer id column" in str(e.value)
    with pytest.raises(TypeError, match=r"did you mean item_col\?"):
        cls().from_transactions(lines, "customer_id", article_col="article_id")
    with pytest.raises(TypeError, match=r"did you mean rating_col\?"):
        cls.from_transactions(lines, "customer_id", "article_id", ratng_col="sales_amount")
    with pytest.raises(TypeError, match="missing a required argument: 'item_col'"):
        cls.from_transactions(lines, "customer_id")


def test_unknown_model_parameters_get_a_near_match(shop: Any) -> None:
    lines, _ = shop
    with pytest.raises(TypeError, match=r"'factor' \(did you mean factors\?\)") as e:
        rusket.ALS.from_transactions(lines, "customer_id", "article_id", factor=8)
    assert "model parameters: factors, regularization" in str(e.value)
    with pytest.raises(TypeError, match=r"did you mean iterations\?"):
        rusket.ALS(factors=2).set_params(iteration=3)
    with pytest.raises(TypeError, match="valid parameters: \\(none\\)"):
        rusket.Popularity().set_params(factors=3)
    # Nothing was changed by the refused calls; valid keywords still work.
    model = rusket.ALS.from_transactions(
        lines, transaction_col="customer_id", item_col="article_id", factors=3, iterations=1
    )
    assert model.user_factors.shape[1] == 3


# --- 5. scores of given pairs ------------------------------------------------------------------


def test_score_of_aligned_pairs(als: rusket.ALS) -> None:
    rng = np.random.default_rng(0)
    u = rng.integers(0, len(als.user_labels), 50)
    i = rng.integers(0, len(als.item_labels), 50)
    users, items = als.user_labels[u], als.item_labels[i]
    got = als.score(users, items)
    assert got.dtype == np.float32 and got.shape == (50,)
    want = np.einsum("ij,ij->i", als.user_factors[u].astype(np.float64), als.item_factors[i])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    # The same numbers recommend_items gives.
    user = users[0]
    top, top_scores = als.recommend_items(user, n=5, exclude_seen=False)
    np.testing.assert_allclose(als.score(user, top), top_scores, rtol=1e-5, atol=1e-6)
    # Any label sequence: Series, tuples, one label against many.
    np.testing.assert_array_equal(als.score(pd.Series(users), tuple(items)), got)
    np.testing.assert_array_equal(
        als.score(users[:3], items[0]), als.score(users[:3], [items[0]] * 3)
    )
    assert als.score(users[0], items[0]).shape == (1,)
    assert als.score([], []).shape == (0,)


def test_score_errors(als: rusket.ALS) -> None:
    users, items = als.user_labels[:3], als.item_labels[:3]
    with pytest.raises(ValueError, match="3 users and 2 items"):
        als.score(users, items[:2])
    with pytest.raises(KeyError, match="unknown item 'SKU-999'"):
        als.score(users, [items[0], "SKU-999", items[1]])
    with pytest.raises(KeyError, match="unknown user 42"):
        als.score([users[0], 42], items[:2])
    with pytest.raises(KeyError, match="labels are integers"):
        als.score(["10001"], items[:1])
    with pytest.raises(rusket.NotFittedError):
        rusket.ALS().score(1, 2)


def test_popularity_score_is_the_buyer_count(pop: rusket.Popularity, shop: Any) -> None:
    lines, _ = shop
    buyers = lines.groupby("article_id").customer_id.nunique()
    items = buyers.index[::-1]
    got = pop.score(np.full(len(items), pop.user_labels[0]), items)
    np.testing.assert_array_equal(got, buyers.loc[items].to_numpy(dtype=np.float32))


# --- 6. unknown customers in a batch ----------------------------------------------------------


def _popular(lines: pd.DataFrame, item_labels: np.ndarray) -> tuple[list[str], list[float]]:
    """Items by distinct buyers, ties in item label order (a pure pandas reference)."""
    counts = lines.groupby("article_id").customer_id.nunique().reindex(item_labels, fill_value=0)
    order = sorted(range(len(counts)), key=lambda j: (-counts.iloc[j], j))
    return [counts.index[j] for j in order], [float(counts.iloc[j]) for j in order]


def test_unknown_raise_is_the_default(als: rusket.ALS) -> None:
    with pytest.raises(KeyError, match=r"unknown user 5.*unknown='drop'"):
        als.batch_recommend(users=[als.user_labels[0], 5, 6])
    with pytest.raises(ValueError, match="unknown must be one of"):
        als.batch_recommend(users=[5], unknown="ignore")
    with pytest.raises(KeyError, match="labels are integers"):
        als.batch_recommend(users=["new"], unknown="drop")
    # Booleans are never customers (numpy would read True as the customer 1).
    with pytest.raises(TypeError, match="never booleans"):
        als.batch_recommend(users=[als.user_labels[0], True], unknown="popular")


@pytest.mark.parametrize("model_name", ["als", "pop"])
def test_unknown_drop_and_popular_in_numpy(
    request: pytest.FixtureRequest, shop: Any, model_name: str
) -> None:
    lines, _ = shop
    model = request.getfixturevalue(model_name)
    known = model.user_labels[[5, 2, 9]].tolist()
    asked = [known[0], 1, known[1], 2, known[2]]  # 1 and 2 are new customers
    want_labels, want_scores = model.batch_recommend(n=4, users=known, format="numpy")
    labels, scores = model.batch_recommend(n=4, users=asked, unknown="drop", format="numpy")
    np.testing.assert_array_equal(labels, want_labels)
    np.testing.assert_array_equal(scores, want_scores)
    labels, scores = model.batch_recommend(n=4, users=asked, unknown="popular", format="numpy")
    assert labels.shape == scores.shape == (5, 4)
    np.testing.assert_array_equal(labels[[0, 2, 4]], want_labels)
    np.testing.assert_array_equal(scores[[0, 2, 4]], want_scores)
    items, counts = _popular(lines, model.item_labels)
    for row in (1, 3):
        assert labels[row].tolist() == items[:4]
        assert scores[row].tolist() == counts[:4]
    # Asking for more than there are items: every item once, then padding (if any) as for
    # known users.
    labels, scores = model.batch_recommend(
        n=len(items) + 2, users=[asked[0], 1], unknown="popular", format="numpy"
    )
    assert labels[1, : len(items)].tolist() == items
    assert (
        all(v is None for v in labels[1, len(items) :]) and np.isnan(scores[1, len(items) :]).all()
    )
    # Only unknown customers: "drop" leaves nothing, with the right shapes.
    labels, scores = model.batch_recommend(n=3, users=[1, 2], unknown="drop", format="numpy")
    assert labels.shape == scores.shape == (0, 3)


def test_unknown_modes_give_the_same_rows_in_every_format(als: rusket.ALS, spark: Any) -> None:
    pl = pytest.importorskip("polars")
    asked = [als.user_labels[3], 7, als.user_labels[1]]
    for mode, users in (("drop", [asked[0], asked[2]]), ("popular", asked)):
        arrow = als.batch_recommend(n=3, users=asked, unknown=mode, format="arrow")
        assert list(dict.fromkeys(arrow["user_id"].to_pylist())) == users
        rows = arrow.to_pylist()
        pdf = als.batch_recommend(n=3, users=asked, unknown=mode, format="pandas")
        assert pa.Table.from_pandas(pdf, preserve_index=False).to_pylist() == rows
        pol = als.batch_recommend(n=3, users=asked, unknown=mode, format="polars")
        assert isinstance(pol, pl.DataFrame) and pol.to_arrow().to_pylist() == rows
        sdf = als.batch_recommend(n=3, users=asked, unknown=mode, format="spark")
        got = sorted((r.user_id, r.rank, r.item_id, r.score) for r in sdf.collect())
        assert got == sorted((r["user_id"], r["rank"], r["item_id"], r["score"]) for r in rows)
        labels, _ = als.batch_recommend(n=3, users=asked, unknown=mode, format="numpy")
        assert labels.ravel().tolist() == arrow["item_id"].to_pylist()
    popular = als.batch_recommend(n=3, users=[7], unknown="popular", format="pandas")
    assert (
        popular.item_id.tolist()
        == als._fitted_state().item_labels[als._fitted_state().popular_items()[0][:3]].tolist()
    )


def test_distributed_scoring_of_a_model_with_unsorted_labels(spark: Any) -> None:
    from rusket import spark as rspark

    X, _, _ = _blocks(2)
    users = [f"cust-{v}" for v in np.random.default_rng(0).permutation(X.shape[0])]
    items = (np.random.default_rng(1).permutation(X.shape[1]) * 7).tolist()
    als = rusket.ALS(factors=3, iterations=3).fit(X, user_labels=users, item_labels=items)
    want = als.batch_recommend(n=4, format="arrow").to_pylist()
    got = rspark.batch_recommend(als, n=4, spark=spark).collect()
    key = sorted((r["user_id"], r["rank"], r["item_id"]) for r in want)
    assert sorted((r.user_id, r.rank, r.item_id) for r in got) == key
