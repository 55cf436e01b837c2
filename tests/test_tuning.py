"""ALS.tune: successive halving over ALS parameters on a validation split (fields, order,
refit on all data, reproducibility, time split, never worse than the defaults, beats
popularity, fixed parameters, bad input)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import rusket
from rusket import _tuning
from rusket.datasets import make_purchases
from rusket.evaluation import evaluate, time_split, train_test_split

COLS = ("customer_id", "article_id", "sales_amount")
PARAMS = (
    "factors",
    "regularization",
    "alpha",
    "confidence",
    "regularization_exponent",
    "iterations",
)
METRICS = ("ndcg", "precision", "recall", "map", "hit_rate", "coverage")


@pytest.fixture(scope="module")
def lines() -> pd.DataFrame:
    return make_purchases(n_customers=600, n_articles=150, n_lines=6000, seed=1)


@pytest.fixture(scope="module")
def result(lines) -> _tuning.TuneResult:
    return rusket.ALS.tune(lines, *COLS)


@pytest.fixture(scope="module")
def split(lines) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The validation split tune makes without time_col at seed 0."""
    return train_test_split(lines, "customer_id", "article_id", test_size=0.2, seed=0)


def fit(data: pd.DataFrame, **params: Any) -> rusket.ALS:
    return rusket.ALS(**params).from_transactions(data, *COLS)


# --- the result --------------------------------------------------------------------------------


def test_fields(result):
    assert isinstance(result, _tuning.TuneResult)
    assert set(result.best_params) == set(rusket.ALS().get_params())
    assert isinstance(result.best_model, rusket.ALS)
    assert isinstance(result.results, pd.DataFrame)
    assert len(result.results) == 24
    assert sorted(result.results["trial"]) == list(range(24))
    expected = {"trial", *PARAMS, "penalty", "budget", "rung", "default"}
    expected |= {f"{m}@10" for m in METRICS}
    assert set(result.results.columns) == expected
    assert result.metric == "ndcg@10"
    assert result.rungs == (3, 6, 15)
    assert set(result.results["budget"]) <= set(result.rungs)
    text = repr(result)
    assert "ndcg@10" in text and "popularity" in text and "defaults" in text


def test_sorted_best_first_and_best_params_in_first_row(result):
    scores = result.results["ndcg@10"].to_numpy()
    assert np.all(np.diff(scores) <= 0)
    first = result.results.iloc[0]
    for name in PARAMS:
        assert first[name] == result.best_params[name], name
    assert result.best_score == first["ndcg@10"]


def test_successive_halving_keeps_a_third_and_the_defaults(result):
    # 24 trials at 3 iterations, the best 8 at 6, the best 3 at 15; the defaults always reach 15.
    at_least = {b: int((result.results["budget"] >= b).sum()) for b in result.rungs}
    assert at_least[3] == 24 and at_least[6] in (8, 9) and at_least[15] in (3, 4)
    defaults = result.results[result.results["default"]]
    assert len(defaults) == 1 and defaults["trial"].iloc[0] == 0
    assert defaults["budget"].iloc[0] == 15


def test_best_model_is_refitted_on_all_data(lines, result):
    model = result.best_model
    assert model.get_params() == result.best_params
    np.testing.assert_array_equal(model.user_labels, np.unique(lines["customer_id"]))
    np.testing.assert_array_equal(model.item_labels, np.unique(lines["article_id"]))
    same = fit(lines, **result.best_params)
    np.testing.assert_array_equal(model.user_factors, same.user_factors)
    np.testing.assert_array_equal(model.item_factors, same.item_factors)


def test_scores_are_those_of_the_params_on_the_split(result, split):
    """best_params refitted on the training part reproduce best_score; the defaults and the
    popularity baseline are the plain models on the same split."""
    train, test = split
    assert evaluate(fit(train, **result.best_params), test, "customer_id", "article_id")[
        "ndcg@10"
    ] == pytest.approx(result.best_score, abs=1e-12)
    defaults = evaluate(fit(train), test, "customer_id", "article_id")
    assert result.defaults == pytest.approx(defaults, abs=1e-12)
    pop = rusket.Popularity.from_transactions(train, "customer_id", "article_id")
    assert result.baseline == evaluate(pop, test, "customer_id", "article_id")


def test_never_worse_than_defaults_and_beats_popularity(result):
    assert result.best_score >= result.defaults["ndcg@10"]
    assert result.best_score > 1.5 * result.baseline["ndcg@10"]


def test_same_seed_same_results_other_seed_other_draws(lines, result):
    again = rusket.ALS.tune(lines, *COLS)
    pd.testing.assert_frame_equal(again.results, result.results)
    assert again.best_params == result.best_params
    other = rusket.ALS.tune(lines, *COLS, seed=1, n_trials=4)
    assert set(other.results["alpha"]) != set(result.results["alpha"][result.results.trial < 4])


def test_other_frame_kinds_give_the_same_search(lines, result):
    table = pa.Table.from_pandas(lines, preserve_index=False)
    for data in (table, pl.from_arrow(table).lazy()):
        pd.testing.assert_frame_equal(rusket.ALS.tune(data, *COLS).results, result.results)


@pytest.mark.spark
def test_spark_frame_gives_the_same_search(spark, lines):
    """The columns used are collected once through Arrow; the search is the local one."""
    sdf = spark.createDataFrame(lines)
    for time_col in (None, "order_date"):
        local = rusket.ALS.tune(lines, *COLS, time_col=time_col, n_trials=3)
        remote = rusket.ALS.tune(sdf, *COLS, time_col=time_col, n_trials=3)
        pd.testing.assert_frame_equal(remote.results, local.results)


# --- options -----------------------------------------------------------------------------------


def test_time_split(lines):
    res = rusket.ALS.tune(lines, *COLS, time_col="order_date", n_trials=8)
    train, test = time_split(lines, "order_date", test_size=0.2)
    assert "order_date" in res.split
    assert evaluate(fit(train, **res.best_params), test, "customer_id", "article_id")[
        "ndcg@10"
    ] == pytest.approx(res.best_score, abs=1e-12)
    assert res.best_score >= res.defaults["ndcg@10"] > res.baseline["ndcg@10"]
    np.testing.assert_array_equal(res.best_model.user_labels, np.unique(lines["customer_id"]))


def test_metric_with_its_k(lines):
    res = rusket.ALS.tune(lines, *COLS, metric="recall@5", n_trials=6)
    assert res.metric == "recall@5" and "recall@5" in res.results and "ndcg@5" in res.results
    assert np.all(np.diff(res.results["recall@5"].to_numpy()) <= 0)
    assert res.best_score == res.results["recall@5"].iloc[0] >= res.defaults["recall@5"]


def test_fixed_params_are_held_and_left_out_of_the_search(lines):
    res = rusket.ALS.tune(lines, *COLS, n_trials=8, factors=16, confidence="linear", num_threads=1)
    assert set(res.results["factors"]) == {16}
    assert set(res.results["confidence"]) == {"linear"}
    assert res.best_params["num_threads"] == 1 and res.best_model.num_threads == 1
    assert res.best_model.factors == 16 and res.best_model.user_factors.shape[1] == 16
    alphas = res.results.loc[~res.results["default"], "alpha"]
    assert alphas.between(0.01, 10).all()  # the alpha range of linear confidences


def test_fixed_iterations_is_the_full_budget(lines):
    res = rusket.ALS.tune(lines, *COLS, n_trials=6, iterations=5)
    assert res.rungs == (1, 2, 5)
    assert res.best_params["iterations"] == 5 and res.best_model.iterations == 5
    # Only trials trained to the fixed iterations can win; they come first.
    budgets = res.results["budget"].to_numpy()
    assert budgets[0] == 5 and np.all(np.diff((budgets == 5).astype(int)) <= 0)
    full = res.results[budgets == 5]
    assert (full["iterations"] == 5).all()
    assert np.all(np.diff(full["ndcg@10"].to_numpy()) <= 0)


def test_one_trial_is_the_defaults(lines):
    res = rusket.ALS.tune(lines, *COLS, n_trials=1)
    defaults = rusket.ALS().get_params()
    assert res.best_params == {**defaults, "iterations": res.best_params["iterations"]}
    assert len(res.results) == 1 and bool(res.results["default"].iloc[0])


def test_progress_bar(lines, capsys):
    rusket.ALS.tune(lines, *COLS, n_trials=3, progress=True)
    err = capsys.readouterr().err
    assert "ALS.tune" in err and "refit on all data" in err


# --- helpers -----------------------------------------------------------------------------------


def test_promote_keeps_the_best_third_and_the_defaults():
    def trial(number: int, score: float) -> _tuning._Trial:
        return _tuning._Trial(number, {}, {3: {"ndcg@10": score}})

    scores = [0.9, 0.5, 0.1, 0.5, 0.3, 0.8]
    alive = [trial(0, 0.0), *(trial(i, s) for i, s in enumerate(scores, 1))]
    kept = _tuning._promote(alive, 3, "ndcg@10")  # ceil(7 / 3) = 3, plus the defaults
    assert [t.number for t in kept] == [0, 1, 2, 6]  # ties: the lower trial number first


def test_rung_budgets():
    assert _tuning.rung_budgets(15) == (3, 6, 15)
    assert _tuning.rung_budgets(30) == (6, 12, 30)
    assert _tuning.rung_budgets(2) == (1, 2)
    assert _tuning.rung_budgets(1) == (1,)


def test_parse_metric():
    assert _tuning.parse_metric("ndcg@10") == ("ndcg", 10)
    assert _tuning.parse_metric("hit_rate@3") == ("hit_rate", 3)
    assert _tuning.parse_metric("MAP@5") == ("map", 5)


def test_search_space():
    rng = np.random.default_rng(0)
    base = rusket.ALS().get_params()
    draws = [_tuning.sample_params(rng, base, {}, auto_penalty=True) for _ in range(400)]
    assert {d["factors"] for d in draws} == {16, 32, 64, 128}
    logs = [d for d in draws if d["confidence"] == "log"]
    assert 0.65 < len(logs) / len(draws) < 0.85
    for d in draws:
        lo, hi = (0.1, 100.0) if d["confidence"] == "log" else (0.01, 10.0)
        assert lo <= d["alpha"] <= hi
        assert d["regularization"] == "auto" or 1e-2 <= d["regularization"] <= 1e3
        assert {k: v for k, v in d.items() if k not in _tuning.SEARCHED} == {
            k: v for k, v in base.items() if k not in _tuning.SEARCHED
        }
    autos = sum(d["regularization"] == "auto" for d in draws) / len(draws)
    assert 0.2 < autos < 0.4
    exponents = [d["regularization_exponent"] for d in draws]
    assert {0.0, 0.5, 1.0} == set(exponents)
    assert all(0.25 < exponents.count(v) / len(draws) < 0.42 for v in (0.0, 0.5, 1.0))
    # Fixing one parameter leaves the others' draws unchanged.
    a = _tuning.sample_params(np.random.default_rng(5), base, {})
    b = _tuning.sample_params(np.random.default_rng(5), {**base, "factors": 8}, {"factors": 8})
    assert b == {**a, "factors": 8}


# --- bad input ---------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["ndcg", "ndcg@0", "auc@10", "ndcg@x", "users@10"])
def test_unknown_metric(lines, metric):
    with pytest.raises(ValueError, match="valid metrics: 'ndcg@k', 'precision@k'"):
        rusket.ALS.tune(lines, *COLS, metric=metric)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"metric": 10}, TypeError, "metric must be a string"),
        ({"n_trials": 0}, ValueError, "n_trials must be >= 1"),
        ({"n_trials": 2.5}, TypeError, "n_trials must be an integer"),
        ({"n_trials": True}, TypeError, "n_trials must be an integer"),
        ({"seed": -1}, ValueError, "seed must be >= 0"),
        ({"progress": "yes"}, TypeError, "progress must be True or False"),
        ({"time_col": "day"}, KeyError, "time_col 'day' is not a column of data"),
        ({"time_col": "category"}, TypeError, "must hold timestamps, dates or numbers"),
        ({"rating_col": "customer_id"}, ValueError, "already used"),
        ({"factor": 8}, TypeError, "unknown ALS parameter.*'factor'.*valid parameters.*factors"),
        ({"factors": 0}, ValueError, "factors must be >= 1"),
        ({"confidence": "exp"}, ValueError, "confidence must be one of"),
        ({"iterations": 2.0}, TypeError, "iterations must be an integer"),
    ],
)
def test_bad_arguments(lines, kwargs, error, match):
    args = {"transaction_col": "customer_id", "item_col": "article_id", **kwargs}
    with pytest.raises(error, match=match):
        rusket.ALS.tune(lines, **args)


def test_bad_data(lines):
    with pytest.raises(KeyError, match="item_col 'sku' is not a column of data"):
        rusket.ALS.tune(lines, "customer_id", "sku")
    with pytest.raises(TypeError, match="transaction_col must be a column name"):
        rusket.ALS.tune(lines, 1, "article_id")
    with pytest.raises(TypeError, match="data must be a pandas, polars"):
        rusket.ALS.tune(lines.to_dict("list"), "customer_id", "article_id")
    with pytest.raises(ValueError, match="no rows"):
        rusket.ALS.tune(lines.iloc[:0], "customer_id", "article_id")
    with pytest.raises(ValueError, match="negative"):
        rusket.ALS.tune(lines.assign(sales_amount=-1.0), *COLS)
