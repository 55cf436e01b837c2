"""Implicit-feedback alternating least squares (Hu, Koren, Volinsky 2008).

The estimator follows scikit-learn's conventions: ``__init__`` only stores parameters,
``fit``/``from_transactions`` validate, train from scratch and return the fitted model. Every
public method speaks the user's own labels; internal row indices never leak.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import scipy.sparse as sp

from rusket import _core, _fold_in
from rusket._model import FactorModel, _ClassOrInstanceMethod, _Fitted, interactions_from_matrix
from rusket._optional import require
from rusket._validation import (
    check_choice,
    check_float,
    check_int,
    check_threads,
)
from rusket.interactions import Interactions

if TYPE_CHECKING:  # pragma: no cover
    from rusket._tuning import TuneResult

_SOLVERS = ("cg", "cholesky")
_CONFIDENCES = ("linear", "log")


class ALS(FactorModel):
    """Implicit-feedback matrix factorisation trained by alternating least squares.

    Every observed (user, item) pair with summed rating ``r > 0`` gets preference 1 and
    confidence ``c = 1 + alpha * log(1 + r / epsilon)`` (``confidence="log"``, the default: sales
    amounts and counts are heavy-tailed) or ``c = 1 + alpha * r`` (``confidence="linear"``, Hu et
    al. 2008); unobserved pairs have preference 0 and confidence 1. The loss
    ``sum c (p - x_u . y_i)^2 + sum_u lambda_u |x_u|^2 + sum_i lambda_i |y_i|^2`` is minimised
    by solving for all users, then all items, ``iterations`` times. Each customer's and each
    article's penalty grows with its number of distinct pairs ``n``:
    ``lambda_r = lambda * max(n_r, 1) ** regularization_exponent`` (frequency scaling, as in
    ALS-WR, Zhou et al. 2008, and Rendle et al. 2021).

    Parameters
    ----------
    factors : int, default 64
        Rank of the factorisation (length of each latent vector).
    regularization : float or "auto", default "auto"
        The L2 penalty ``lambda`` (per row: times ``max(n_r, 1) ** regularization_exponent``).
        ``"auto"`` scales it with the data: ``3 * mean(c)`` over the observed pairs, divided by
        the mean of ``max(n_r, 1) ** regularization_exponent`` over the side with more pairs per
        row (usually the articles), so it follows ``alpha``, ``confidence`` and the size of the
        ratings (the loss grows with the confidences; a fixed small penalty lets them overfit),
        and the typical article keeps ``3 * mean(c)``. The value used is ``regularization_``
        after fitting.
    alpha : float, default 40.0
        Confidence scale of the observed ratings.
    iterations : int, default 15
        Number of alternating sweeps (users then items).
    solver : {"cg", "cholesky"}, default "cg"
        ``"cg"``: conjugate gradient on each row's system (preconditioned with the shared part of
        all rows' systems, warm-started from the previous sweep, Takács et al. 2011), run until
        the row's objective is provably within ``cg_tol`` of its minimum, or for ``cg_steps``
        steps; ``"cholesky"``: the exact solve of each row's system (an ``n_u x n_u`` system
        for rows with fewer items than factors, the ``factors x factors`` one otherwise).
    cg_steps : int, default 16
        The most conjugate-gradient steps per row and half-sweep (``solver="cg"`` only).
    cg_tol : float, default 1e-5
        Stop a row's CG once the excess of its objective over the minimum is at most ``cg_tol``
        times the objective (a bound CG tracks at no cost: the excess is at most half the
        squared residual). At 1e-5 the training loss ends within ~0.2% of the exact solver's on
        counts, ratings and raw amounts alike (``benchmarks/bench_als.py``). ``cg_tol=0`` runs
        exactly ``cg_steps`` steps (with ``cg_steps=3``, the classic fixed-step CG of the
        ``implicit`` library: fast, but far from converged when confidences are large).
    seed : int or None, default 42
        Seed of the random initial factors. The same seed gives the same factors whatever
        ``num_threads`` is.
    num_threads : int, default 0
        Threads of the Rust kernels; 0 uses every core.
    progress : bool, default False
        Show a tqdm bar per iteration with the training loss (needs ``rusket[progress]``).
    confidence : {"log", "linear"}, default "log"
        How ratings become confidences (see above). Pick ``"linear"`` for small bounded ratings
        or counts where one more purchase should weigh linearly more, with a small ``alpha``.
    epsilon : float, default 1.0
        Scale of the ``"log"`` confidence.
    regularization_exponent : float, default 0.5
        How the penalty grows with a row's number of pairs (see above): ``0`` gives every row
        the same ``lambda`` (Hu et al. 2008, the ``implicit`` library), ``1`` multiplies it by
        the number of pairs (ALS-WR: Spark MLlib's objective, what ``rusket.spark.fit_als``
        trains), ``0.5`` (the default, chosen by measurement: ``benchmarks/README.md``,
        "Per-row penalty") is in between: active customers and popular articles are held back
        more than rare ones, which ranks better on purchase logs and MovieLens alike.

    Attributes
    ----------
    user_factors, item_factors : ndarray of float32, shape (n_users, factors) / (n_items, factors)
        Latent vectors, rows in the order of ``user_labels`` / ``item_labels``
        (aliases: ``user_embeddings``, ``item_embeddings``).
    user_labels, item_labels : ndarray
        The user / item labels seen in training (ints or strings): sorted after
        ``from_transactions``, in the caller's order after ``fit``.
    regularization_ : float
        The ``lambda`` used (the value of ``"auto"``); row ``r``'s penalty is
        ``regularization_ * max(n_r, 1) ** regularization_exponent``.
    loss_history_ : list of float
        With ``progress=True``, the training objective after each iteration (the bar shows it
        divided by the number of interactions); empty otherwise: use ``training_loss()``.

    Examples
    --------
    >>> import pandas as pd, rusket
    >>> df = pd.DataFrame({"customer_id": [1, 1, 2, 2, 3], "article_id": ["a", "b", "a", "c", "b"],
    ...                    "sales_amount": [10.0, 5.0, 7.5, 3.0, 1.0]})
    >>> als = rusket.ALS(factors=4, iterations=5).from_transactions(
    ...     df, transaction_col="customer_id", item_col="article_id", rating_col="sales_amount")
    >>> items, scores = als.recommend_items(user=3, n=2)
    >>> "b" in items.tolist()
    False
    """

    def __init__(
        self,
        factors: int = 64,
        regularization: float | str = "auto",
        alpha: float = 40.0,
        iterations: int = 15,
        solver: str = "cg",
        cg_steps: int = 16,
        cg_tol: float = 1e-5,
        seed: int | None = 42,
        num_threads: int = 0,
        progress: bool = False,
        confidence: str = "log",
        epsilon: float = 1.0,
        regularization_exponent: float = 0.5,
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.solver = solver
        self.cg_steps = cg_steps
        self.cg_tol = cg_tol
        self.seed = seed
        self.num_threads = num_threads
        self.progress = progress
        self.confidence = confidence
        self.epsilon = epsilon
        self.regularization_exponent = regularization_exponent

    # --- parameters (get_params / set_params / repr: Recommender) -----------------------------

    _model_name = "ALS"
    # Files written before cg_tol existed ran a fixed number of CG steps; before
    # regularization_exponent existed every row had the same penalty.
    _legacy_param_values: ClassVar[dict[str, Any]] = {
        "cg_tol": 0.0,
        "regularization_exponent": 0.0,
    }

    def _checked_params(self) -> dict[str, Any]:
        p: dict[str, Any] = {
            "factors": check_int("factors", self.factors, minimum=1),
            "regularization": (
                "auto"
                if isinstance(self.regularization, str) and self.regularization == "auto"
                else check_float("regularization", self.regularization)
            ),
            "alpha": check_float("alpha", self.alpha),
            "iterations": check_int("iterations", self.iterations, minimum=1),
            "solver": check_choice("solver", self.solver, _SOLVERS),
            "cg_steps": check_int("cg_steps", self.cg_steps, minimum=1),
            "cg_tol": check_float("cg_tol", self.cg_tol),
            "num_threads": check_threads(self.num_threads),
            "confidence": check_choice("confidence", self.confidence, _CONFIDENCES),
            "epsilon": check_float("epsilon", self.epsilon),
            "regularization_exponent": check_float(
                "regularization_exponent", self.regularization_exponent
            ),
        }
        if p["regularization_exponent"] > MAX_EXPONENT:
            raise ValueError(
                f"regularization_exponent must be between 0 and {MAX_EXPONENT} (0: one penalty "
                "for every row, 1: ALS-WR), got "
                f"{self.regularization_exponent!r}"
            )
        if p["confidence"] == "log" and p["epsilon"] <= 0:
            raise ValueError(f"epsilon must be > 0 for confidence='log', got {self.epsilon!r}")
        if self.seed is not None:
            check_int("seed", self.seed, minimum=0)
        if not isinstance(self.progress, bool):
            raise TypeError(f"progress must be True or False, got {self.progress!r}")
        return p

    # --- training ----------------------------------------------------------------------------

    @_ClassOrInstanceMethod
    def from_transactions(
        self,
        data: Any,
        transaction_col: str,
        item_col: str,
        rating_col: str | None = None,
        **params: Any,
    ) -> ALS:
        """Fit straight from order lines in a pandas, polars, pyarrow or Spark frame.

        Callable on the class (``rusket.ALS.from_transactions(df, ..., factors=32)``) or on an
        instance (``rusket.ALS(factors=32).from_transactions(df, ...)``); extra keyword
        arguments set model parameters. Returns the fitted model.

        Parameters
        ----------
        data : DataFrame
            pandas, polars (eager or lazy), pyarrow ``Table`` or Spark ``DataFrame``.
        transaction_col : str
            The customer id column (ints or strings): one user per distinct value. Give the
            customer, not the order: an order (basket) id there makes every basket its own
            user, never recognised again. An unknown keyword raises ``TypeError`` naming the
            valid arguments and the nearest one.
        item_col : str
            The item (article) id column: ints or strings.
        rating_col : str, optional
            Non-negative numeric column (e.g. sales amount). ``None`` counts every row as 1.
            Duplicate (user, item) rows are summed.

        Examples
        --------
        >>> import pyarrow as pa, rusket
        >>> t = pa.table({"c": [1, 2, 2], "a": [7, 7, 8]})
        >>> rusket.ALS.from_transactions(t, "c", "a", factors=2, iterations=2).item_labels.tolist()
        [7, 8]
        """
        if params:
            self.set_params(**params)
        self._checked_params()
        inter = Interactions.from_frame(data, transaction_col, item_col, rating_col)
        return self._fit_interactions(inter)

    def fit(
        self,
        X: Any,
        user_labels: Any = None,
        item_labels: Any = None,
    ) -> ALS:
        """Fit on a scipy sparse matrix of ratings with users as rows and items as columns.

        ``user_labels`` / ``item_labels`` name the rows and columns (default ``0..n-1``). The
        model keeps the caller's order: row ``i`` of ``X`` and of ``user_factors`` is
        ``user_labels[i]`` (the same for columns).

        Examples
        --------
        >>> import scipy.sparse as sp, rusket
        >>> X = sp.csr_matrix([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]])
        >>> rusket.ALS(factors=2, iterations=3).fit(X).user_factors.shape
        (2, 2)
        """
        self._checked_params()
        return self._fit_interactions(interactions_from_matrix(X, user_labels, item_labels, "ALS"))

    def _confidence(self, values: np.ndarray, p: dict[str, Any]) -> np.ndarray:
        if p["confidence"] == "log":
            c = 1.0 + p["alpha"] * np.log1p(values / p["epsilon"])
        else:
            c = 1.0 + p["alpha"] * values
        top = float(np.max(c)) if len(c) else 1.0
        if not np.isfinite(top) or top > MAX_CONFIDENCE:
            formula = "log(1 + r / epsilon)" if p["confidence"] == "log" else "r"
            raise ValueError(
                f"the confidences 1 + alpha * {formula} reach {top:.3g}, beyond "
                f"{MAX_CONFIDENCE:.0e}: float32 factors cannot hold a trustworthy solution "
                "at that scale. Use confidence='log' (the default), a smaller alpha, or "
                "rescale the ratings (e.g. amounts in thousands)"
            )
        return c.astype(np.float32)

    def _fit_interactions(self, inter: Interactions) -> ALS:
        p = self._checked_params()
        f = p["factors"]
        ratings = inter.matrix
        conf_u = sp.csr_matrix(
            (self._confidence(ratings.data, p), ratings.indices, ratings.indptr),
            shape=ratings.shape,
        )
        conf_i = conf_u.T.tocsr()
        conf_i.sort_indices()
        cu = _csr_arrays(conf_u)
        ci = _csr_arrays(conf_i)
        lam = _base_penalty(p, conf_u)
        scale_u, scale_i = _row_scales(conf_u, p)
        n_users, n_items = ratings.shape
        rng = np.random.default_rng(self.seed)
        # Small random items; the first half-sweep solves the users against them, so the users
        # start at zero (a random start there would only be overwritten, and costs time).
        users = np.zeros((n_users, f), dtype=np.float32)
        items = _initial_factors(rng, n_items, f)
        kw = _solve_kwargs(p, lam)
        bar = None
        if self.progress:
            tqdm = require("tqdm")
            bar = tqdm.tqdm(total=p["iterations"], desc="ALS", unit="it")
        self.loss_history_: list[float] = []
        try:
            for _ in range(p["iterations"]):
                # rotate_fixed: with the per-row penalty each half-step may turn the model
                # (both sides by one orthogonal Q: same scores, same objective) instead of
                # taking its rows back out of the eigenbasis.
                _core.als_solve_side(*cu, items, users, **kw, row_scale=scale_u, rotate_fixed=True)
                _core.als_solve_side(*ci, users, items, **kw, row_scale=scale_i, rotate_fixed=True)
                if bar is not None:
                    loss = _core.als_loss(
                        *cu,
                        users,
                        items,
                        regularization=lam,
                        num_threads=p["num_threads"],
                        user_scale=scale_u,
                        item_scale=scale_i,
                    )
                    self.loss_history_.append(loss)
                    bar.set_postfix(loss=f"{loss / max(ratings.nnz, 1):.5g}")
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
        # The whole fitted state in one assignment: a thread scoring meanwhile sees the old
        # model or the new one, never a mix. Seen items of each user: their confidences.
        self.regularization_ = lam
        self._state = _Fitted.build(users, items, inter.user_labels, inter.item_labels, conf_u)
        return self

    # --- serving after training: new customers, new order lines, explanations ---------------

    def recommend_basket(
        self,
        items: Any,
        ratings: Any = None,
        n: int = 10,
        exclude_seen: bool = True,
        candidates: Any = None,
        exclude_items: Any = None,
        unknown: str = "raise",
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` best articles for a customer the model has never seen, from a basket.

        The basket is read like training data (amounts of the same article summed, then the
        model's confidence transform and ``alpha``); the customer's vector is the exact
        solution of the ALS user step against the fixed item factors (Hu et al. 2008, with the
        model's penalty), and the articles are ranked by the same top-k as
        :meth:`recommend_items`. Nothing is retrained and the model is not changed.

        Parameters
        ----------
        items : sequence of article labels
            The customer's articles (a list, array or Series; repeats allowed).
        ratings : sequence of float, optional
            One amount >= 0 per entry of ``items`` (e.g. sales amounts), like ``rating_col``
            in training; ``None`` counts each entry as 1.
        n : int, default 10
        exclude_seen : bool, default True
            Leave the basket's own articles out.
        candidates, exclude_items : item label or 1-d sequence of item labels, optional
            Business filters, as in :meth:`recommend_items`: only ``candidates`` may be
            recommended (e.g. the articles in stock), ``exclude_items`` never; the customer
            gets the best ``n`` of what is allowed. Unknown labels there raise ``KeyError``.
        unknown : {"raise", "ignore"}, default "raise"
            Article labels the model does not know: ``"raise"`` a ``KeyError`` naming them,
            or ``"ignore"`` them (the model has no vector for them).

        Returns
        -------
        item_labels : ndarray
        scores : ndarray of float32
            Dot products with the folded-in vector, best first (as in :meth:`recommend_items`).

        Raises ``ValueError`` for an empty basket, amounts that are negative, NaN or of
        another length than ``items``, and ``KeyError`` for unknown articles.

        Examples
        --------
        >>> import pandas as pd, rusket
        >>> df = pd.DataFrame({"customer": [1, 1, 2, 2, 3, 3], "article": list("abacbc")})
        >>> als = rusket.ALS(factors=2, iterations=3).from_transactions(df, "customer", "article")
        >>> labels, scores = als.recommend_basket(["a"], n=2)
        >>> sorted(labels.tolist())
        ['b', 'c']
        >>> als.recommend_basket(["a", "z"], unknown="ignore", n=1)[0].shape
        (1,)
        >>> als.recommend_basket(["a"], n=2, exclude_items=["b"])[0].tolist()
        ['c']
        """
        return _fold_in.recommend_basket(
            self, items, ratings, n, exclude_seen, candidates, exclude_items, unknown
        )

    def fold_in(
        self,
        data: Any,
        transaction_col: str,
        item_col: str,
        rating_col: str | None = None,
        format: str = "pandas",
        unknown: str = "raise",
    ) -> Any:
        """Latent vectors of many new customers at once, from their order lines.

        The batched form of :meth:`recommend_basket`: each customer's lines are read like
        ``from_transactions`` (pandas, polars, pyarrow or Spark; duplicates summed) and the
        customer gets the exact ALS user step against the fixed item factors, the same vector
        ``recommend_basket`` computes for the same lines. A customer known to the model is
        treated as new: only the given lines count. The model is not changed (use
        :meth:`partial_fit` to add the lines to it).

        Parameters
        ----------
        data : DataFrame
        transaction_col, item_col : str
            Customer and article id columns.
        rating_col : str, optional
            Amounts (>= 0); ``None`` counts each line as 1.
        format : {"pandas", "polars", "arrow", "spark", "numpy"}, default "pandas"
        unknown : {"raise", "ignore"}, default "raise"
            Articles the model does not know: ``KeyError`` naming them, or leave them out (a
            customer left with no known article gets the zero vector).

        Returns
        -------
        A frame with ``user_id`` (sorted) and ``vector`` columns, like
        :meth:`export_user_factors`; score a vector ``v`` against ``item_factors @ v``.

        Examples
        --------
        >>> import pandas as pd, rusket
        >>> df = pd.DataFrame({"customer": [1, 1, 2, 2, 3], "article": list("abacb")})
        >>> als = rusket.ALS(factors=2, iterations=3).from_transactions(df, "customer", "article")
        >>> new = pd.DataFrame({"customer": [7, 7, 8], "article": ["a", "c", "b"]})
        >>> als.fold_in(new, "customer", "article", format="numpy")["vector"].shape
        (2, 2)
        """
        return _fold_in.fold_in(self, data, transaction_col, item_col, rating_col, format, unknown)

    def partial_fit(
        self,
        data: Any,
        transaction_col: str,
        item_col: str,
        rating_col: str | None = None,
        sweeps: int | None = None,
    ) -> ALS:
        """Add order lines to the fitted model without a full refit; returns the model.

        The lines are read like ``from_transactions`` and added to the model's history (amounts
        summed with those of existing (customer, article) pairs, through the stored
        confidences); new customers and articles become new rows (after the existing ones,
        with a small random start). Then the rows the lines touch are re-solved against the
        fixed other side, customers first, then articles, ``sweeps`` times. Untouched rows keep
        their vectors. ``regularization="auto"`` is re-evaluated over the merged history
        (``regularization_``). Seen-item exclusion includes the new lines afterwards. The model
        changes in one assignment of its fitted state (a thread scoring meanwhile sees the old
        or the new model); do not call it from two threads at once.

        On an unfitted model it fits from scratch: ``sweeps`` defaults to ``iterations`` there,
        and the result equals ``from_transactions`` on the same lines. Keep ``confidence``,
        ``alpha`` and ``epsilon`` as they were at the fit: the stored confidences are read back
        into amounts with them.

        **Drift.** Untouched rows are never re-solved, so the model drifts from what a full
        refit would give as updates accumulate. Measured on ``make_purchases`` (20,000
        customers, 2,000 articles, a year of 200k lines, time split, 3 logs;
        ``benchmarks/bench_partial_fit.py``): adding the 20% of lines after a fit on the first
        60% in 8 updates ends at 1.0% above a full refit's training loss and nDCG@10 0.162 vs
        0.165 (a model left stale: 0.155 on the customers it knows); adding 60% in 16 updates
        after a fit on the first 20% ends 3.7% above the refit's loss, nDCG@10 0.158 vs 0.165
        (``sweeps=3``: 3.0%, 0.161). Each update cost a tenth of a refit or less. Refit from
        scratch on a schedule (e.g. weekly, or once the lines added since the last full fit
        reach a third of the history), and ``partial_fit`` in between.

        Parameters
        ----------
        data : DataFrame
            pandas, polars (eager or lazy), pyarrow or Spark order lines.
        transaction_col, item_col : str
            Customer and article id columns, of the same kinds as in training.
        rating_col : str, optional
            Amounts (>= 0); ``None`` counts each line as 1 (use what training used).
        sweeps : int, optional
            Rounds of (customers, then articles) re-solves of the touched rows; default 1 (on
            an unfitted model: ``iterations``).

        Examples
        --------
        >>> import pandas as pd, rusket
        >>> df = pd.DataFrame({"customer": [1, 1, 2, 2, 3], "article": list("abacb")})
        >>> als = rusket.ALS(factors=2, iterations=3).from_transactions(df, "customer", "article")
        >>> more = pd.DataFrame({"customer": [3, 4], "article": ["d", "a"]})
        >>> als = als.partial_fit(more, "customer", "article")
        >>> als.user_labels.tolist(), als.item_labels.tolist()
        ([1, 2, 3, 4], ['a', 'b', 'c', 'd'])
        >>> "d" in als.recommend_items(3, n=4)[0].tolist()
        False
        """
        return _fold_in.partial_fit(self, data, transaction_col, item_col, rating_col, sweeps)

    def explain(self, user: Any, item: Any, n: int = 10) -> tuple[float, np.ndarray, np.ndarray]:
        """Why ``item`` scores for ``user``: the share of each of the customer's past articles.

        With the customer's confidences ``c_j`` and ``A = Y^T C_u Y + lambda I``, the customer's
        exactly solved vector is ``x = A^-1 Y^T C_u p`` and the score of item ``i`` splits into
        ``sum_j c_j * y_i^T A^-1 y_j`` over the customer's articles ``j`` (the decomposition of
        the ``explain`` of the ``implicit`` library).

        Parameters
        ----------
        user : int or str
            One customer of the model.
        item : int or str
            One article of the model (bought or not).
        n : int, default 10
            How many of the largest contributions to return.

        Returns
        -------
        score : float
            ``y_i . x`` for ``x`` solved exactly against the final item factors (the vector
            :meth:`fold_in` gives this history); the sum of all contributions. The stored
            ``user_factors`` were solved half a sweep earlier (and, with CG, to a tolerance),
            so :meth:`score` can differ slightly.
        item_labels : ndarray
            The customer's articles with the ``n`` largest contributions, largest first.
        contributions : ndarray of float64
            Their contributions.

        Examples
        --------
        >>> import pandas as pd, rusket
        >>> df = pd.DataFrame({"customer": [1, 1, 2, 2, 3], "article": list("abacb")})
        >>> als = rusket.ALS(factors=2, iterations=3).from_transactions(df, "customer", "article")
        >>> score, labels, parts = als.explain(user=1, item="c")
        >>> sorted(labels.tolist()), bool(abs(parts.sum() - score) < 1e-9)
        (['a', 'b'], True)
        """
        return _fold_in.explain(self, user, item, n)

    # --- hyperparameter search ----------------------------------------------------------------

    @classmethod
    def tune(
        cls,
        data: Any,
        transaction_col: str,
        item_col: str,
        rating_col: str | None = None,
        time_col: str | None = None,
        metric: str = "ndcg@10",
        n_trials: int = 24,
        seed: int = 0,
        progress: bool = False,
        **fixed_params: Any,
    ) -> TuneResult:
        """Search factors, regularization (and its exponent), alpha, confidence and iterations on
        a hold-out of ``data`` by successive halving, then refit the best setting on all of
        ``data``.

        The hold-out is the last 20% of the period when ``time_col`` is given, else 20% of each
        customer's articles. ``fixed_params`` are ALS parameters held fixed (e.g.
        ``num_threads=1``). Returns a ``TuneResult`` with ``best_params``, ``best_model`` and
        ``results`` (a pandas frame, a row per trial, best first); see
        :func:`rusket._tuning.tune` for the search space.

        Examples
        --------
        >>> from rusket.datasets import make_purchases
        >>> df = make_purchases(n_customers=300, n_lines=3000)
        >>> result = rusket.ALS.tune(df, "customer_id", "article_id", "sales_amount",
        ...                          time_col="order_date", n_trials=6)  # doctest: +SKIP
        >>> result.best_model.recommend_items(df.customer_id[0], n=5)  # doctest: +SKIP
        """
        from rusket import _tuning

        return _tuning.tune(
            cls,
            data,
            transaction_col,
            item_col,
            rating_col=rating_col,
            time_col=time_col,
            metric=metric,
            n_trials=n_trials,
            seed=seed,
            progress=progress,
            **fixed_params,
        )

    # --- training diagnostics -----------------------------------------------------------------

    def training_loss(self) -> float:
        """The training objective of the fitted factors (confidence-weighted squared error plus
        the L2 penalty), e.g. to compare solvers."""
        state = self._fitted_state()
        p = self._checked_params()
        seen = _csr_arrays(state.seen)
        scale_u, scale_i = _row_scales(state.seen, p)
        return _core.als_loss(
            *seen,
            state.user_factors,
            state.item_factors,
            regularization=_base_penalty(p, state.seen),
            num_threads=p["num_threads"],
            user_scale=scale_u,
            item_scale=scale_i,
        )


#: The largest confidence ALS accepts. Beyond it the row systems span more orders of magnitude
#: than float32 factors resolve: measured on random data, CG and the exact solver then disagree
#: by 1-15% in loss, and above ~1e13 the float32 arithmetic overflows.
MAX_CONFIDENCE = 1e8

#: ``regularization="auto"``: the penalty as a multiple of the mean observed confidence. Chosen
#: by measurement (nDCG@10 against popularity on MovieLens-100k ratings and counts and on
#: synthetic purchase logs, alpha 1 and 40; benchmarks/README.md): the best fixed penalties sat
#: at 2-6x the mean confidence on every set.
AUTO_PENALTY = 3.0


def _penalty(regularization: float | str, confidences: np.ndarray) -> float:
    """The L2 penalty ``lambda`` for the given setting and observed confidences."""
    if regularization == "auto":
        mean = float(np.mean(confidences, dtype=np.float64)) if len(confidences) else 1.0
        return AUTO_PENALTY * mean
    return float(regularization)


#: The largest ``regularization_exponent``: beyond ALS-WR's 1 the penalties of active rows grow
#: faster than their data term (a customer with 1,000 pairs would get 1,000x the penalty at 1).
MAX_EXPONENT = 2.0


def _base_penalty(p: dict[str, Any], seen: sp.spmatrix) -> float:
    """``lambda`` for checked parameters ``p`` and the user x item matrix of confidences: the
    value of ``regularization_``; row ``r`` gets ``lambda * max(n_r, 1) ** exponent``.

    For ``"auto"``, ``3 * mean(c)`` divided by the mean of ``max(n_r, 1) ** exponent`` over the
    rows of the side with more pairs per row (the side with fewer rows), so that a typical row
    there keeps the global automatic penalty.
    """
    seen = sp.csr_matrix(seen)
    lam = _penalty(p["regularization"], np.asarray(seen.data))
    nu = p["regularization_exponent"]
    if p["regularization"] != "auto" or nu == 0 or seen.nnz == 0:
        return lam
    per_user, per_item = _pair_counts(seen)
    denser = per_item if seen.shape[0] >= seen.shape[1] else per_user
    return lam / float(np.mean(_row_weights(denser, nu)))


def _row_weights(counts: Any, exponent: float) -> np.ndarray:
    """``max(n, 1) ** exponent`` (float64): a row's penalty over ``lambda``."""
    weights: np.ndarray = np.maximum(np.asarray(counts), 1).astype(np.float64) ** exponent
    return weights


def _pair_counts(seen: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """The number of pairs of every user (row) and every item (column) of ``seen``."""
    return np.diff(seen.indptr), np.bincount(seen.indices, minlength=seen.shape[1])


def _row_scales(
    seen: sp.spmatrix, p: dict[str, Any]
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The per-row penalty scales (``_core.als_solve_side``'s ``row_scale``, float32) of the
    users and of the items of the user x item matrix ``seen``, or ``(None, None)`` when the
    exponent is 0 (every row gets ``lambda`` itself)."""
    nu = p["regularization_exponent"]
    if nu == 0:
        return None, None
    per_user, per_item = _pair_counts(sp.csr_matrix(seen))
    return (
        _row_weights(per_user, nu).astype(np.float32),
        _row_weights(per_item, nu).astype(np.float32),
    )


def _solve_kwargs(p: dict[str, Any], lam: float) -> dict[str, Any]:
    """The keyword arguments of ``_core.als_solve_side`` for checked parameters ``p``, for the
    half-steps of one fit: they share a new workspace (buffers kept between half-steps)."""
    return {
        "regularization": lam,
        "solver": p["solver"],
        "cg_steps": p["cg_steps"],
        "tol": p["cg_tol"],
        "num_threads": p["num_threads"],
        "workspace": _core.AlsWorkspace(),
    }


def _initial_factors(rng: np.random.Generator, n_rows: int, f: int) -> np.ndarray:
    # Small and non-negative (|N(0, 1)| * 0.01), like the starts of `implicit` (uniform) and
    # Spark MLlib (|gaussian|): all vectors begin in one orthant, and the first sweeps turn that
    # shared direction into a popularity component. MovieLens-100k, issue defaults, 3 splits x
    # 3 seeds: nDCG@10 0.205 +- 0.003 vs 0.202 +- 0.004 from a zero-mean start; the CG still
    # ends within 0.2% of the exact solver's loss on the test fixtures (uniform: 1%).
    out = rng.standard_normal((n_rows, f), dtype=np.float32)
    np.abs(out, out=out)
    out *= np.float32(0.01)
    return out


def _csr_arrays(m: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.ascontiguousarray(m.indptr, dtype=np.int64),
        np.ascontiguousarray(m.indices, dtype=np.int32),
        np.ascontiguousarray(m.data, dtype=np.float32),
    )
