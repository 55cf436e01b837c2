"""The fitted state: built completely, swapped in one assignment, read once per call, picklable."""

from __future__ import annotations

import copy
import pickle
import threading

import numpy as np
import pandas as pd
import pytest

import rusket


def _frame(items: np.ndarray, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 600
    return pd.DataFrame(
        {
            "customer_id": np.concatenate([np.arange(60), rng.integers(0, 60, n - 60)]),
            "article_id": rng.choice(items, n),
            "sales_amount": rng.exponential(10, n),
        }
    )


# Two data sets over the same customers and partly different articles (20..39 in both).
FIRST = _frame(np.arange(0, 40), seed=1)
SECOND = _frame(np.arange(20, 70), seed=2)
COLS = ("customer_id", "article_id", "sales_amount")


def _new(kind: str) -> rusket.ALS | rusket.Popularity:
    return rusket.ALS(factors=4, iterations=2) if kind == "ALS" else rusket.Popularity()


def _answers(model) -> list:
    """Three calls; each one must answer from one model (a refit may come between them)."""
    return [
        model.recommend_items(7, n=5),
        model.recommend_users(25, n=6, exclude_seen=True),
        model.batch_recommend(n=3, users=[3, 7, 11], format="numpy"),
    ]


def _same(a, b) -> bool:
    if isinstance(a, list):
        return all(_same(x, y) for x, y in zip(a, b))
    return all(
        x.shape == y.shape
        and x.dtype == y.dtype
        and np.array_equal(x, y, equal_nan=x.dtype.kind == "f")
        for x, y in zip(a, b)
    )


@pytest.mark.parametrize("kind", ["ALS", "Popularity"])
def test_fit_assigns_the_state_once_at_the_end(kind):
    cls = type(_new(kind))

    class Recording(cls):  # type: ignore[misc,valid-type]
        def __setattr__(self, name, value):
            self.__dict__.setdefault("assigned", []).append(name)
            super().__setattr__(name, value)

    model = Recording(**_new(kind).get_params())
    model.__dict__["assigned"] = []
    model.from_transactions(FIRST, *COLS)
    assert model.assigned[-1] == "_state"
    assert model.assigned.count("_state") == 1
    # Nothing else a scoring method reads is assigned by training (ALS records its losses and
    # the penalty it used).
    assert set(model.assigned) <= {"_state", "loss_history_", "regularization_"}


@pytest.mark.parametrize("kind", ["ALS", "Popularity"])
def test_scoring_while_refitting_sees_one_model_or_the_other(kind):
    want = [_answers(_new(kind).from_transactions(data, *COLS)) for data in (FIRST, SECOND)]
    assert not _same(want[0], want[1])
    model = _new(kind).from_transactions(FIRST, *COLS)
    done = threading.Event()
    errors: list[str] = []
    seen_models = set()

    def refit() -> None:
        try:
            for r in range(30):
                model.from_transactions(SECOND if r % 2 == 0 else FIRST, *COLS)
        finally:
            done.set()

    def score() -> None:
        while not done.is_set():
            for call, got in enumerate(_answers(model)):
                matches = [i for i, w in enumerate(want) if _same(got, w[call])]
                if not matches:
                    errors.append(f"call {call}: {got!r}")
                    return
                seen_models.add(matches[0])

    threads = [threading.Thread(target=score) for _ in range(3)] + [threading.Thread(target=refit)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors[0]
    assert seen_models == {0, 1}  # the readers did run during the refits


@pytest.mark.parametrize("kind", ["ALS", "Popularity"])
def test_pickle_round_trip_without_caches(kind):
    model = _new(kind).from_transactions(FIRST, *COLS)
    plain = pickle.dumps(model)
    before = _answers(model)  # fills the scoring caches
    if kind == "ALS":
        model.similar_items(25, n=3)
    assert model._fitted_state()._cache  # something was cached
    data = pickle.dumps(model)
    assert len(data) == len(plain)  # caches are never pickled
    for back in (pickle.loads(data), copy.deepcopy(model)):
        assert type(back) is type(model) and back.get_params() == model.get_params()
        assert back._fitted_state()._cache == {}
        assert _same(_answers(back), before)
        assert not back._fitted_state().user_factors.flags.writeable
    if kind == "ALS":
        np.testing.assert_array_equal(
            pickle.loads(data).similar_items(25, n=3)[0], model.similar_items(25, n=3)[0]
        )
    unfitted = pickle.loads(pickle.dumps(_new(kind)))
    with pytest.raises(rusket.NotFittedError):
        unfitted.recommend_items(7)


def test_compatibility_accessor_and_read_only_state():
    model = rusket.ALS(factors=4, iterations=2).from_transactions(FIRST, *COLS)
    state = model._fitted_state()
    assert model._fitted("_user_items") is state.seen
    assert model._fitted("_user_factors") is state.user_factors is model.user_factors
    assert model._fitted("_item_factors") is state.item_factors is model.item_factors
    assert model._fitted("_user_labels") is state.user_labels is model.user_labels
    assert model._fitted("_item_labels") is state.item_labels is model.item_labels
    assert state.seen.shape == (len(state.user_labels), len(state.item_labels))
    with pytest.raises(AttributeError, match="no fitted part"):
        model._fitted("_nothing")
    with pytest.raises(rusket.NotFittedError, match="ALS model is not fitted"):
        rusket.ALS()._fitted("_user_items")
    with pytest.raises(ValueError, match="read-only"):
        model.user_factors[0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        model.item_labels[0] = 5
    # A refit replaces the state object; the old one stays intact for whoever still holds it.
    old = state.user_factors.copy()
    model.from_transactions(SECOND, *COLS)
    assert model._fitted_state() is not state
    np.testing.assert_array_equal(state.user_factors, old)
