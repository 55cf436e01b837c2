"""Splits (disjoint, complete, reproducible, exact at the boundaries, on every frame kind) and
ranking metrics (against slow pure-Python references and a brute-force ALS ranking)."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

import rusket
from rusket import evaluation
from rusket.evaluation import evaluate, leave_last_out, time_split, train_test_split

# --- references --------------------------------------------------------------------------------


def reference_metrics(ranked: list[list], relevant: list[set], k: int) -> dict[str, float]:
    """The textbook definitions, one user at a time, in plain Python."""
    sums = dict.fromkeys(["ndcg", "precision", "recall", "map", "hit_rate"], 0.0)
    for recs, rel in zip(ranked, relevant):
        recs = list(recs)[:k]
        flags = [1 if item in rel else 0 for item in recs] + [0] * (k - len(recs))
        dcg = sum(f / math.log2(r + 1) for r, f in enumerate(flags, start=1))
        idcg = sum(1 / math.log2(r + 1) for r in range(1, min(len(rel), k) + 1))
        hits = sum(flags)
        ap = 0.0
        for r in range(1, k + 1):
            if flags[r - 1]:
                ap += sum(flags[:r]) / r
        sums["ndcg"] += dcg / idcg
        sums["precision"] += hits / k
        sums["recall"] += hits / len(rel)
        sums["map"] += ap / min(len(rel), k)
        sums["hit_rate"] += 1.0 if hits else 0.0
    return {name: v / len(ranked) for name, v in sums.items()}


def assert_metrics(result: dict, expected: dict, k: int) -> None:
    for name, value in expected.items():
        assert result[f"{name}@{k}"] == pytest.approx(value, rel=1e-12, abs=1e-12), name


def label_array(labels: list) -> np.ndarray:
    return np.asarray(labels, dtype=object if isinstance(labels[0], str) else np.int64)


class FixedModel:
    """The model surface evaluate relies on, with a fixed ranking per user and the older
    ``_fitted("_user_items")`` accessor."""

    def __init__(self, user_labels, item_labels, ranking, seen):
        # like a fitted model: int64, or an object array of str
        self.user_labels = np.asarray(
            user_labels, dtype=object if isinstance(user_labels[0], str) else np.int64
        )
        self.item_labels = np.asarray(
            item_labels, dtype=object if isinstance(item_labels[0], str) else np.int64
        )
        self.ranking = ranking  # user label -> list of item labels, best first (seen included)
        self.seen = seen  # user label -> set of item labels
        self.calls = []

    def _fitted(self, name):
        assert name == "_user_items"
        rows, cols = [], []
        for u, items in self.seen.items():
            for i in items:
                rows.append(int(np.searchsorted(self.user_labels, u)))
                cols.append(int(np.searchsorted(self.item_labels, i)))
        shape = (len(self.user_labels), len(self.item_labels))
        return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=shape)

    def batch_recommend(self, n, exclude_seen, users, format):
        assert exclude_seen is True and format == "numpy"
        self.calls.append(list(users))
        str_labels = self.item_labels.dtype == object
        labels = np.full((len(users), n), None if str_labels else -1, dtype=self.item_labels.dtype)
        scores = np.full((len(users), n), np.nan)
        for r, u in enumerate(users):
            recs = [i for i in self.ranking[u] if i not in self.seen.get(u, set())][:n]
            labels[r, : len(recs)] = recs
            scores[r, : len(recs)] = 1.0  # all tied: only the order given counts
        return labels, scores


# --- ranking metrics ---------------------------------------------------------------------------


def test_metrics_hand_computed():
    # ranked a, b, c; relevant {a, c}; k = 3
    hits = np.array([[True, False, True]])
    m = evaluation._ranking_metrics(hits, np.array([2]), 3)
    idcg = 1 + 1 / math.log2(3)
    assert m["ndcg"] == pytest.approx((1 + 1 / 2) / idcg)  # 0.9197
    assert m["ndcg"] == pytest.approx(0.919721, abs=1e-6)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(1.0)
    assert m["map"] == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert m["hit_rate"] == 1.0


def test_metrics_perfect_and_empty_rankings():
    perfect = evaluation._ranking_metrics(np.array([[True, True, False]]), np.array([2]), 3)
    assert perfect["ndcg"] == pytest.approx(1.0)
    assert perfect["map"] == pytest.approx(1.0)
    assert perfect["recall"] == 1.0
    none = evaluation._ranking_metrics(np.zeros((2, 4), bool), np.array([1, 3]), 4)
    assert none == {"ndcg": 0.0, "precision": 0.0, "recall": 0.0, "map": 0.0, "hit_rate": 0.0}


def test_metrics_more_relevant_than_k():
    # 5 relevant items, both slots hit: the ideal list also has only k = 2 hits.
    m = evaluation._ranking_metrics(np.array([[True, True]]), np.array([5]), 2)
    assert m["ndcg"] == pytest.approx(1.0)
    assert m["map"] == pytest.approx(1.0)
    assert m["precision"] == 1.0
    assert m["recall"] == pytest.approx(0.4)
    # one hit at rank 2 of k = 2 with 5 relevant: AP = (1/2) / 2
    m = evaluation._ranking_metrics(np.array([[False, True]]), np.array([5]), 2)
    assert m["map"] == pytest.approx(0.25)
    assert m["ndcg"] == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))


@settings(max_examples=80, deadline=None)
@given(st.data())
def test_metrics_match_reference(data):
    k = data.draw(st.integers(1, 6))
    m = data.draw(st.integers(1, 8))
    hits = np.array(
        data.draw(st.lists(st.lists(st.booleans(), min_size=k, max_size=k), min_size=m, max_size=m))
    )
    n_rel = [int(h.sum()) + data.draw(st.integers(0 if h.any() else 1, 4)) for h in hits]
    ranked = [[(u, r) if hits[u, r] else ("miss", u, r) for r in range(k)] for u in range(m)]
    # the hit items plus relevant items that were not recommended
    relevant = [
        {(u, r) for r in range(k) if hits[u, r]}
        | {("extra", u, j) for j in range(n_rel[u] - int(hits[u].sum()))}
        for u in range(m)
    ]
    got = evaluation._ranking_metrics(hits, np.array([len(r) for r in relevant]), k)
    want = reference_metrics(ranked, relevant, k)
    for name in want:
        assert got[name] == pytest.approx(want[name], rel=1e-12, abs=1e-12)


# --- evaluate on a fixed ranking ---------------------------------------------------------------


@pytest.fixture
def fixed_model():
    ranking = {
        1: [10, 11, 12, 13, 14, 15],
        2: [15, 14, 13, 12, 11, 10],
        3: [12, 10, 11, 13, 14, 15],
        4: [11, 12, 13, 14, 15, 10],
    }
    seen = {1: {10}, 2: {13}, 3: {12}, 4: {11, 12, 13, 14, 15}}
    return FixedModel([1, 2, 3, 4], [10, 11, 12, 13, 14, 15], ranking, seen)


def test_evaluate_fixed_ranking_counts_and_values(fixed_model):
    test = pd.DataFrame(
        {
            "c": [1, 1, 1, 1, 2, 2, 2, 3, 9, 9, 4],
            "a": [12, 12, 10, 99, 14, 11, 10, 12, 10, 11, 10],
        }
    )
    out = evaluate(fixed_model, test, "c", "a", k=2)
    # user 1: recs [11, 12] (10 seen); relevant {12, 99} (10 is a repeat, 99 unknown)
    # user 2: recs [15, 14] (13 seen); relevant {14, 11, 10}
    # user 3: only a repeat (12) -> not evaluated; user 9 unknown
    # user 4: recs [10]; relevant {10} -> hit at rank 1, only one recommendation possible
    want = reference_metrics([[11, 12], [15, 14], [10]], [{12, 99}, {14, 11, 10}, {10}], k=2)
    assert_metrics(out, want, 2)
    assert out["ndcg@2"] == pytest.approx(((1 / math.log2(3)) / (1 + 1 / math.log2(3)) * 2 + 1) / 3)
    assert out["precision@2"] == pytest.approx((0.5 + 0.5 + 0.5) / 3)
    assert out["coverage@2"] == pytest.approx(5 / 6)  # 10, 11, 12, 14, 15
    assert out["users"] == 3
    assert out["unknown_users"] == 1
    assert out["users_without_new_items"] == 1
    assert out["unknown_items"] == 1
    assert list(out) == [
        "ndcg@2",
        "precision@2",
        "recall@2",
        "map@2",
        "hit_rate@2",
        "coverage@2",
        "users",
        "unknown_users",
        "users_without_new_items",
        "unknown_items",
    ]
    assert isinstance(out["users"], int) and isinstance(out["ndcg@2"], float)
    # one batch call for the evaluated users only, in the model's order
    assert fixed_model.calls == [[1, 2, 4]]


def test_evaluate_follows_the_models_order_on_tied_scores(fixed_model):
    # All scores are tied in FixedModel: rank 1 is whatever the model puts first.
    test = pd.DataFrame({"c": [2, 3], "a": [14, 10]})
    out = evaluate(fixed_model, test, "c", "a", k=1)
    # user 2 gets 15 first (miss), user 3 gets 10 first (hit)
    assert out["hit_rate@1"] == 0.5
    assert out["ndcg@1"] == 0.5


def test_evaluate_chunks_batch_calls(fixed_model, monkeypatch):
    monkeypatch.setattr(evaluation, "_EVAL_CHUNK", 2)
    test = pd.DataFrame({"c": [1, 2, 4], "a": [11, 15, 10]})
    out = evaluate(fixed_model, test, "c", "a", k=1)
    assert fixed_model.calls == [[1, 2], [4]]
    assert out["hit_rate@1"] == 1.0


def test_evaluate_string_labels():
    model = FixedModel(
        ["u1", "u2"], ["a", "b", "c"], {"u1": ["a", "b", "c"], "u2": ["c", "b", "a"]}, {}
    )
    test = pa.table({"user": ["u1", "u2", "u2"], "item": ["b", "a", "zz"]})
    out = evaluate(model, test, "user", "item", k=2)
    want = reference_metrics([["a", "b"], ["c", "b"]], [{"b"}, {"a", "zz"}], 2)
    assert_metrics(out, want, 2)
    assert out["unknown_items"] == 1


# --- evaluate on ALS against a brute-force ranking ----------------------------------------------


@pytest.fixture(scope="module")
def als_case():
    rng = np.random.default_rng(7)
    n = 1200
    log = pd.DataFrame(
        {
            "customer": rng.integers(0, 90, n),
            "article": [f"sku{i:02d}" for i in rng.integers(0, 40, n)],
        }
    )
    train, test = train_test_split(log, "customer", "article", test_size=0.3, seed=3)
    # customers and an article only the test knows
    extra = pd.DataFrame({"customer": [500, 500, 3], "article": ["sku01", "sku02", "new"]})
    test = pd.concat([test, extra], ignore_index=True)
    model = rusket.ALS(factors=4, iterations=3, seed=1).from_transactions(
        train, "customer", "article"
    )
    return model, train, test


def near_ties(model, train, k):
    """Customers whose k-th and (k+1)-th unseen items score within float32 rounding of each
    other: the kernel may order them either way, so they are left out of the comparison."""
    scores = model.user_factors.astype(np.float64) @ model.item_factors.astype(np.float64).T
    seen = {u: set(g) for u, g in train.groupby("customer")["article"]}
    items = list(model.item_labels)
    out = set()
    for row, u in enumerate(model.user_labels.tolist()):
        s = np.sort([scores[row, j] for j, it in enumerate(items) if it not in seen[u]])[::-1]
        if len(s) > k and s[k - 1] - s[k] <= 1e-5 * (1 + abs(s[k])):
            out.add(u)
    return out


def brute_force(model, train, test, k):
    """Top-k from the factors in float64 (seen items removed), metrics by the reference."""
    users, items = list(model.user_labels), list(model.item_labels)
    scores = model.user_factors.astype(np.float64) @ model.item_factors.astype(np.float64).T
    seen = {u: set(g) for u, g in train.groupby("customer")["article"]}
    ranked, relevant, recommended = [], [], set()
    without_new = 0
    for u, g in test.groupby("customer")["article"]:
        if u not in seen:
            continue
        rel = set(g) - seen[u]
        if not rel:
            without_new += 1
            continue
        row = users.index(u)
        cand = [j for j, it in enumerate(items) if it not in seen[u]]
        cand.sort(key=lambda j: (-scores[row, j], j))
        top = [items[j] for j in cand[:k]]
        recommended |= set(top)
        ranked.append(top)
        relevant.append(rel)
    return reference_metrics(ranked, relevant, k), len(recommended) / len(items), without_new


@pytest.mark.parametrize("k", [1, 5])
def test_evaluate_als_equals_brute_force(als_case, k):
    model, train, test = als_case
    ambiguous = near_ties(model, train, k)
    assert len(ambiguous) < 0.1 * len(model.user_labels)
    test = test[~test.customer.isin(ambiguous)]
    out = evaluate(model, test, "customer", "article", k=k)
    want, coverage, without_new = brute_force(model, train, test, k)
    for name, value in want.items():
        assert out[f"{name}@{k}"] == pytest.approx(value, rel=1e-9, abs=1e-12)
    assert out[f"coverage@{k}"] == pytest.approx(coverage)
    assert out["unknown_users"] == 1
    assert out["unknown_items"] == 1
    assert out["users_without_new_items"] == without_new
    known = set(test.customer) & set(train.customer)
    assert out["users"] + without_new == len(known)
    assert out[f"recall@{k}"] > 0  # the ranking is not empty of hits


def test_evaluate_same_result_on_every_frame_kind(als_case):
    model, _, test = als_case
    want = evaluate(model, test, "customer", "article", k=3)
    for frame in (pl.from_pandas(test), pl.from_pandas(test).lazy(), pa.Table.from_pandas(test)):
        assert evaluate(model, frame, "customer", "article", k=3) == want


# --- evaluate: bad input -----------------------------------------------------------------------


def test_evaluate_bad_input(als_case):
    model, train, test = als_case
    with pytest.raises(ValueError, match="k must be >= 1"):
        evaluate(model, test, "customer", "article", k=0)
    with pytest.raises(TypeError, match="k must be an integer"):
        evaluate(model, test, "customer", "article", k=2.0)
    with pytest.raises(TypeError, match="k must be an integer"):
        evaluate(model, test, "customer", "article", k=True)
    with pytest.raises(KeyError, match=r"'client'.*available columns: \['customer', 'article'\]"):
        evaluate(model, test, "client", "article")
    with pytest.raises(ValueError, match="no rows"):
        evaluate(model, test.iloc[:0], "customer", "article")
    with pytest.raises(ValueError, match="none of the 1 test customers are in the model"):
        evaluate(model, pd.DataFrame({"customer": [777], "article": ["sku01"]}), "customer",
                 "article")  # fmt: skip
    as_str = test.assign(customer=test.customer.astype(str))
    with pytest.raises(ValueError, match="user labels are integers"):
        evaluate(model, as_str, "customer", "article")
    with pytest.raises(ValueError, match="2 null id"):
        evaluate(model, test.assign(customer=test.customer.astype("Int64").where(
            test.index > 1)), "customer", "article")  # fmt: skip
    with pytest.raises(TypeError, match="integers or strings"):
        evaluate(model, test.assign(customer=test.customer * 1.5), "customer", "article")
    with pytest.raises(TypeError, match="column name"):
        evaluate(model, test, 1, "article")
    with pytest.raises(TypeError, match="pandas, polars"):
        evaluate(model, test.to_dict(), "customer", "article")
    with pytest.raises(rusket.NotFittedError):
        evaluate(rusket.ALS(), test, "customer", "article")
    bought = train[train.customer == train.customer.iloc[0]]  # only repeat purchases
    with pytest.raises(ValueError, match="nothing new to recommend"):
        evaluate(model, bought, "customer", "article")


# --- train_test_split --------------------------------------------------------------------------


@pytest.fixture
def log() -> pd.DataFrame:
    """Order lines with repeat purchases, a unique line id and a timestamp."""
    rng = np.random.default_rng(5)
    n = 600
    start = np.datetime64("2024-01-01T00:00:00", "ns")
    return pd.DataFrame(
        {
            "line": np.arange(n),
            "customer": rng.integers(0, 50, n),
            "article": [f"a{i}" for i in rng.integers(0, 12, n)],
            "when": start + rng.integers(0, 10**6, n).astype("timedelta64[s]"),
            "amount": rng.exponential(10.0, n),
        },
        index=np.arange(1000, 1000 + n),
    )


def as_kind(df: pd.DataFrame, kind: str):
    if kind == "pandas":
        return df
    if kind == "polars":
        return pl.from_pandas(df)
    if kind == "polars-lazy":
        return pl.from_pandas(df).lazy()
    table = pa.Table.from_pandas(df, preserve_index=False)
    return table if kind == "arrow" else table.combine_chunks().to_batches()[0]


def to_pandas(frame) -> pd.DataFrame:
    if isinstance(frame, pd.DataFrame):
        return frame
    if isinstance(frame, pl.LazyFrame):
        frame = frame.collect()
    if isinstance(frame, pl.DataFrame):
        return frame.to_pandas()
    if isinstance(frame, pa.RecordBatch):
        frame = pa.Table.from_batches([frame])
    if isinstance(frame, pa.Table):
        return frame.to_pandas()
    return frame.toPandas()


def assert_partition(df: pd.DataFrame, train, test, kind: str) -> tuple[set, set]:
    """Same kind and columns as the input; every line in exactly one side, in input order."""
    assert type(train) is type(test) is type(as_kind(df, kind))
    tr, te = to_pandas(train), to_pandas(test)
    assert list(tr.columns) == list(te.columns) == list(df.columns)
    assert list(tr.dtypes) == list(te.dtypes) == list(to_pandas(as_kind(df, kind)).dtypes)
    a, b = tr["line"].tolist(), te["line"].tolist()
    assert a == sorted(a) and b == sorted(b)
    assert not set(a) & set(b)
    assert sorted(a + b) == df["line"].tolist()
    return set(a), set(b)


KINDS = ["pandas", "polars", "polars-lazy", "arrow", "arrow-batch"]


@pytest.mark.parametrize("kind", KINDS)
def test_train_test_split_partitions_by_pair(log, kind):
    before = log.copy(deep=True)
    data = as_kind(log, kind)
    train, test = train_test_split(data, "customer", "article", test_size=0.25, seed=4)
    _, te_lines = assert_partition(log, train, test, kind)
    pd.testing.assert_frame_equal(log, before)
    side = log.assign(test=log["line"].isin(te_lines))
    # every order line of one (customer, article) pair is on the same side
    assert (side.groupby(["customer", "article"])["test"].nunique() == 1).all()
    per_customer = side.drop_duplicates(["customer", "article"]).groupby("customer")["test"]
    for _, flags in per_customer:
        p = len(flags)
        assert flags.sum() == min(math.floor(0.25 * p + 0.5), p - 1)
        assert (~flags).sum() >= 1


def test_train_test_split_same_on_every_local_kind_and_row_order(log):
    want = set(train_test_split(log, "customer", "article", seed=11)[1]["line"])
    for kind in KINDS[1:]:
        test = train_test_split(as_kind(log, kind), "customer", "article", seed=11)[1]
        assert set(to_pandas(test)["line"]) == want
    shuffled = log.sample(frac=1.0, random_state=0)
    assert set(train_test_split(shuffled, "customer", "article", seed=11)[1]["line"]) == want


def test_train_test_split_seeds(log):
    def lines(seed):
        return set(train_test_split(log, "customer", "article", seed=seed)[1]["line"])

    assert lines(1) == lines(1)
    assert lines(1) != lines(2)
    assert lines(None) != lines(None)  # fresh randomness (equal with negligible probability)


def test_train_test_split_keeps_single_pair_customers_and_pandas_index(log):
    df = pd.DataFrame(
        {"line": range(5), "customer": [1, 1, 1, 2, 2], "article": ["x", "x", "y", "z", "z"]},
        index=list("abcde"),
    )
    for seed in range(20):
        train, test = train_test_split(df, "customer", "article", test_size=0.9, seed=seed)
        # customer 1: two pairs -> one in test; customer 2: one pair -> all in train
        assert set(test["customer"]) == {1}
        assert set(test["article"]) in ({"x"}, {"y"})
        assert sorted(list(train.index) + list(test.index)) == list("abcde")
    train["new"] = 1  # an independent frame: no SettingWithCopyWarning (warnings are errors)
    assert "new" not in df.columns


def test_train_test_split_bad_input(log):
    for bad in (0, 1, 1.5, -0.1):
        with pytest.raises(ValueError, match="test_size"):
            train_test_split(log, "customer", "article", test_size=bad)
    with pytest.raises(TypeError, match="test_size"):
        train_test_split(log, "customer", "article", test_size="0.2")
    with pytest.raises(ValueError, match="seed must be >= 0"):
        train_test_split(log, "customer", "article", seed=-1)
    with pytest.raises(KeyError, match="'client'"):
        train_test_split(log, "client", "article")
    with pytest.raises(ValueError, match="3 null"):
        train_test_split(log.assign(article=log.article.where(log.line > 2)), "customer", "article")
    with pytest.raises(ValueError, match="different columns"):
        train_test_split(log, "customer", "customer")
    with pytest.raises(ValueError, match="no rows"):
        train_test_split(log.iloc[:0], "customer", "article")


# --- time_split --------------------------------------------------------------------------------


def test_time_split_is_exact_to_the_nanosecond():
    # 2024 in ns since the epoch is ~1.7e18: float64 cannot tell these apart.
    t0 = pd.Timestamp("2024-05-01 12:00:00")
    times = [t0 + pd.Timedelta(nanoseconds=d) for d in (2, 0, 1, 1, 3)]
    df = pd.DataFrame({"line": range(5), "t": times})
    assert len({float(t.value) for t in times}) < 4
    before = df.copy(deep=True)
    cut = t0 + pd.Timedelta(nanoseconds=1)
    for kind in KINDS:
        train, test = time_split(as_kind(df, kind), "t", cutoff=cut)
        tr, te = assert_partition(df, train, test, kind)
        assert te == {0, 4} and tr == {1, 2, 3}
    pd.testing.assert_frame_equal(df, before)
    # the same instant as numpy datetime64
    _, test = time_split(df, "t", cutoff=np.datetime64(cut.value, "ns"))
    assert set(test["line"]) == {0, 4}


def test_time_split_microsecond_columns_and_cutoffs():
    t0 = dt.datetime(2024, 5, 1, 12, 0, 0)
    times = [t0 + dt.timedelta(microseconds=d) for d in (0, 1, 2)]
    table = pa.table({"line": [0, 1, 2], "t": pa.array(times, pa.timestamp("us"))})
    # datetime, ISO string and a pandas Timestamp with extra nanoseconds (t > c iff t > floor(c))
    for cut in (
        t0 + dt.timedelta(microseconds=1),
        "2024-05-01T12:00:00.000001",
        pd.Timestamp("2024-05-01 12:00:00.000001999"),
    ):
        train, test = time_split(table, "t", cutoff=cut)
        assert test["line"].to_pylist() == [2] and train["line"].to_pylist() == [0, 1]
    # a date cut-off means midnight
    _, test = time_split(table, "t", cutoff=dt.date(2024, 5, 1))
    assert test.num_rows == 3


def test_time_split_time_zones():
    utc = pd.DatetimeIndex(["2024-01-01 10:00", "2024-01-01 11:00"], tz="UTC")
    df = pd.DataFrame({"line": [0, 1], "t": utc.tz_convert("Europe/Paris")})
    _, test = time_split(df, "t", cutoff="2024-01-01T11:30:00+01:00")  # 10:30 UTC
    assert test["line"].tolist() == [1]
    _, test = time_split(df, "t", cutoff=pd.Timestamp("2024-01-01 10:30", tz="UTC"))
    assert test["line"].tolist() == [1]
    with pytest.raises(TypeError, match="time-zone aware"):
        time_split(df, "t", cutoff="2024-01-01")
    naive = df.assign(t=df.t.dt.tz_localize(None))
    with pytest.raises(TypeError, match="no time zone"):
        time_split(naive, "t", cutoff=dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc))


def test_time_split_dates_and_numbers():
    days = [dt.date(2024, 1, d) for d in (1, 2, 2, 3)]
    df = pd.DataFrame({"line": range(4), "d": days, "n": [1, 2, 2, 3], "x": [0.5, 1.5, 1.5, 2.5]})
    assert set(time_split(df, "d", cutoff=dt.date(2024, 1, 2))[1]["line"]) == {3}
    assert set(time_split(df, "d", cutoff=dt.datetime(2024, 1, 2, 23, 59))[1]["line"]) == {3}
    assert set(time_split(df, "d", cutoff="2024-01-01")[1]["line"]) == {1, 2, 3}
    assert set(time_split(df, "n", cutoff=2)[1]["line"]) == {3}
    assert set(time_split(df, "n", cutoff=1.5)[1]["line"]) == {1, 2, 3}
    assert set(time_split(df, "x", cutoff=1.5)[1]["line"]) == {3}
    big = pd.DataFrame({"line": [0, 1], "n": [2**62 + 1, 2**62 + 2]})  # beyond float precision
    assert set(time_split(big, "n", cutoff=2**62 + 1)[1]["line"]) == {1}
    with pytest.raises(TypeError, match="holds numbers"):
        time_split(df, "n", cutoff="2024-01-01")
    with pytest.raises(TypeError, match="holds times"):
        time_split(df, "d", cutoff=5)


def test_time_split_auto_cutoff(log):
    for kind in KINDS:
        train, test = time_split(as_kind(log, kind), "when", test_size=0.2)
        _, te = assert_partition(log, train, test, kind)
        assert len(te) == 120  # distinct times: exactly round(0.2 * 600) rows
        t = to_pandas(test)["when"]
        assert t.min() > to_pandas(train)["when"].max()
    # ties: 10 rows at t=1, 5 at t=2, 5 at t=3; 20% -> 4 rows wanted: cutting at 2 gives 5
    df = pd.DataFrame({"line": range(20), "t": [1] * 10 + [2] * 5 + [3] * 5})
    assert set(time_split(df, "t", test_size=0.2)[1]["line"]) == set(range(15, 20))
    # 60% -> 12 rows wanted: cutting at 1 gives 10 (closer than 20 or 5)
    assert set(time_split(df, "t", test_size=0.6)[1]["line"]) == set(range(10, 20))
    # one time only: everything stays in train
    assert len(time_split(df.assign(t=7), "t")[1]) == 0


def test_time_split_bad_input(log):
    with pytest.raises(TypeError, match="time column 'article' has type"):
        time_split(log, "article")
    with pytest.raises(ValueError, match="2 null"):
        time_split(log.assign(when=log.when.where(log.line > 1)), "when")
    with pytest.raises(ValueError, match="1 null"):
        time_split(log.assign(amount=log.amount.where(log.line > 0)), "amount")
    with pytest.raises(ValueError, match="test_size"):
        time_split(log, "when", test_size=1.0)
    with pytest.raises(KeyError, match="'time'.*available columns"):
        time_split(log, "time")
    with pytest.raises(ValueError, match="not an ISO date"):
        time_split(log, "when", cutoff="yesterday")
    with pytest.raises(TypeError, match="holds times"):
        time_split(log, "when", cutoff=[2024])
    with pytest.raises(ValueError, match="no rows"):
        time_split(log.iloc[:0], "when")


# --- leave_last_out ----------------------------------------------------------------------------


def test_leave_last_out_ties_and_small_customers():
    df = pd.DataFrame(
        {
            "line": range(9),
            "customer": [1, 1, 1, 1, 2, 3, 3, 3, 3],
            "article": ["b", "a", "c", "a", "x", "k", "k", "m", "j"],
            "t": [5, 5, 1, 5, 9, 2, 2, 2, 1],
        }
    )
    before = df.copy(deep=True)
    for kind in KINDS:
        train, test = leave_last_out(as_kind(df, kind), "customer", "article", "t")
        _, te = assert_partition(df, train, test, kind)
        # customer 1: t=5 rows b(0), a(1), a(3): item b is last; customer 2 has one line;
        # customer 3: t=2 rows k(5), k(6), m(7): item m is last
        assert te == {0, 7}
        train, test = leave_last_out(as_kind(df, kind), "customer", "article", "t", n=2)
        _, te = assert_partition(df, train, test, kind)
        # customer 1: b(0), then a at the later position (3); customer 3: m(7), k(6)
        assert te == {0, 3, 6, 7}
    pd.testing.assert_frame_equal(df, before)
    _, test = leave_last_out(df, "customer", "article", "t", n=4)
    assert len(test) == 0  # no customer has more than 4 lines


def test_leave_last_out_times(log):
    train, test = leave_last_out(log, "customer", "article", "when", n=2)
    assert_partition(log, train, test, "pandas")
    for c, g in log.groupby("customer"):
        held = test[test.customer == c]
        if len(g) <= 2:
            assert held.empty
        else:
            assert len(held) == 2
            assert held.when.min() >= train[train.customer == c].when.max()


def test_leave_last_out_bad_input(log):
    with pytest.raises(ValueError, match="n must be >= 1"):
        leave_last_out(log, "customer", "article", "when", n=0)
    with pytest.raises(TypeError, match="n must be an integer"):
        leave_last_out(log, "customer", "article", "when", n=1.0)
    with pytest.raises(TypeError, match="time column 'article'"):
        leave_last_out(log, "customer", "line", "article")
    with pytest.raises(KeyError, match="'ts'"):
        leave_last_out(log, "customer", "article", "ts")
    with pytest.raises(ValueError, match="1 null"):
        leave_last_out(log.assign(when=log.when.where(log.line > 0)), "customer", "article", "when")


# --- Spark ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def spark_log():
    rng = np.random.default_rng(8)
    n = 300
    start = np.datetime64("2024-03-01T00:00:00", "us")
    return pd.DataFrame(
        {
            "line": np.arange(n),
            "customer": rng.integers(0, 25, n),
            "article": [f"a{i}" for i in rng.integers(0, 10, n)],
            # few distinct times: heavy ties around every cut-off
            "when": start + rng.integers(0, 40, n).astype("timedelta64[h]"),
            "day": rng.integers(0, 30, n),
        }
    )


def spark_lines(frame) -> set:
    return set(frame.select("line").toPandas()["line"])


def spark_sides(train, test) -> tuple[list, list]:
    """Lines of both sides in one Spark job."""
    from pyspark.sql import functions as F

    both = train.select("line", F.lit(0).alias("side")).unionByName(
        test.select("line", F.lit(1).alias("side"))
    )
    rows = both.toPandas()
    return rows.line[rows.side == 0].tolist(), rows.line[rows.side == 1].tolist()


def assert_spark_partition(sdf, train, test, lines) -> set:
    assert train.schema == test.schema == sdf.schema
    a, b = spark_sides(train, test)
    assert not set(a) & set(b)
    assert sorted(a + b) == sorted(lines)
    return set(b)


@pytest.mark.spark
def test_spark_train_test_split(spark, spark_log):
    sdf = spark.createDataFrame(spark_log)
    train, test = train_test_split(sdf, "customer", "article", test_size=0.3, seed=5)
    held = assert_spark_partition(sdf, train, test, spark_log.line.tolist())
    side = spark_log.assign(test=spark_log.line.isin(held))
    assert (side.groupby(["customer", "article"])["test"].nunique() == 1).all()
    for _, flags in side.drop_duplicates(["customer", "article"]).groupby("customer")["test"]:
        assert flags.sum() == min(math.floor(0.3 * len(flags) + 0.5), len(flags) - 1)
    # the same seed on another partitioning (and row order) gives the same split; another
    # seed does not
    again = train_test_split(sdf.repartition(3), "customer", "article", test_size=0.3, seed=5)
    assert spark_lines(again[1]) == held
    other = train_test_split(sdf, "customer", "article", test_size=0.3, seed=6)
    assert spark_lines(other[1]) != held


@pytest.mark.spark
def test_spark_time_split_matches_local(spark, spark_log, monkeypatch):
    sdf = spark.createDataFrame(spark_log)
    for col, test_size in (("when", 0.2), ("day", 0.5)):
        want = set(time_split(spark_log, col, test_size=test_size)[1]["line"])
        train, test = time_split(sdf, col, test_size=test_size)
        assert assert_spark_partition(sdf, train, test, spark_log.line.tolist()) == want
    # a percentile_approx bracket on the wrong side of the answer is widened to the data
    real = evaluation._spark_bracket
    calls = []

    def wrong(df, key, p):
        calls.append(p)
        return real(df, key, [1.0, 0.0])  # lo = the latest time, hi = the earliest

    monkeypatch.setattr(evaluation, "_spark_bracket", wrong)
    want = set(time_split(spark_log, "when", test_size=0.3)[1]["line"])
    assert spark_lines(time_split(sdf, "when", test_size=0.3)[1]) == want
    assert len(calls) == 1


@pytest.mark.spark
def test_spark_time_split_cutoffs(spark):
    t0 = dt.datetime(2024, 5, 1, 12, 0, 0)
    df = pd.DataFrame(
        {"line": [0, 1, 2, 3], "t": [t0 + dt.timedelta(microseconds=d) for d in (2, 0, 1, 1)]}
    )
    sdf = spark.createDataFrame(df, "line long, t timestamp_ntz")
    sdf = sdf.withColumn("d", sdf.t.cast("date"))
    train, test = time_split(sdf, "t", cutoff="2024-05-01T12:00:00.000001")
    assert assert_spark_partition(sdf, train, test, [0, 1, 2, 3]) == {0}
    _, test = time_split(sdf, "t", cutoff=pd.Timestamp("2024-05-01 12:00:00.000000999"))
    assert spark_lines(test) == {0, 2, 3}
    assert spark_lines(time_split(sdf, "t", test_size=0.25)[1]) == {0}
    assert spark_lines(time_split(sdf, "d", cutoff=dt.date(2024, 4, 30))[1]) == {0, 1, 2, 3}
    with pytest.raises(TypeError, match="no time zone"):
        time_split(sdf, "t", cutoff="2024-05-01T12:00:00+00:00")
    with pytest.raises(TypeError, match="time column 'x' has type string"):
        time_split(sdf.withColumn("x", sdf.line.cast("string")), "x")


@pytest.mark.spark
def test_spark_leave_last_out_matches_local(spark, spark_log):
    df = spark_log.drop_duplicates(["customer", "when", "article"])  # no ties left to break
    sdf = spark.createDataFrame(df)
    for n in (1, 3):
        train, test = leave_last_out(sdf, "customer", "article", "when", n=n)
        want = set(leave_last_out(df, "customer", "article", "when", n=n)[1]["line"])
        assert assert_spark_partition(sdf, train, test, df.line.tolist()) == want


@pytest.mark.spark
def test_spark_bad_input(spark, log):
    sdf = spark.createDataFrame(log.assign(article=log.article.where(log.line > 1)))
    with pytest.raises(ValueError, match="2 null"):
        train_test_split(sdf, "customer", "article")
    with pytest.raises(KeyError, match="'client'"):
        leave_last_out(sdf, "client", "article", "when")
    with pytest.raises(ValueError, match="n must be >= 1"):
        leave_last_out(sdf, "customer", "article", "when", n=0)


@pytest.mark.spark
def test_spark_evaluate_equals_local(spark, als_case):
    model, _, test = als_case
    assert evaluate(model, spark.createDataFrame(test), "customer", "article", k=3) == evaluate(
        model, test, "customer", "article", k=3
    )


def test_k_beyond_the_catalogue_is_scored_over_every_article():
    import rusket

    df = pd.DataFrame({"c": [1, 1, 2, 2, 3, 3, 3], "a": [1, 2, 2, 3, 1, 3, 4]})
    model = rusket.Popularity().from_transactions(df, "c", "a")
    test = pd.DataFrame({"c": [1, 2], "a": [3, 4]})
    small, big = model.evaluate(test, "c", "a", k=4), model.evaluate(test, "c", "a", k=50)
    assert small["users"] == big["users"] == 2
    assert big["recall@50"] == 1.0 and big["hit_rate@50"] == 1.0
    assert big["ndcg@50"] == pytest.approx(small["ndcg@4"])
