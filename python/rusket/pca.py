"""Principal component analysis with Rust kernels, and quick projections of factor spaces.

:class:`PCA` is a scikit-learn compatible estimator (it *is* a ``BaseEstimator`` and
``TransformerMixin`` when scikit-learn is installed, and speaks the same protocol otherwise).
The fit runs in Rust with float64 accumulation:

* ``"covariance_eigh"`` / ``"full"``: exact. Parallel passes over the rows form the centred
  ``XᵀX`` and a symmetric eigendecomposition of the ``d x d`` covariance follows; for wide data
  (more columns than rows) a thin SVD of the centred data instead. float64 input: two passes
  (means, then ``XᵀX`` in float64). float32 input with at least 4096 rows: usually one pass,
  blocks of rows multiplied in float32 and summed in float64 (about twice as fast; the error in
  each explained variance is at most about ``2e-8`` times the largest, measured); when a
  requested component has less than 1% of the largest variance, the float64 kernel redoes it.
* ``"randomized"``: a seeded randomized SVD (Halko, Martinsson & Tropp 2011) for wide data.
  Its subspace iteration needs ``n_iter + 2`` passes of ``4 n d l`` flops over the rows
  (``l = n_components + n_oversamples``); on tall data where forming the ``d x d`` covariance
  once is cheaper (``d <= 4 (n_iter + 2) l``, ``d <= 2048``), it runs the same iteration, from
  the same random start, on that matrix (the float32 kernel above for float32 input).

:func:`project` turns a factor matrix (for example ``ALS.item_factors``) into 2-d or 3-d
coordinates held by a :class:`Projection`, which plots itself with plotly and exports to
pandas / polars.
"""

from __future__ import annotations

import inspect
import numbers
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from rusket import _core
from rusket._formats import convert
from rusket._validation import check_threads

if TYPE_CHECKING:  # pragma: no cover
    import numpy.typing as npt

__all__ = ["PCA", "NotFittedError", "Projection", "project"]

SVD_SOLVERS = ("auto", "full", "covariance_eigh", "randomized")
#: Largest ``n_components + n_oversamples`` passed to the native solver (its sizes are 64-bit).
_MAX_SUBSPACE = 2**63 - 1

try:  # scikit-learn is optional: inherit its bases and its NotFittedError when it is there.
    from sklearn.base import BaseEstimator as _Base
    from sklearn.base import TransformerMixin as _Transformer
    from sklearn.exceptions import NotFittedError

    _HAVE_SKLEARN = True
except ImportError:  # pragma: no cover - exercised in a subprocess by the tests
    _HAVE_SKLEARN = False

    from rusket._validation import NotFittedError  # type: ignore[assignment]

    class _Base:  # type: ignore[no-redef]
        """``get_params`` / ``set_params`` / ``repr`` from the ``__init__`` signature."""

        @classmethod
        def _get_param_names(cls) -> list[str]:
            sig = inspect.signature(cls.__init__)
            return sorted(p.name for p in sig.parameters.values() if p.name != "self")

        def get_params(self, deep: bool = True) -> dict[str, Any]:
            return {name: getattr(self, name) for name in self._get_param_names()}

        def set_params(self, **params: Any) -> Any:
            valid = self._get_param_names()
            for key, value in params.items():
                if key not in valid:
                    raise ValueError(
                        f"Invalid parameter {key!r} for estimator {type(self).__name__}; "
                        f"valid parameters are: {valid}"
                    )
                setattr(self, key, value)
            return self

        def __repr__(self) -> str:
            defaults = {
                p.name: p.default
                for p in inspect.signature(type(self).__init__).parameters.values()
            }
            changed = [
                f"{k}={v!r}"
                for k, v in self.get_params().items()
                if not (isinstance(v, type(defaults.get(k))) and v == defaults.get(k))
            ]
            return f"{type(self).__name__}({', '.join(changed)})"

    class _Transformer:  # type: ignore[no-redef]
        """``fit_transform`` as ``fit(X).transform(X)``."""

        def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> Any:
            return self.fit(X, y, **fit_params).transform(X)  # type: ignore[attr-defined]


def _as_matrix(X: Any, name: str = "X") -> np.ndarray:
    """A C-contiguous float32/float64 2-d array (float32 stays float32, anything else float64)."""
    from scipy import sparse

    if sparse.issparse(X):
        raise TypeError(f"{name} must be a dense array; got a sparse matrix ({type(X).__name__})")
    arr = np.asarray(X)
    if np.iscomplexobj(arr):
        raise ValueError(f"Complex data not supported; {name} must be real")
    dtype = np.float32 if arr.dtype == np.float32 else np.float64
    try:
        arr = np.ascontiguousarray(arr, dtype=dtype)
    except TypeError as exc:
        raise TypeError(f"{name} must be numeric; could not convert to float: {exc}") from exc
    except ValueError as exc:
        raise ValueError(f"{name} must be numeric; could not convert to float: {exc}") from exc
    if arr.ndim != 2:
        raise ValueError(
            f"Expected a 2-d array for {name} (samples x features); got {arr.ndim}-d with shape "
            f"{arr.shape}. Reshape your data with X.reshape(-1, 1) (one feature) or "
            "X.reshape(1, -1) (one sample)."
        )
    return arr


def _check_finite(X: np.ndarray, name: str = "X") -> None:
    if not np.isfinite(X).all():
        raise ValueError(f"{name} contains NaN or infinity; remove or impute them first")


def _seed_from(random_state: Any) -> int:
    """A 63-bit seed for the Rust generator from sklearn-style ``random_state``."""
    if random_state is None:
        return int(np.random.default_rng().integers(2**63))
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be a non-negative int; got {random_state}")
        return int(random_state) % 2**64
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(np.iinfo(np.int32).max))
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(2**63))
    raise ValueError(
        "random_state must be None, an int, a numpy RandomState or Generator; "
        f"got {type(random_state).__name__}"
    )


class PCA(_Transformer, _Base):  # type: ignore[misc]
    """Principal component analysis, fitted by Rust kernels; a scikit-learn estimator.

    Linear dimensionality reduction: the data are centred (not scaled) and projected on the
    directions of largest variance. Gives the same numbers as
    ``sklearn.decomposition.PCA`` (components with the same signs), accumulated in float64
    (float32 input: products of float32 blocks, see the module notes).

    Parameters
    ----------
    n_components : int, float or None, default=2
        Number of components to keep. An int in ``[1, min(n_samples, n_features)]``; a float in
        ``(0, 1)`` keeps the fewest components whose explained variance ratios add up to more
        than it (exact solvers only); ``None`` keeps ``min(n_samples, n_features)``.
    svd_solver : {"auto", "full", "covariance_eigh", "randomized"}, default="auto"
        ``"full"`` and ``"covariance_eigh"`` are the same exact solver: eigendecomposition of
        the covariance, streamed over the rows (thin SVD of the centred data when there are more
        features than samples). ``"randomized"`` is a seeded randomized SVD for wide data
        (on tall data it iterates on the covariance, see the module notes). ``"auto"`` picks
        the exact solver when ``n_features <= 1000`` and ``n_samples >= n_features`` (tall
        data such as embeddings), when both sides are at most
        500, when ``n_components`` is ``None`` or a float, or when it asks for at least 80% of
        ``min(n_samples, n_features)``; otherwise ``"randomized"``. The solver used is stored
        in ``svd_solver_``.
    whiten : bool, default=False
        Scale the projections to unit variance (divide by ``sqrt(explained_variance_)``).
    random_state : None, int, numpy RandomState or Generator, default=None
        Seed of the randomized solver (ignored by the exact one). An int gives the same result
        on every run and every thread count.
    iterated_power : int or "auto", default="auto"
        Power iterations of the randomized solver; ``"auto"`` is 7 when ``n_components`` is
        below 10% of ``min(n_samples, n_features)`` and 4 otherwise (as scikit-learn).
    n_oversamples : int, default=10
        Extra random directions of the randomized solver.
    num_threads : int, default=0
        Threads for the Rust kernels (0 = all cores, at most 1024). Results do not depend on
        it.

    Attributes
    ----------
    components_ : ndarray of shape (n_components_, n_features)
        Principal axes (orthonormal rows), by decreasing explained variance.
    explained_variance_ : ndarray of shape (n_components_,)
        Variance along each component (``ddof=1``).
    explained_variance_ratio_ : ndarray of shape (n_components_,)
        ``explained_variance_`` divided by the total variance of the data (also for the
        randomized solver, which computes only some of the components).
    singular_values_ : ndarray of shape (n_components_,)
        Singular values of the centred data.
    mean_ : ndarray of shape (n_features,)
        Per-feature mean of the training data.
    n_components_ : int
        Number of components kept.
    n_features_in_ : int
        Number of features seen in ``fit``.
    n_samples_ : int
        Number of samples seen in ``fit``.
    noise_variance_ : float
        Average variance of the discarded directions (probabilistic PCA noise), 0 when none is.
    svd_solver_ : str
        The solver that ran (``"covariance_eigh"`` or ``"randomized"``).

    Examples
    --------
    >>> import numpy as np
    >>> from rusket.pca import PCA  # also exported as rusket.PCA
    >>> X = np.random.default_rng(0).normal(size=(1000, 8)) * np.arange(1, 9)
    >>> pca = PCA(n_components=3).fit(X)
    >>> pca.components_.shape
    (3, 8)
    >>> pca.transform(X[:2]).shape
    (2, 3)
    >>> bool(pca.explained_variance_ratio_[0] > pca.explained_variance_ratio_[1])
    True
    """

    def __init__(
        self,
        n_components: int | float | None = 2,
        *,
        svd_solver: str = "auto",
        whiten: bool = False,
        random_state: Any = None,
        iterated_power: int | str = "auto",
        n_oversamples: int = 10,
        num_threads: int = 0,
    ) -> None:
        self.n_components = n_components
        self.svd_solver = svd_solver
        self.whiten = whiten
        self.random_state = random_state
        self.iterated_power = iterated_power
        self.n_oversamples = n_oversamples
        self.num_threads = num_threads

    # -- parameter checks ---------------------------------------------------------------------

    def _check_params(self, n_samples: int, n_features: int) -> tuple[str, int | float | None]:
        solver = self.svd_solver
        if not isinstance(solver, str) or solver not in SVD_SOLVERS:
            raise ValueError(
                f"svd_solver must be one of {', '.join(map(repr, SVD_SOLVERS))}; got {solver!r}"
            )
        nc = self.n_components
        r = min(n_samples, n_features)
        if nc is None:
            pass
        elif isinstance(nc, numbers.Integral) and not isinstance(nc, bool):
            if not 1 <= nc <= r:
                raise ValueError(
                    f"n_components={nc} must be between 1 and min(n_samples, n_features)={r}"
                )
            nc = int(nc)
        elif isinstance(nc, numbers.Real) and not isinstance(nc, bool):
            if not 0.0 < nc < 1.0:
                raise ValueError(
                    f"n_components={nc} as a float must be in (0, 1) (the share of variance to "
                    "keep); pass an int to keep a number of components"
                )
            if solver == "randomized":
                raise ValueError(
                    "n_components as a float (share of variance) needs an exact solver; "
                    "use svd_solver='full' or 'auto', or pass an int"
                )
            nc = float(nc)
        else:
            raise ValueError(f"n_components must be an int, a float in (0, 1) or None; got {nc!r}")
        if not isinstance(self.whiten, (bool, np.bool_)):
            raise ValueError(f"whiten must be True or False; got {self.whiten!r}")
        ov = self.n_oversamples
        if isinstance(ov, bool) or not isinstance(ov, numbers.Integral) or ov < 0:
            raise ValueError(f"n_oversamples must be an int >= 0; got {ov!r}")
        k = nc if isinstance(nc, int) else r
        if k + int(ov) > _MAX_SUBSPACE:
            # The native side counts in 64 bits: a sum past that would wrap around.
            raise ValueError(
                f"n_oversamples={ov} is too large: n_components + n_oversamples must be below "
                f"2**63; the randomized solver never uses more than min(n_samples, n_features)"
                f"={r} directions in all, so n_oversamples={max(r - k, 0)} is already the most "
                "that helps"
            )
        ip = self.iterated_power
        if not (ip == "auto" or (isinstance(ip, numbers.Integral) and ip >= 0)):
            raise ValueError(f"iterated_power must be 'auto' or an int >= 0; got {ip!r}")
        nt = self.num_threads
        if not isinstance(nt, numbers.Integral) or isinstance(nt, bool) or nt < 0:
            raise ValueError(f"num_threads must be an int >= 0 (0 = all cores); got {nt!r}")
        check_threads(nt)
        if solver == "auto":
            exact = (
                (n_features <= 1000 and n_samples >= n_features)
                or max(n_samples, n_features) <= 500
                or not isinstance(nc, int)
                or nc >= 0.8 * r
            )
            solver = "covariance_eigh" if exact else "randomized"
        elif solver == "full":
            solver = "covariance_eigh"
        return solver, nc

    # -- fit / transform ----------------------------------------------------------------------

    def fit(self, X: Any, y: Any = None) -> PCA:
        """Fit the model to ``X`` (``n_samples x n_features``); returns ``self``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data, float32 or float64 (other numeric types are read as float64).
        y : ignored

        Examples
        --------
        >>> import numpy as np
        >>> PCA(n_components=1).fit(np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])).n_components_
        1
        """
        self._fit(_as_matrix(X))
        return self

    def _fit(self, X: np.ndarray) -> None:
        n, d = X.shape
        if n < 2:
            raise ValueError(f"PCA needs at least 2 samples; got {n} sample(s) (X.shape={X.shape})")
        if d < 1:
            raise ValueError(
                f"Found array with 0 feature(s) (shape={X.shape}) while a minimum of 1 is "
                "required (PCA needs at least 1 feature)."
            )
        solver, nc = self._check_params(n, d)
        r = min(n, d)
        # The exact solver returns all components; n_components only says how many must be
        # accurate (0 = all), which picks its float32 or float64 kernel for float32 input.
        seed, n_iter, k_rust = 0, 0, (nc if isinstance(nc, int) else 0)
        if solver == "randomized":
            k_rust = r if nc is None else int(nc)  # float nc was refused above
            n_iter = (
                (7 if k_rust < 0.1 * r else 4)
                if self.iterated_power == "auto"
                else int(self.iterated_power)
            )
            seed = _seed_from(self.random_state)
        mean, comps, ev, sv, total_var = _core.pca_fit(
            X,
            n_components=k_rust,
            solver=solver,
            n_oversamples=int(self.n_oversamples),
            n_iter=n_iter,
            seed=seed,
            num_threads=int(self.num_threads),
        )
        ratio = ev / total_var if total_var > 0 else np.zeros_like(ev)
        if nc is None:
            k = r
        elif isinstance(nc, float):
            # The fewest components whose ratios add up to more than nc.
            k = int(np.searchsorted(np.cumsum(ratio), nc, side="right")) + 1
            k = min(k, r)
        else:
            k = nc
        if k < r:
            if solver == "randomized":
                noise = (total_var - ev.sum()) / (r - k)
            else:
                noise = float(ev[k:].mean())
        else:
            noise = 0.0
        dt = X.dtype
        self.svd_solver_ = solver
        self.n_samples_ = n
        self.n_features_in_ = d
        self.n_components_ = int(k)
        self.mean_ = mean.astype(dt, copy=False)
        self.components_ = np.ascontiguousarray(comps[:k], dtype=dt)
        self.explained_variance_ = ev[:k].astype(dt)
        self.explained_variance_ratio_ = ratio[:k].astype(dt)
        self.singular_values_ = sv[:k].astype(dt)
        self.noise_variance_ = dt.type(max(noise, 0.0))

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "components_")

    def _check_fitted(self) -> None:
        if not hasattr(self, "components_"):
            raise NotFittedError(
                f"This {type(self).__name__} instance is not fitted yet. Call 'fit' with "
                "appropriate arguments before using this estimator."
            )

    def transform(self, X: Any) -> np.ndarray:
        """Project ``X`` on the components: ``(X - mean_) @ components_.T``.

        With ``whiten=True`` each column is further divided by ``sqrt(explained_variance_)``.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])
        >>> np.round(PCA(n_components=1).fit(X).transform(X).ravel(), 6).tolist()
        [-1.414214, 0.0, 1.414214]
        """
        self._check_fitted()
        X = _as_matrix(X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting "
                f"{self.n_features_in_} features as input"
            )
        _check_finite(X)
        out = X @ self.components_.T
        # Centre after projecting: no copy of X; same as centring first in exact arithmetic.
        out -= self.mean_ @ self.components_.T
        if self.whiten:
            scale = np.sqrt(self.explained_variance_)
            scale = np.maximum(scale, np.finfo(scale.dtype).eps)
            out /= scale
        return out

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """Fit to ``X`` and return its projection (same as ``fit(X).transform(X)``).

        Examples
        --------
        >>> import numpy as np
        >>> X = np.random.default_rng(1).normal(size=(50, 4))
        >>> PCA(n_components=2).fit_transform(X).shape
        (50, 2)
        """
        X = _as_matrix(X)
        self._fit(X)
        return self.transform(X)

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Map projections back to the feature space: ``X @ components_ + mean_``.

        Reconstructs the training data exactly when all components are kept.

        Examples
        --------
        >>> import numpy as np
        >>> X = np.random.default_rng(2).normal(size=(20, 3))
        >>> pca = PCA(n_components=None).fit(X)
        >>> bool(np.allclose(pca.inverse_transform(pca.transform(X)), X))
        True
        """
        self._check_fitted()
        Z = _as_matrix(X)
        if Z.shape[1] != self.n_components_:
            raise ValueError(
                f"X has {Z.shape[1]} columns, but inverse_transform expects "
                f"n_components_={self.n_components_}"
            )
        _check_finite(Z)
        comps = self.components_
        if self.whiten:
            comps = np.sqrt(self.explained_variance_)[:, None] * comps
        return Z @ comps + self.mean_

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Output column names ``pca0, pca1, ...`` (as scikit-learn's PCA).

        Examples
        --------
        >>> import numpy as np
        >>> PCA(n_components=2).fit(np.eye(4)).get_feature_names_out().tolist()
        ['pca0', 'pca1']
        """
        self._check_fitted()
        return np.asarray([f"pca{i}" for i in range(self.n_components_)], dtype=object)


# -- projections of factor spaces ----------------------------------------------------------------

_ID_COLUMN = {"items": "item_id", "users": "user_id"}


def _l2_normalize(v: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length; all-zero rows stay zero."""
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    safe = np.where(norms > 0, norms, 1).astype(v.dtype)
    return v / safe


class Projection:
    """Low-dimensional coordinates of a set of labelled vectors, with the fitted :class:`PCA`.

    Made by :func:`project` (and ``ALS.pca()``). ``coordinates[i]`` belongs to ``labels[i]``.

    Attributes
    ----------
    coordinates : ndarray of shape (n, n_components)
        Principal-component coordinates of every vector.
    labels : ndarray of shape (n,)
        The user's ids of the vectors.
    pca : PCA
        The fitted estimator (``pca.explained_variance_ratio_`` tells how much each axis holds).
    which : {"items", "users"}
        Names the id column of the exports (``item_id`` or ``user_id``).
    max_points : int or None
        :meth:`plot` draws a seeded random sample of at most this many points.
    random_state : int or None
        Seed of that sample.

    Examples
    --------
    >>> import numpy as np
    >>> p = project(np.random.default_rng(0).normal(size=(100, 16)), np.arange(100))
    >>> p.coordinates.shape
    (100, 3)
    >>> p.to_arrow().column_names
    ['item_id', 'pc1', 'pc2', 'pc3']
    """

    def __init__(
        self,
        coordinates: np.ndarray,
        labels: np.ndarray,
        pca: PCA,
        *,
        which: str = "items",
        max_points: int | None = None,
        random_state: int | None = 0,
    ) -> None:
        self.coordinates = coordinates
        self.labels = labels
        self.pca = pca
        self.which = which
        self.max_points = max_points
        self.random_state = random_state

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        ratio = ", ".join(f"{r:.3f}" for r in self.pca.explained_variance_ratio_)
        return (
            f"Projection({len(self)} {self.which}, n_components={self.n_components}, "
            f"explained_variance_ratio=[{ratio}])"
        )

    @property
    def n_components(self) -> int:
        """Number of coordinates per point."""
        return int(self.coordinates.shape[1])

    @property
    def id_column(self) -> str:
        """``"item_id"`` or ``"user_id"``."""
        return _ID_COLUMN[self.which]

    @property
    def explained_variance_ratio_(self) -> np.ndarray:
        """Share of the total variance along each axis (from the fitted PCA)."""
        return self.pca.explained_variance_ratio_

    def sample_indices(self, max_points: int | None = None) -> np.ndarray:
        """Sorted indices of the points :meth:`plot` draws (all when there are few enough).

        Examples
        --------
        >>> import numpy as np
        >>> p = project(np.eye(5), list("abcde"), n_components=2, max_points=3)
        >>> len(p.sample_indices())
        3
        """
        limit = self.max_points if max_points is None else max_points
        n = len(self)
        if limit is None or n <= limit:
            return np.arange(n)
        if not isinstance(limit, numbers.Integral) or limit < 1:
            raise ValueError(f"max_points must be a positive int or None; got {limit!r}")
        rng = np.random.default_rng(self.random_state)
        return np.sort(rng.choice(n, size=int(limit), replace=False))

    def to_arrow(self) -> pa.Table:
        """An Arrow table: the id column (``item_id`` / ``user_id``) then ``pc1 .. pcK``.

        Examples
        --------
        >>> import numpy as np
        >>> project(np.eye(4), [10, 11, 12, 13], n_components=2).to_arrow().num_rows
        4
        """
        cols: dict[str, Any] = {self.id_column: pa.array(np.asarray(self.labels).tolist())}
        for j in range(self.n_components):
            cols[f"pc{j + 1}"] = pa.array(np.ascontiguousarray(self.coordinates[:, j]))
        return pa.table(cols)

    def to_pandas(self) -> Any:
        """The coordinates as a pandas DataFrame (columns of :meth:`to_arrow`).

        Examples
        --------
        >>> import numpy as np
        >>> list(project(np.eye(4), list("abcd"), n_components=2).to_pandas().columns)
        ['item_id', 'pc1', 'pc2']
        """
        return convert(self.to_arrow(), "pandas")

    def to_polars(self) -> Any:
        """The coordinates as a polars DataFrame (columns of :meth:`to_arrow`).

        Examples
        --------
        >>> import numpy as np
        >>> project(np.eye(4), list("abcd"), n_components=2).to_polars().columns
        ['item_id', 'pc1', 'pc2']
        """
        return convert(self.to_arrow(), "polars")

    def plot(
        self,
        title: str | None = None,
        color: Any = None,
        hover: Any = None,
        *,
        max_points: int | None = None,
        marker_size: float = 3.0,
        opacity: float = 0.8,
    ) -> Any:
        """An interactive plotly figure: ``Scatter3d`` for 3 components, ``Scatter`` for 2.

        Needs the ``plot`` extra (``pip install 'rusket[plot]'``).

        Parameters
        ----------
        title : str, optional
            Figure title; by default it names the space and the number of points shown.
        color : array-like of length n, dict label -> value, or pandas Series, optional
            A dict, or a pandas Series indexed by label (e.g.
            ``catalogue.set_index("article_id")["category"]``), is looked up by label: its
            order and extra entries do not matter, labels it lacks form a grey ``"(none)"``
            group, and ``ValueError`` says so when it holds none of the labels (or repeats
            one in its index). A plain array, list or polars Series is positional: value ``i``
            belongs to ``labels[i]`` (the order of ``labels`` and ``coordinates``, which for
            ``ALS.pca()`` is ``item_labels`` / ``user_labels``), and its length must be ``n``
            (else ``ValueError``). Numbers colour the points on a continuous scale; strings or
            categories give one legend entry per value.
        hover : array-like of length n, dict label -> text, or pandas Series, optional
            Extra hover text shown under each point's label (for example product names),
            aligned like ``color`` (empty where a dict or Series lacks the label).
        max_points : int, optional
            Overrides the projection's ``max_points`` for this figure.
        marker_size, opacity : float
            Marker look.

        Examples
        --------
        >>> import numpy as np
        >>> p = project(np.random.default_rng(0).normal(size=(50, 8)), np.arange(50))
        >>> fig = p.plot(title="Latent Item Space")  # doctest: +SKIP
        >>> fig.write_html("items.html")  # doctest: +SKIP
        >>> by_category = als.pca().plot(
        ...     color=catalogue.set_index("article_id")["category"],
        ...     hover=catalogue.set_index("article_id")["name"],
        ... )  # doctest: +SKIP
        """
        from rusket.plotting import projection_figure

        idx = self.sample_indices(max_points)
        return projection_figure(
            self.coordinates[idx],
            np.asarray(self.labels)[idx],
            axis_ratios=np.asarray(self.pca.explained_variance_ratio_),
            id_name=self.id_column,
            title=title,
            color=_aligned(color, self.labels, idx, "color"),
            hover=_aligned(hover, self.labels, idx, "hover"),
            n_total=len(self),
            marker_size=marker_size,
            opacity=opacity,
        )


def _aligned(values: Any, labels: np.ndarray, idx: np.ndarray, name: str) -> Any:
    """The values of the sampled points ``idx``: a dict or pandas Series (keyed by label) is
    passed on for lookup by label; a sequence (one value per label, in label order) is checked
    and sampled."""
    from rusket.plotting import _is_by_label

    if values is None or _is_by_label(values):
        return values
    arr = np.asarray(values)
    if arr.ndim != 1 or len(arr) != len(labels):
        raise ValueError(
            f"{name} must have one value per point ({len(labels)}) in the order of the labels, "
            f"or be a dict / pandas Series keyed by label; got shape {arr.shape}"
        )
    return arr[idx]


def project(
    vectors: npt.ArrayLike,
    labels: Sequence[Any] | np.ndarray | None = None,
    *,
    n_components: int = 3,
    normalize: bool = True,
    which: str = "items",
    max_points: int | None = 50_000,
    random_state: int | None = 0,
) -> Projection:
    """Project labelled vectors (factors, embeddings) on their first principal components.

    Parameters
    ----------
    vectors : array-like of shape (n, d)
        One vector per row, e.g. ``ALS.item_factors``.
    labels : sequence of length n, optional
        The id of each row (the user's own labels); ``0 .. n-1`` when omitted.
    n_components : int, default=3
        Coordinates per point: 3 gives a 3-d figure, 2 a flat one.
    normalize : bool, default=True
        Scale every vector to unit length first (cosine geometry, the one recommendations
        use); all-zero vectors stay zero.
    which : {"items", "users"}, default="items"
        Names the id column of the exports: ``item_id`` or ``user_id``.
    max_points : int or None, default=50_000
        The figure draws a seeded random sample of at most this many points so that it stays
        responsive; the coordinates and exports keep every point. ``None`` draws all.
    random_state : int or None, default=0
        Seed of that sample and of the PCA (relevant for very wide vectors only).

    Returns
    -------
    Projection
        Coordinates, labels and the fitted :class:`PCA`; ``.plot()``, ``.to_pandas()``,
        ``.to_polars()``.

    Examples
    --------
    >>> import numpy as np
    >>> vecs = np.random.default_rng(0).normal(size=(200, 32)).astype(np.float32)
    >>> proj = project(vecs, [f"sku{i}" for i in range(200)], n_components=2)
    >>> proj.to_pandas().columns.tolist()
    ['item_id', 'pc1', 'pc2']
    >>> fig = proj.plot(title="Latent Item Space")  # doctest: +SKIP
    """
    if which not in _ID_COLUMN:
        raise ValueError(f"which must be 'items' or 'users'; got {which!r}")
    v = _as_matrix(vectors, "vectors")
    n = v.shape[0]
    labs = np.arange(n) if labels is None else np.asarray(labels)
    if labs.ndim != 1 or len(labs) != n:
        raise ValueError(f"labels must have one entry per vector ({n}); got shape {np.shape(labs)}")
    if max_points is not None and (
        not isinstance(max_points, numbers.Integral)
        or isinstance(max_points, bool)
        or max_points < 1
    ):
        raise ValueError(f"max_points must be a positive int or None; got {max_points!r}")
    if normalize:
        v = _l2_normalize(v)
    pca = PCA(n_components=n_components, random_state=random_state)
    coords = pca.fit_transform(v)
    return Projection(
        coords, labs, pca, which=which, max_points=max_points, random_state=random_state
    )
