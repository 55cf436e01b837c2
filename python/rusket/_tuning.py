"""Hyper-parameter search for :class:`rusket.ALS` by successive halving (``ALS.tune``).

The data is split once into a training and a validation part (by time, or per customer);
every trial trains on the training part and is scored with :func:`rusket.evaluation.evaluate`
on the validation part. The budget of a trial is its number of ALS iterations. Successive
halving (Jamieson & Talwalkar 2016, the building block of Hyperband) trains all sampled
configurations with a small budget, keeps the best third (``eta = 3``), trains those again with
a larger budget, and so on up to the full budget. rusket's ALS has no warm continuation, so a
promoted trial is refit from scratch with more iterations; with the same seed that refit
retraces the earlier run exactly, so the scores of one trial at 3, 6 and 15 iterations are the
checkpoints of one training run (early stopping for free).
"""

from __future__ import annotations

import math
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from rusket._optional import require
from rusket._validation import check_int
from rusket.evaluation import evaluate, time_split, train_test_split
from rusket.interactions import Interactions, _columns_of, _kind, to_arrow

__all__ = ["TuneResult", "tune"]

#: Keep the best ``1 / ETA`` of the trials of a rung.
ETA = 3
#: Rung budgets as shares of the full budget (``iterations``): 3, 6 and 15 iterations for the
#: default 15. On ``make_purchases`` data (two seeds, 30 random configurations each) the
#: Spearman correlation of nDCG@10 after 3 / 6 iterations with nDCG@10 after 15 is 0.92 / 0.97
#: (0.80-0.85 after 2), and the final top three are among the best ten after 3 iterations.
RUNG_SHARES = (0.2, 0.4, 1.0)
#: Share of the rows (time split) or of each customer's items (per-customer split) held out.
VALIDATION_SIZE = 0.2

_FACTORS = (16, 32, 64, 128)
_P_LOG = 0.75
_ALPHA_RANGE = {"log": (0.1, 100.0), "linear": (0.01, 10.0)}
_REGULARIZATION_RANGE = (1e-2, 1e3)
#: Share of the trials with ``regularization="auto"`` (a penalty proportional to the mean
#: confidence) where the model offers it. On ``make_purchases`` (3 data seeds x 4 tune seeds,
#: scored on a later time hold-out) it lifted the tuned nDCG@10 by 0.002-0.008 over the
#: log-uniform draws alone.
_P_AUTO = 0.3
#: ``regularization_exponent`` (how the penalty grows with a row's pairs): one of these, uniform.
#: 0.5 (the default) ranks best on MovieLens and the make_purchases logs, 0 on the power-law
#: synthetic log of benchmarks/bench_als.py at high rank: the best value depends on the data.
_EXPONENTS = (0.0, 0.5, 1.0)
#: The parameters drawn per trial; ``iterations`` is the budget.
SEARCHED = ("factors", "regularization", "alpha", "confidence", "regularization_exponent")
_RESULT_PARAMS = (*SEARCHED, "iterations")
_METRICS = ("ndcg", "precision", "recall", "map", "hit_rate", "coverage")
_METRIC_RE = re.compile(r"^([a-z_]+)@([0-9]+)$")


@dataclass(frozen=True, eq=False)
class TuneResult:
    """What :meth:`rusket.ALS.tune` found.

    Attributes
    ----------
    best_params : dict
        Every parameter of the best model (``rusket.ALS(**best_params)`` rebuilds it),
        ``iterations`` included.
    best_model : ALS
        A model with ``best_params`` refitted on all of the data.
    results : pandas.DataFrame
        One row per trial, best first: ``trial`` (0 is the model's defaults), the searched
        parameters ``factors``, ``regularization`` (a number or ``"auto"``), ``alpha``,
        ``confidence``, ``regularization_exponent``, ``penalty`` (the L2 penalty ``lambda``
        used, ``"auto"`` resolved; a row's is ``lambda * max(n, 1) ** exponent``) and
        ``iterations`` (of the row's model), every metric of
        :func:`rusket.evaluation.evaluate` at the tuned ``k`` on the validation split,
        ``budget`` (the most iterations the trial was trained with), ``rung`` (the last rung it
        reached, from 0) and ``default``.
    metric : str
        The metric maximised, e.g. ``"ndcg@10"``.
    best_score : float
        ``metric`` of the best trial on the validation split.
    defaults : dict
        :func:`~rusket.evaluation.evaluate` of the model's default parameters (with the fixed
        ones applied) on the validation split.
    baseline : dict
        :func:`~rusket.evaluation.evaluate` of :class:`rusket.Popularity` on the same split:
        the number to beat.
    split : str
        How the validation split was made.
    rungs : tuple of int
        The iteration budgets of the rungs.
    """

    best_params: dict[str, Any]
    best_model: Any
    results: Any
    metric: str
    best_score: float
    defaults: dict[str, Any]
    baseline: dict[str, Any]
    split: str
    rungs: tuple[int, ...]

    def __repr__(self) -> str:
        shown = [f"{k}={_short(self.best_params[k])}" for k in _RESULT_PARAMS]
        if self.best_params["regularization"] == "auto":
            i = _RESULT_PARAMS.index("regularization")
            shown[i] += f" ({_short(float(self.results['penalty'].iloc[0]))})"
        params = ", ".join(shown)
        pop = float(self.baseline[self.metric])
        default = float(self.defaults[self.metric])
        ratio = f" ({self.best_score / pop:.2f}x)" if pop > 0 else ""
        return (
            f"TuneResult({self.metric}={self.best_score:.4f} on the validation split\n"
            f"  vs defaults {default:.4f}, vs popularity {pop:.4f}{ratio}\n"
            f"  best_params: {params}\n"
            f"  {len(self.results)} trials, rungs of {', '.join(map(str, self.rungs))} "
            f"iterations; split {self.split}\n"
            "  see .results, .best_model)"
        )


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return repr(v)


# --- argument checks -------------------------------------------------------------------------


def parse_metric(metric: Any) -> tuple[str, int]:
    """``"ndcg@10"`` -> ``("ndcg", 10)``; ``ValueError`` listing the valid names otherwise.

    Examples
    --------
    >>> parse_metric("recall@20")
    ('recall', 20)
    """
    valid = ", ".join(f"'{m}@k'" for m in _METRICS)
    if not isinstance(metric, str):
        raise TypeError(f"metric must be a string such as 'ndcg@10', got {metric!r}")
    m = _METRIC_RE.match(metric.strip().lower())
    if m is None or m.group(1) not in _METRICS or int(m.group(2)) < 1:
        raise ValueError(
            f"unknown metric {metric!r}; valid metrics: {valid} with k a positive integer "
            "(e.g. 'ndcg@10', 'recall@20', 'map@5')"
        )
    return m.group(1), int(m.group(2))


def _check_column_args(data: Any, **names: str | None) -> list[str]:
    """The named columns (``None`` skipped), checked to be distinct strings present in data."""
    kind = _kind(data)  # TypeError for anything that is no supported frame
    available = _columns_of(data, kind)
    cols: list[str] = []
    for arg, col in names.items():
        if col is None:
            continue
        if not isinstance(col, str):
            raise TypeError(f"{arg} must be a column name (str), got {col!r}")
        if col not in available:
            raise KeyError(f"{arg} {col!r} is not a column of data; available columns: {available}")
        if col in cols:
            raise ValueError(f"{arg} {col!r} names a column already used by another argument")
        cols.append(col)
    return cols


def _check_fixed(model_cls: type, fixed_params: Mapping[str, Any]) -> dict[str, Any]:
    """The model's default parameters with ``fixed_params`` applied, checked by the model."""
    params = model_cls().get_params()
    unknown = [k for k in fixed_params if k not in params]
    if unknown:
        raise TypeError(
            f"unknown {model_cls.__name__} parameter(s) {', '.join(map(repr, unknown))} for "
            f"tune; valid parameters to hold fixed: {', '.join(params)}"
        )
    params.update(fixed_params)
    params["progress"] = False  # one bar for the whole search (tune's progress), not per fit
    model_cls(**params)._checked_params()  # TypeError / ValueError naming a bad value
    return params


def _offers_auto_penalty(model_cls: type, base: Mapping[str, Any]) -> bool:
    """Whether the model takes ``regularization="auto"``."""
    try:
        model_cls(**{**base, "regularization": "auto"})._checked_params()
    except (TypeError, ValueError):
        return False
    return True


def _check_seed(seed: Any) -> int:
    if seed is None:
        return secrets.randbelow(2**31)
    return check_int("seed", seed, minimum=0)


# --- the search ------------------------------------------------------------------------------


def rung_budgets(max_iterations: int) -> tuple[int, ...]:
    """The iteration budgets of the rungs for a full budget of ``max_iterations``.

    Examples
    --------
    >>> rung_budgets(15), rung_budgets(30), rung_budgets(2)
    ((3, 6, 15), (6, 12, 30), (1, 2))
    """
    return tuple(sorted({max(1, round(max_iterations * s)) for s in RUNG_SHARES}))


def _log_uniform(u: float, lo: float, hi: float) -> float:
    return float(math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))))


def sample_params(
    rng: np.random.Generator,
    base: Mapping[str, Any],
    fixed: Mapping[str, Any],
    auto_penalty: bool = False,
) -> dict[str, Any]:
    """One configuration: ``base`` with the searched parameters not in ``fixed`` drawn
    (``regularization="auto"`` in 30 % of the draws when ``auto_penalty``).

    Every draw takes the same random numbers whatever is fixed, so fixing one parameter does
    not change the values drawn for the others.
    """
    f_idx = int(rng.integers(len(_FACTORS)))
    is_log = bool(rng.random() < _P_LOG)
    u_alpha, u_reg, u_auto = float(rng.random()), float(rng.random()), float(rng.random())
    nu_idx = int(rng.integers(len(_EXPONENTS)))
    p = dict(base)
    reg: float | str = _log_uniform(u_reg, *_REGULARIZATION_RANGE)
    if auto_penalty and u_auto < _P_AUTO:
        reg = "auto"
    drawn = {
        "factors": _FACTORS[f_idx],
        "confidence": "log" if is_log else "linear",
        "regularization": reg,
        "regularization_exponent": _EXPONENTS[nu_idx],
    }
    for k, v in drawn.items():
        if k not in fixed:
            p[k] = v
    if "alpha" not in fixed:
        # The alpha range follows the trial's confidence: log confidences need larger scales.
        p["alpha"] = _log_uniform(u_alpha, *_ALPHA_RANGE[p["confidence"]])
    return p


@dataclass
class _Trial:
    number: int
    params: dict[str, Any]
    scores: dict[int, dict[str, Any]]  # budget -> evaluate() dict
    penalty: float = math.nan  # the L2 penalty the fits used (resolves "auto")

    @property
    def default(self) -> bool:
        return self.number == 0


def tune(
    model_cls: type,
    data: Any,
    transaction_col: str,
    item_col: str,
    rating_col: str | None = None,
    time_col: str | None = None,
    metric: str = "ndcg@10",
    n_trials: int = 24,
    seed: int | None = 0,
    progress: bool = False,
    **fixed_params: Any,
) -> TuneResult:
    """Search ALS parameters by successive halving on a validation split of ``data``.

    The implementation of :meth:`rusket.ALS.tune` (``model_cls`` is the model class).

    **Split.** With ``time_col``: :func:`~rusket.evaluation.time_split` (the last 20 % of the
    rows are the validation part; their customers who are new are not scored). Without:
    :func:`~rusket.evaluation.train_test_split` holding out 20 % of each customer's distinct
    articles, drawn with ``seed``.

    **Search space** (parameters in ``fixed_params`` are held fixed and not drawn):

    - ``factors``: one of 16, 32, 64, 128 (uniform);
    - ``confidence``: ``"log"`` with probability 0.75, else ``"linear"``;
    - ``alpha``: log-uniform in [0.1, 100] for ``"log"``, [0.01, 10] for ``"linear"``;
    - ``regularization``: log-uniform in [0.01, 1000] (the loss scales with the confidences),
      or ``"auto"`` (the model's data-scaled penalty) in 30 % of the trials;
    - ``regularization_exponent``: 0, 0.5 or 1 (uniform): one penalty for every row, the
      default's growth with the row's pairs, or ALS-WR's;
    - ``iterations``: the budget. Rungs at 20 %, 40 % and 100 % of the full budget (the
      model's default ``iterations``, 15: rungs of 3, 6 and 15 iterations; a fixed
      ``iterations`` sets the full budget).

    Trial 0 is the model's default parameters (with ``fixed_params`` applied); the other
    ``n_trials - 1`` are drawn with ``seed``.

    **Successive halving** (``eta = 3``): every trial is trained with the first budget and
    scored; the best third (rounded up) of a rung is trained again with the next budget, and so
    on. The defaults trial always goes on to the full budget, so the best trial scores at least
    as well as the defaults on the validation split. A trial's result is its best score over
    the budgets it was trained with (same seed, so the shorter runs are checkpoints of the
    longer one), with ``iterations`` set to that budget; when ``iterations`` is fixed only
    full-budget scores count and trials stopped earlier rank after those that reached it. The
    best result is refitted on all of ``data``.

    Parameters
    ----------
    model_cls : type
        The model class (``rusket.ALS``).
    data : DataFrame
        pandas, polars (eager or lazy), pyarrow or Spark order lines (Spark: the two to four
        columns used are collected to the driver through Arrow; the search runs locally).
    transaction_col, item_col : str
        The customer and article id columns.
    rating_col : str, optional
        Non-negative ratings (e.g. sales amount); ``None`` counts every line as 1.
    time_col : str, optional
        A timestamp, date or numeric column: validate on the latest 20 % of the lines.
    metric : str, default "ndcg@10"
        The metric to maximise: ``"ndcg@k"``, ``"precision@k"``, ``"recall@k"``, ``"map@k"``,
        ``"hit_rate@k"`` or ``"coverage@k"`` with any ``k >= 1``.
    n_trials : int, default 24
        Configurations tried, the defaults included.
    seed : int or None, default 0
        Seed of the per-customer split and of the draws: the same seed gives the same results
        frame and ``best_params``. ``None`` draws a fresh seed.
    progress : bool, default False
        Show a tqdm bar over the fits (needs ``rusket[progress]``).
    **fixed_params
        Model parameters held fixed in every trial and the final model (e.g. ``factors=32``,
        ``num_threads=1``); unknown names raise ``TypeError``. The model's own ``seed`` (of
        its initial factors) and ``progress`` keep their defaults: ``seed`` and ``progress``
        here are tune's.

    Returns
    -------
    TuneResult
        ``best_params``, ``best_model`` (refitted on all of ``data``), ``results`` (a row per
        trial, best first), ``best_score``, ``defaults`` and ``baseline`` (popularity's
        scores on the same split).

    Examples
    --------
    >>> import rusket
    >>> from rusket.datasets import make_purchases
    >>> lines = make_purchases(n_customers=300, n_articles=80, n_lines=3_000, seed=2)
    >>> result = rusket.ALS.tune(lines, "customer_id", "article_id", "sales_amount",
    ...                          n_trials=6, num_threads=1)
    >>> result.best_score >= result.defaults["ndcg@10"]
    True
    >>> len(result.best_model.user_labels) == lines["customer_id"].nunique()
    True
    """
    pd = require("pandas")
    cols = _check_column_args(
        data,
        transaction_col=transaction_col,
        item_col=item_col,
        rating_col=rating_col,
        time_col=time_col,
    )
    metric_name, k = parse_metric(metric)
    metric = f"{metric_name}@{k}"
    n_trials = check_int("n_trials", n_trials, minimum=1)
    seed = _check_seed(seed)
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True or False, got {progress!r}")
    base = _check_fixed(model_cls, fixed_params)
    iterations_fixed = "iterations" in fixed_params
    rungs = rung_budgets(int(base["iterations"]))

    # One Arrow table of the columns used: the splits and fits below read it directly.
    table = to_arrow(data, cols)
    if table.num_rows == 0:
        raise ValueError("the data has no rows: nothing to tune on")
    if time_col is not None:
        train, test = time_split(table, time_col, test_size=VALIDATION_SIZE)
        split = f"by time ({time_col!r}, last {VALIDATION_SIZE:.0%} of the lines)"
    else:
        train, test = train_test_split(
            table, transaction_col, item_col, test_size=VALIDATION_SIZE, seed=seed
        )
        split = f"per customer ({VALIDATION_SIZE:.0%} of each one's articles, seed={seed})"
    test = test.select([transaction_col, item_col])  # evaluate reads only these
    train_inter = Interactions.from_frame(train, transaction_col, item_col, rating_col)

    def score(model: Any) -> dict[str, Any]:
        return evaluate(model, test, transaction_col, item_col, k)

    from rusket.popularity import Popularity

    try:
        baseline = score(Popularity()._fit_interactions(train_inter))
    except ValueError as exc:
        raise ValueError(
            f"tune cannot validate on the split {split}: {exc}. Use more data"
            + (" or tune without time_col (a per-customer split)" if time_col else "")
        ) from exc

    rng = np.random.default_rng(seed)
    trials = [_Trial(0, dict(base), {})]
    auto = _offers_auto_penalty(model_cls, base)
    trials += [
        _Trial(i, sample_params(rng, base, fixed_params, auto), {}) for i in range(1, n_trials)
    ]

    bar = None
    if progress:
        bar = require("tqdm").tqdm(
            total=_planned_fits(n_trials, len(rungs)), desc="ALS.tune", unit="fit"
        )
    try:
        alive = trials
        best_so_far = -math.inf
        for r, budget in enumerate(rungs):
            if bar is not None:
                bar.total = bar.n + _planned_fits(len(alive), len(rungs) - r)
                bar.set_description(f"ALS.tune ({budget} it)")
            for t in alive:
                model = model_cls(**{**t.params, "iterations": budget})
                t.scores[budget] = score(model._fit_interactions(train_inter))
                t.penalty = float(getattr(model, "regularization_", t.params["regularization"]))
                best_so_far = max(best_so_far, float(t.scores[budget][metric]))
                if bar is not None:
                    bar.set_postfix({metric: f"{best_so_far:.4f}"})
                    bar.update(1)
            if r + 1 < len(rungs):
                alive = _promote(alive, budget, metric)
        best, rows = _ranking(trials, rungs, metric, iterations_fixed)
        best_params = {**best.params, "iterations": rows[0]["iterations"]}
        if bar is not None:
            bar.set_description("ALS.tune (refit on all data)")
        full = Interactions.from_frame(table, transaction_col, item_col, rating_col)
        best_model = model_cls(**best_params)._fit_interactions(full)
        if bar is not None:
            bar.update(1)
    finally:
        if bar is not None:
            bar.close()

    results = pd.DataFrame(rows)
    return TuneResult(
        best_params=best_params,
        best_model=best_model,
        results=results,
        metric=metric,
        best_score=float(rows[0][metric]),
        defaults=trials[0].scores[rungs[-1]],
        baseline=baseline,
        split=split,
        rungs=rungs,
    )


def _planned_fits(n: int, n_rungs: int) -> int:
    """Fits of ``n`` trials over ``n_rungs`` rungs, plus the final refit."""
    total = 1
    for _ in range(n_rungs):
        total += n
        n = math.ceil(n / ETA)
    return total


def _promote(alive: list[_Trial], budget: int, metric: str) -> list[_Trial]:
    """The best ``ceil(len / ETA)`` trials of a rung (ties: lower trial number), plus the
    defaults trial, in trial order."""
    ranked = sorted(alive, key=lambda t: (-float(t.scores[budget][metric]), t.number))
    keep = {t.number for t in ranked[: math.ceil(len(alive) / ETA)]}
    return [t for t in alive if t.number in keep or t.default]


def _ranking(
    trials: list[_Trial], rungs: tuple[int, ...], metric: str, iterations_fixed: bool
) -> tuple[_Trial, list[dict[str, Any]]]:
    """The best trial and one result row per trial, best first."""
    keyed = []
    for t in trials:
        reached = max(t.scores)
        if iterations_fixed:
            chosen = reached
        else:
            # The best checkpoint; on a tie the longer run.
            chosen = max(t.scores, key=lambda b: (float(t.scores[b][metric]), b))
        scores = t.scores[chosen]
        row: dict[str, Any] = {"trial": t.number}
        row.update({p: t.params[p] for p in SEARCHED})
        row["penalty"] = t.penalty
        row["iterations"] = chosen
        row.update({m: v for m, v in scores.items() if isinstance(v, float)})
        row.update(budget=reached, rung=rungs.index(reached), default=t.default)
        eligible = not iterations_fixed or reached == rungs[-1]
        keyed.append(((not eligible, -float(scores[metric]), t.number), t, row))
    keyed.sort(key=lambda x: x[0])
    return keyed[0][1], [row for _, _, row in keyed]
