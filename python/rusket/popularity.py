"""Best sellers the customer has not bought yet: the baseline every model has to beat.

Everything but training comes from :class:`rusket._model.Recommender`: the scores are one-column
"factors" (every user 1, every item its number of buyers) scored by the same Rust top-k as ALS,
so seen items are excluded and every output format works exactly as for ALS.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from rusket._model import Recommender, _ClassOrInstanceMethod, _Fitted, interactions_from_matrix
from rusket.interactions import Interactions


class Popularity(Recommender):
    """Recommend the most bought articles, skipping those each customer already bought.

    The score of an article is the number of distinct customers who bought it (a customer whose
    summed rating of the article is 0 did not buy it; how much or how often a customer bought
    does not count). Equal scores are ranked in ``item_labels`` order, so results are
    deterministic. Scores are float32: exact up to 2**24 (16.7 million) buyers per article.

    No parameters. Offers ``recommend_items``, ``recommend_users`` (every customer scores the
    same for one article, so they come in ``user_labels`` order), ``batch_recommend``,
    ``score`` (the article's buyer count, whoever the customer), ``evaluate``, ``save`` /
    ``load``; there are no latent factors, hence no ``similar_items``, exports or ``pca``.

    Attributes
    ----------
    user_labels, item_labels : ndarray
        The user / item labels seen in training (ints or strings): sorted after
        ``from_transactions``, in the caller's row / column order after ``fit``.
    buyer_counts : ndarray of int64
        The number of buyers of each item, in ``item_labels`` order.

    Examples
    --------
    >>> import pandas as pd, rusket
    >>> df = pd.DataFrame({"customer_id": [1, 1, 2, 2, 3], "article_id": ["a", "b", "a", "c", "b"]})
    >>> pop = rusket.Popularity.from_transactions(df, "customer_id", "article_id")
    >>> pop.buyer_counts.tolist()
    [2, 2, 1]
    >>> items, scores = pop.recommend_items(user=3, n=2)
    >>> items.tolist(), scores.tolist()
    (['a', 'c'], [2.0, 1.0])
    """

    _model_name = "Popularity"

    @_ClassOrInstanceMethod
    def from_transactions(
        self,
        data: Any,
        transaction_col: str,
        item_col: str,
        rating_col: str | None = None,
    ) -> Popularity:
        """Fit straight from order lines in a pandas, polars, pyarrow or Spark frame.

        Callable on the class or on an instance; returns the fitted model.

        Parameters
        ----------
        data : DataFrame
            pandas, polars (eager or lazy), pyarrow ``Table`` or Spark ``DataFrame``.
        transaction_col : str
            The customer id column (ints or strings): one "user" per distinct value. Give the
            customer, not the order: an order (basket) id there makes every basket its own
            user, who is then never recognised again.
        item_col : str
            The article id column (ints or strings).
        rating_col : str, optional
            Non-negative numbers that only decide which rows are purchases: a (customer,
            article) pair whose ratings sum to 0 is none. ``None`` counts every row.

        An unknown keyword (``user_col=...``) raises ``TypeError`` naming the valid arguments
        and the nearest one.

        Examples
        --------
        >>> import pyarrow as pa, rusket
        >>> t = pa.table({"c": [1, 2, 2], "a": [7, 7, 8]})
        >>> rusket.Popularity.from_transactions(t, "c", "a").buyer_counts.tolist()
        [2, 1]
        """
        return self._fit_interactions(
            Interactions.from_frame(data, transaction_col, item_col, rating_col)
        )

    def fit(self, X: Any, user_labels: Any = None, item_labels: Any = None) -> Popularity:
        """Fit on a scipy sparse matrix of ratings with users as rows and items as columns.

        ``user_labels`` / ``item_labels`` name the rows and columns (default ``0..n-1``, any
        order, unique); the model keeps that order: ``item_labels[j]`` is column ``j``.

        Examples
        --------
        >>> import scipy.sparse as sp, rusket
        >>> X = sp.csr_matrix([[1.0, 0.0, 2.0], [0.0, 3.0, 1.0]])
        >>> rusket.Popularity().fit(X, item_labels=["x", "y", "z"]).buyer_counts.tolist()
        [1, 1, 2]
        """
        return self._fit_interactions(
            interactions_from_matrix(X, user_labels, item_labels, "Popularity")
        )

    def _fit_interactions(self, inter: Interactions) -> Popularity:
        m = inter.matrix  # summed ratings; zeros are already gone, one entry per pair
        buyers = np.bincount(m.indices, minlength=m.shape[1])
        ones = np.ones((m.shape[0], 1), dtype=np.float32)
        # The ratings are kept as the seen matrix (float32 like every model's, kept > 0).
        f32 = np.finfo(np.float32)
        ratings = np.clip(m.data, f32.smallest_subnormal, f32.max).astype(np.float32)
        seen = sp.csr_matrix((ratings, m.indices, m.indptr), shape=m.shape)
        self._state = _Fitted.build(
            ones, _scores(buyers), inter.user_labels, inter.item_labels, seen
        )
        return self

    @property
    def buyer_counts(self) -> np.ndarray:
        """The number of buyers of each item (int64), in ``item_labels`` order."""
        return self._fitted_state().item_factors[:, 0].astype(np.int64)

    @classmethod
    def _check_loaded(cls, state: _Fitted, params: dict[str, Any], where: str) -> None:
        buyers = np.bincount(state.seen.indices, minlength=state.seen.shape[1])
        if (
            state.user_factors.shape[1] != 1
            or not np.all(state.user_factors == 1.0)
            or not np.array_equal(state.item_factors, _scores(buyers))
        ):
            raise ValueError(
                f"{where}: the stored scores are not the buyer counts of the stored purchases"
            )


def _scores(buyers: np.ndarray) -> np.ndarray:
    return buyers.astype(np.float32).reshape(-1, 1)
