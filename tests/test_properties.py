"""Property-based tests (hypothesis) of the data path: odd frames and matrices either give a
model whose labels are exactly the distinct ids, or a clear ``ValueError`` / ``TypeError`` /
``KeyError``; the scoring calls on every model so fitted never crash."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rusket

try:
    import polars as pl
except ImportError:  # pragma: no cover - polars is an optional extra
    pl = None

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

SETTINGS = settings(
    max_examples=int(__import__("os").environ.get("RUSKET_HYP", "70")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- strategies --------------------------------------------------------------------------------

#: Integer ids, the extremes of int64 often.
int_ids = st.one_of(
    st.sampled_from([INT64_MIN, INT64_MAX, 0, -1, 1]),
    st.integers(INT64_MIN, INT64_MAX),
)
#: String ids: unicode of any plane (no surrogates: not valid UTF-8), the empty string,
#: whitespace, NUL characters.
str_ids = st.one_of(
    st.sampled_from(["", " ", "\0", "a\0", "ä", "日本", "🛒", "A", "a"]),
    st.text(max_size=6),
)

CONTAINERS = [
    "pandas",
    "pandas-category",
    "pandas-nullable",
    "arrow",
    "arrow-dictionary",
    "arrow-chunked",
    "arrow-batch",
]
if pl is not None:
    CONTAINERS += ["polars", "polars-lazy"]

RATINGS = st.one_of(
    st.sampled_from([0.0, 0.0, 1.0, 0.5, 3.0, 1e6]),
    st.floats(min_value=0.0, max_value=1e4, allow_nan=False, allow_infinity=False),
)


@st.composite
def transactions(draw: Any) -> dict[str, Any]:
    """Order lines over small pools of ids (so duplicates are common): one row, one customer,
    one article, all duplicates, zero ratings, extreme ids all come up."""
    user_kind = draw(st.sampled_from(["int", "str"]))
    item_kind = draw(st.sampled_from(["int", "str"]))
    users = draw(
        st.lists(int_ids if user_kind == "int" else str_ids, min_size=1, max_size=5, unique=True)
    )
    items = draw(
        st.lists(int_ids if item_kind == "int" else str_ids, min_size=1, max_size=5, unique=True)
    )
    n = draw(st.integers(1, 20))
    rows_u = draw(st.lists(st.sampled_from(users), min_size=n, max_size=n))
    rows_i = draw(st.lists(st.sampled_from(items), min_size=n, max_size=n))
    ratings = draw(st.one_of(st.none(), st.lists(RATINGS, min_size=n, max_size=n)))
    container = draw(st.sampled_from(CONTAINERS))
    # A null id: only the containers that can hold one.
    null_at = None
    if container not in ("pandas", "pandas-category") and draw(st.integers(0, 9)) == 0:
        null_at = draw(st.integers(0, n - 1))
    chunks = sorted(draw(st.lists(st.integers(0, n), max_size=3)))
    return {
        "users": rows_u,
        "items": rows_i,
        "ratings": ratings,
        "user_kind": user_kind,
        "item_kind": item_kind,
        "container": container,
        "null_at": null_at,
        "chunks": chunks,
    }


def _arrow_ids(values: list[Any], kind: str, null_at: int | None) -> pa.Array:
    vals = [None if k == null_at else v for k, v in enumerate(values)]
    return pa.array(vals, pa.int64() if kind == "int" else pa.string())


def _split(arr: pa.Array, cuts: list[int]) -> pa.ChunkedArray:
    bounds = [0, *cuts, len(arr)]
    return pa.chunked_array([arr[a:b] for a, b in itertools.pairwise(bounds)], type=arr.type)


def build_frame(t: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """The same order lines in the requested container, and the lines as the container holds
    them (pandas categoricals merge strings that differ only by trailing NUL characters, ""
    and "\0" say, before rusket sees them)."""
    c, null_at = t["container"], t["null_at"]
    cols: dict[str, pa.Array] = {
        "customer": _arrow_ids(t["users"], t["user_kind"], null_at),
        "article": _arrow_ids(t["items"], t["item_kind"], None),
    }
    if t["ratings"] is not None:
        cols["amount"] = pa.array(t["ratings"], pa.float64())
    table = pa.table(cols)
    if c == "arrow":
        return table, t
    if c == "arrow-dictionary":
        return pa.table({k: v.dictionary_encode() for k, v in cols.items()}), t
    if c == "arrow-chunked":
        return pa.table({k: _split(v, t["chunks"]) for k, v in cols.items()}), t
    if c == "arrow-batch":
        return pa.RecordBatch.from_pydict(cols), t
    if c == "polars":
        return pl.from_arrow(table), t
    if c == "polars-lazy":
        return pl.from_arrow(table).lazy(), t
    df = pd.DataFrame(
        {
            "customer": pd.Series(cols["customer"].to_pylist(), dtype=object),
            "article": pd.Series(cols["article"].to_pylist(), dtype=object),
        }
    )
    if t["ratings"] is not None:
        df["amount"] = np.asarray(t["ratings"], dtype=np.float64)
    for name, kind in (("customer", t["user_kind"]), ("article", t["item_kind"])):
        if c == "pandas":
            df[name] = df[name].astype(np.int64 if kind == "int" else object)
        elif c == "pandas-category":
            df[name] = df[name].astype(np.int64 if kind == "int" else object).astype("category")
        else:  # nullable extension dtypes
            df[name] = df[name].astype("Int64" if kind == "int" else "string[pyarrow]")
    if c == "pandas-nullable" and t["ratings"] is not None:
        df["amount"] = df["amount"].astype("Float64")
    held = {"users": df["customer"].astype(object).tolist()}
    held["items"] = df["article"].astype(object).tolist()
    if t["null_at"] is None:
        return df, {**t, **held}
    return df, t


def distinct_sorted(values: list[Any]) -> list[Any]:
    return sorted(set(values))


# --- scoring calls that must never crash -------------------------------------------------------


def exercise_scoring(model: Any, ns: list[int]) -> None:
    """Every scoring call on the first and last labels, with small and huge n; the answers
    are consistent with the model's labels."""
    users, items = model.user_labels, model.item_labels
    item_set = set(items.tolist())
    user_set = set(users.tolist())
    for n in ns:
        for u in (users[0], users[-1]):
            labels, scores = model.recommend_items(u, n=n)
            assert len(labels) == len(scores) <= min(n, len(items))
            assert set(labels.tolist()) <= item_set and np.isfinite(scores).all()
            labels, _ = model.recommend_items(u, n=n, exclude_seen=False)
            assert len(labels) == min(n, len(items))
        for i in (items[0], items[-1]):
            labels, scores = model.recommend_users(i, n=n)
            assert len(labels) == min(n, len(users)) and set(labels.tolist()) <= user_set
        recs = model.batch_recommend(n=n, format="pandas")
        assert set(recs["user_id"].tolist()) <= user_set
        assert set(recs["item_id"].tolist()) <= item_set
        assert (recs["rank"] >= 1).all() and (recs["rank"] <= min(n, len(items))).all()
        idx, sc = model.batch_recommend(n=n, format="numpy")
        assert idx.shape[0] == sc.shape[0] == len(users)
        model.batch_recommend(n=n, users=list(users[:2]), format="arrow")
        if hasattr(model, "similar_items"):
            labels, _ = model.similar_items(items[0], n=n)
            assert items[0] not in labels.tolist() or len(items) == 1
    # Unknown labels of either kind: KeyError, never a crash or another customer's answer.
    for key in (_unknown(users), "not-a-label-\u2603", 2**64, 1.5):
        if key is None or key in user_set:
            continue
        with pytest.raises(KeyError):
            model.recommend_items(key)
    with pytest.raises((TypeError, KeyError)):
        model.recommend_items(True)


def _unknown(labels: np.ndarray) -> Any:
    """A label of the model's own kind that it does not have."""
    if labels.dtype == object:
        return max(labels.tolist()) + "\uffff"
    top, bottom = int(labels.max()), int(labels.min())
    if top < INT64_MAX:
        return top + 1
    return bottom - 1 if bottom > INT64_MIN else None


# --- from_transactions --------------------------------------------------------------------------


@SETTINGS
@given(transactions(), st.sampled_from(["ALS", "Popularity"]))
def test_from_transactions_gives_the_distinct_ids_or_a_clear_error(t, model_name):
    data, t = build_frame(t)
    model_cls = getattr(rusket, model_name)
    params = {"factors": 2, "iterations": 2, "seed": 0, "num_threads": 1}
    model = model_cls(**params) if model_name == "ALS" else model_cls()
    rating_col = "amount" if t["ratings"] is not None else None
    if t["null_at"] is not None:
        with pytest.raises(ValueError, match="null id"):
            model.from_transactions(data, "customer", "article", rating_col)
        return
    model.from_transactions(data, "customer", "article", rating_col)
    assert model.user_labels.tolist() == distinct_sorted(t["users"])
    assert model.item_labels.tolist() == distinct_sorted(t["items"])
    assert model.user_labels.dtype == (np.int64 if t["user_kind"] == "int" else object)
    if model_name == "ALS":
        assert np.isfinite(model.user_factors).all() and np.isfinite(model.item_factors).all()
    exercise_scoring(model, [1, 3, 10**9])


@SETTINGS
@given(transactions())
def test_the_same_lines_give_the_same_model_in_every_container(t):
    data, t = build_frame({**t, "null_at": None})
    params = {"factors": 2, "iterations": 2, "seed": 3, "num_threads": 1}
    rating_col = "amount" if t["ratings"] is not None else None
    ref = rusket.ALS(**params).from_transactions(
        build_frame({**t, "container": "arrow"})[0], "customer", "article", rating_col
    )
    got = rusket.ALS(**params).from_transactions(data, "customer", "article", rating_col)
    assert got.user_labels.tolist() == ref.user_labels.tolist()
    assert got.item_labels.tolist() == ref.item_labels.tolist()
    np.testing.assert_array_equal(got.user_factors, ref.user_factors)
    np.testing.assert_array_equal(got.item_factors, ref.item_factors)


@SETTINGS
@given(
    st.lists(st.sampled_from(["ids", "bools", "floats", "mixed", "uint64-big", "dates"])),
    st.integers(1, 6),
)
def test_id_columns_of_a_wrong_type_are_clear_errors(kinds, n):
    """Columns no id can come from: a TypeError or ValueError naming the column."""
    for kind in kinds or ["ids"]:
        bad: Any = {
            "ids": list(range(n)),
            "bools": [k % 2 == 0 for k in range(n)],
            "floats": [k + 0.5 for k in range(n)],
            "mixed": [k if k % 2 else str(k) for k in range(n)] + [1, "x"],
            "uint64-big": np.array([2**63 + k for k in range(n)], dtype=np.uint64),
            "dates": pd.date_range("2024-01-01", periods=n),
        }[kind]
        df = pd.DataFrame({"ids": pd.Series(bad)})
        df["article"] = 1
        if kind == "ids":
            assert rusket.Popularity().from_transactions(df, "ids", "article").user_labels.size
            continue
        with pytest.raises((TypeError, ValueError), match="column 'ids'"):
            rusket.Popularity().from_transactions(df, "ids", "article")


# --- fit on scipy matrices -------------------------------------------------------------------


@st.composite
def sparse_matrices(draw: Any) -> tuple[Any, Any, Any]:
    n_users = draw(st.integers(1, 8))
    n_items = draw(st.integers(1, 8))
    nnz = draw(st.integers(0, 20))
    rows = draw(st.lists(st.integers(0, n_users - 1), min_size=nnz, max_size=nnz))
    cols = draw(st.lists(st.integers(0, n_items - 1), min_size=nnz, max_size=nnz))
    vals = draw(st.lists(RATINGS, min_size=nnz, max_size=nnz))
    dtype = draw(st.sampled_from([np.float32, np.float64, np.int32, np.int64]))
    fmt = draw(st.sampled_from(["csr", "csc", "coo", "lil", "dok", "csr_array"]))
    # Duplicates in COO are summed; the other formats see them summed already.
    coo = sp.coo_matrix(
        (np.asarray(vals, dtype=np.float64).astype(dtype), (rows, cols)), shape=(n_users, n_items)
    )
    X = sp.csr_array(coo) if fmt == "csr_array" else coo.asformat(fmt)
    labels = draw(
        st.sampled_from(["none", "ints", "strs", "uint64"]),
    )
    if labels == "none":
        return X, None, None
    if labels == "ints":
        pool = draw(st.lists(int_ids, min_size=n_users, max_size=n_users, unique=True))
        return X, pool, None
    if labels == "strs":
        pool = draw(st.lists(str_ids, min_size=n_items, max_size=n_items, unique=True))
        return X, None, pool
    return X, np.arange(n_users, dtype=np.uint64) * np.uint64(3), None


@SETTINGS
@given(sparse_matrices(), st.sampled_from(["ALS", "Popularity"]))
def test_fit_on_random_scipy_matrices(problem, model_name):
    X, user_labels, item_labels = problem
    model_cls = getattr(rusket, model_name)
    params = {"factors": 2, "iterations": 2, "seed": 1, "num_threads": 1}
    model = model_cls(**params) if model_name == "ALS" else model_cls()
    before = X.copy()
    model.fit(X, user_labels=user_labels, item_labels=item_labels)
    n_users, n_items = X.shape
    given_users = list(range(n_users)) if user_labels is None else np.asarray(user_labels).tolist()
    given_items = list(range(n_items)) if item_labels is None else list(item_labels)
    # The labels are the given ones (in the given order or sorted: either way each names its
    # row of X, checked through the seen items below).
    assert sorted(model.user_labels.tolist()) == sorted(given_users)
    assert sorted(model.item_labels.tolist()) == sorted(given_items)
    # The caller's matrix is never modified.
    assert (abs(X - before)).sum() == 0
    dense = sp.csr_matrix(X).toarray()
    for r, user in enumerate(given_users):
        bought = {given_items[c] for c in np.flatnonzero(dense[r])}
        recs, _ = model.recommend_items(user, n=n_items)
        assert not bought & set(recs.tolist())
        assert len(recs) == n_items - len(bought)
    if model_name == "ALS":
        assert np.isfinite(model.user_factors).all()
    exercise_scoring(model, [1, 10**9])


@SETTINGS
@given(st.integers(1, 6), st.integers(1, 6), st.sampled_from([-1.0, math.nan, math.inf]))
def test_bad_ratings_in_a_matrix_are_value_errors(n_users, n_items, bad):
    X = sp.lil_matrix((n_users, n_items))
    X[n_users - 1, n_items - 1] = bad
    with pytest.raises(ValueError, match="rating"):
        rusket.ALS(factors=2, iterations=1).fit(X.tocsr())
