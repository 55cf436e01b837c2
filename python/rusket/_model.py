"""The recommendation surface shared by every rusket model.

A model is its parameters plus one fitted state, a frozen :class:`_Fitted`. Training (``fit`` /
``from_transactions`` in each model's own module) builds a complete state and assigns it in one
attribute assignment at its very end, so a thread that scores while another one refits always
sees one consistent model, the old one or the new one. Every method here reads the state once,
at its start, and uses only that.

::

    Recommender          parameters protocol, labels, seen items, recommend_items /
     |                   recommend_users / batch_recommend, evaluate, save / load
     +- FactorModel      + user_factors / item_factors, similar_items, exports, pca
     |   +- ALS          (als.py: parameters and training only)
     +- Popularity       (popularity.py)

Scoring always runs the Rust top-k (``_core.topk``) over the state's factors: the score of an
item for a user is the dot product of their rows. Popularity stores one-column factors (every
user 1, every item its number of buyers), so excluding seen items and every output format work
the same for it.

A model file is hostile input: :meth:`Recommender.load` checks it with the rules of ``fit``
before anything reads it, and raises ``ValueError`` naming what is wrong.
"""

from __future__ import annotations

import difflib
import errno
import functools
import inspect
import json
import numbers
import os
import tempfile
from collections.abc import Callable, Iterable, Mapping, Sized
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import pyarrow as pa
import scipy.sparse as sp

from rusket import _core
from rusket._formats import check_format, convert, vectors_to_arrow
from rusket._validation import (
    NotFittedError,
    check_choice,
    check_int,
    check_label_array,
    check_threads,
    lookup,
)
from rusket.interactions import Interactions, check_values

if TYPE_CHECKING:  # pragma: no cover
    from rusket.pca import Projection

#: Version of the ``.npz`` model files written by :meth:`Recommender.save`. Version 2 stores
#: string labels as UTF-8 bytes + offsets (version 1 used numpy's unicode dtype, which drops
#: trailing NUL characters) and names the label kinds in the metadata; both versions are read.
FORMAT_VERSION = 2
_READABLE_VERSIONS = (1, 2)

_M = TypeVar("_M", bound="Recommender")


class _ClassOrInstanceMethod:
    """Lets ``from_transactions`` be called on the class (building a model from keyword
    parameters) or on an instance (keeping its parameters).

    The bound function carries the real signature (without ``self``), so ``inspect.signature``,
    ``help`` and IDEs show ``(data, transaction_col, item_col, rating_col=None, ...)``, and an
    unknown keyword is answered with the valid names and a near match before anything runs.
    """

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func
        self.__doc__ = func.__doc__
        self.__name__ = func.__name__
        self.__qualname__ = func.__qualname__
        self.__wrapped__ = func
        params = list(inspect.signature(func).parameters.values())[1:]  # without self
        self.__signature__ = inspect.signature(func).replace(parameters=params)

    def __get__(self, obj: Any, cls: type) -> Callable[..., Any]:
        func, sig = self.func, self.__signature__
        owner = type(obj) if obj is not None else cls

        @functools.wraps(func)
        def bound(*args: Any, **kwargs: Any) -> Any:
            _check_call(owner, func.__name__, sig, args, kwargs)
            target = obj if obj is not None else cls()
            return func(target, *args, **kwargs)

        bound.__signature__ = sig  # type: ignore[attr-defined]
        return bound


#: What users coming from other libraries type for the column arguments of from_transactions.
_COLUMN_ALIASES = {
    "transaction_col": (
        "user_col",
        "users_col",
        "customer_col",
        "customer_id_col",
        "client_col",
        "user",
        "customer",
    ),
    "item_col": ("article_col", "product_col", "sku_col", "item", "article"),
    "rating_col": (
        "value_col",
        "amount_col",
        "sales_col",
        "weight_col",
        "quantity_col",
        "count_col",
        "rating",
        "ratings_col",
    ),
}


def _near(name: str, valid: list[str]) -> str:
    """``" (did you mean X?)"`` for the closest valid name, or ``""``."""
    for target, aliases in _COLUMN_ALIASES.items():
        if name in aliases and target in valid:
            return f" (did you mean {target}?)"
    close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _check_call(
    owner: type, name: str, sig: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    """``TypeError`` for a keyword that is neither an argument of ``sig`` nor (when ``sig`` takes
    ``**params``) a model parameter, naming the valid ones and a near match; then the usual
    binding errors (missing or repeated arguments), said with the signature."""
    named = [
        p.name for p in sig.parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    takes_params = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    model_params: list[str] = owner._param_names() if takes_params else []  # type: ignore[attr-defined]
    where = f"{owner.__name__}.{name}()"
    for key in kwargs:
        if key in named or key in model_params:
            continue
        valid = named + model_params
        also = f"; model parameters: {', '.join(model_params)}" if model_params else ""
        raise TypeError(
            f"{where} got an unknown keyword argument {key!r}{_near(key, valid)}; arguments: "
            f"{', '.join(named)}{also} (transaction_col is the customer id column)"
        )
    try:
        sig.bind(*args, **kwargs)
    except TypeError as e:
        plain = sig.replace(
            parameters=[p.replace(annotation=p.empty) for p in sig.parameters.values()],
            return_annotation=sig.empty,
        )
        raise TypeError(f"{where}: {e}; call it as {name}{plain}") from None


# --- the fitted state ------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Fitted:
    """Everything a fitted model scores with, replaced as one object by every (re)fit.

    Holds numpy / scipy objects only, so that a model pickles (Spark ships models to its
    executors). Its arrays are read-only. ``_cache`` keeps scoring data derived from the state
    (index arrays of ``seen``, its transpose, unit item vectors); it is never pickled and is
    rebuilt on first use.

    Attributes
    ----------
    user_factors, item_factors : ndarray of float32, C-contiguous
        ``(n_users, f)`` and ``(n_items, f)``; the score of item ``i`` for user ``u`` is
        ``user_factors[u] @ item_factors[i]``.
    user_labels, item_labels : ndarray
        Unique labels (int64, or an object array of ``str``), one per row of the factors:
        sorted when the model came from ``from_transactions``, in the caller's order for
        ``fit(X, user_labels=..., item_labels=...)``. Lookups go through :meth:`user_index` /
        :meth:`item_index` (a sorted copy for binary search), never through this order.
    seen : scipy.sparse.csr_matrix
        Users x items, sorted unique column indices, float32 values > 0: the training
        interactions (ALS: confidences; Popularity: summed ratings).
    """

    user_factors: np.ndarray
    item_factors: np.ndarray
    user_labels: np.ndarray
    item_labels: np.ndarray
    seen: sp.csr_matrix
    _cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    @classmethod
    def build(
        cls,
        user_factors: np.ndarray,
        item_factors: np.ndarray,
        user_labels: np.ndarray,
        item_labels: np.ndarray,
        seen: sp.csr_matrix,
    ) -> _Fitted:
        """The state with arrays in the layout the kernels take (no copy where they already
        are), made read-only."""
        seen = sp.csr_matrix(seen, dtype=np.float32)
        state = cls(
            np.ascontiguousarray(user_factors, dtype=np.float32),
            np.ascontiguousarray(item_factors, dtype=np.float32),
            user_labels,
            item_labels,
            seen,
        )
        state._freeze()
        return state

    def _freeze(self) -> None:
        for a in (self.user_factors, self.item_factors, self.user_labels, self.item_labels):
            a.flags.writeable = False
        for a in (self.seen.indptr, self.seen.indices, self.seen.data):
            a.flags.writeable = False

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state.pop("_cache", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.__dict__["_cache"] = {}
        self._freeze()

    def _cached(self, key: str, build: Callable[[], Any]) -> Any:
        # Two threads may both build a missing entry; either result is the same value.
        value = self._cache.get(key)
        if value is None:
            value = build()
            self._cache[key] = value
        return value

    def seen_rows(self, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Exclusion arrays ``(indptr int64, indices int32)`` of the given users' seen items,
        in the order of ``rows`` (every user when ``None``)."""
        indptr, indices = self._cached("seen", lambda: _index_arrays(self.seen))
        if rows is None:
            return indptr, indices
        if len(rows) == 1:  # one customer: a view of its slice, no gather
            start, stop = int(indptr[rows[0]]), int(indptr[rows[0] + 1])
            return np.array([0, stop - start], dtype=np.int64), indices[start:stop]
        return _take_rows(indptr, indices, rows)

    def topk_index(self, which: str) -> Any:
        """The prepared targets of the Rust top-k (``_core.TopKIndex``: checked, packed, with
        the int8 screen of single queries), built on first use and kept for every later
        call of this state: ``"items"`` (item factors), ``"users"`` (user factors),
        ``"unit_items"`` / ``"unit_users"`` (unit vectors, for cosine similarity)."""

        def build() -> Any:
            vectors = {
                "items": lambda: self.item_factors,
                "users": lambda: self.user_factors,
                "unit_items": self.unit_items,
                "unit_users": self.unit_users,
            }[which]()
            return _core.TopKIndex(vectors)

        return self._cached(f"topk_{which}", build)

    def buyers(self, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exclusion arrays of the users who bought each item of ``cols``."""

        def transpose() -> tuple[np.ndarray, np.ndarray]:
            t = self.seen.T.tocsr()
            t.sort_indices()
            return _index_arrays(t)

        indptr, indices = self._cached("buyers", transpose)
        return _take_rows(indptr, indices, cols)

    def unit_items(self) -> np.ndarray:
        """The item vectors scaled to unit L2 norm (zero vectors stay zero)."""
        return self._cached("unit_items", lambda: _frozen(_l2_normalize(self.item_factors)))

    def unit_users(self) -> np.ndarray:
        """The user vectors scaled to unit L2 norm (zero vectors stay zero)."""
        return self._cached("unit_users", lambda: _frozen(_l2_normalize(self.user_factors)))

    def user_index(self) -> _LabelIndex:
        """Label -> row lookups of the users (binary search over a sorted copy)."""
        return self._cached("user_index", lambda: _LabelIndex.of(self.user_labels, "user"))

    def item_index(self) -> _LabelIndex:
        """Label -> column lookups of the items."""
        return self._cached("item_index", lambda: _LabelIndex.of(self.item_labels, "item"))

    def popular_items(self) -> tuple[np.ndarray, np.ndarray]:
        """Every item index, most distinct buyers first (ties in item order), and the buyer
        counts (int64) of the items in that order: what a customer unknown to the model gets."""

        def rank() -> tuple[np.ndarray, np.ndarray]:
            buyers = np.bincount(self.seen.indices, minlength=self.seen.shape[1])
            order = np.argsort(-buyers, kind="stable")
            return _frozen(order.astype(np.int64)), _frozen(buyers[order].astype(np.int64))

        return self._cached("popular", rank)


@dataclass(frozen=True, eq=False)
class _LabelIndex:
    """Finds the rows of labels in a label array of any order: ``sorted_labels`` is the labels
    sorted and ``order[k]`` the row of ``sorted_labels[k]`` (``None`` when the labels are sorted
    already, the usual case), so a lookup is one vectorised ``searchsorted``."""

    labels: np.ndarray
    sorted_labels: np.ndarray
    order: np.ndarray | None
    what: str

    @classmethod
    def of(cls, labels: np.ndarray, what: str) -> _LabelIndex:
        if _is_sorted(labels):
            return cls(labels, labels, None, what)
        order = np.argsort(labels, kind="stable").astype(np.int64)
        return cls(labels, _frozen(labels[order]), _frozen(order), what)

    def rows(self, keys: Any) -> np.ndarray:
        """The row of every key (a label or a 1-d sequence of labels): the shared
        :func:`rusket._validation.lookup` over the sorted copy, so every check of a key and
        every message is that one's (``KeyError`` naming the first unknown label)."""
        pos = lookup(self.sorted_labels, keys, self.what)
        return pos if self.order is None else self.order[pos]

    def find(self, keys: Any) -> tuple[np.ndarray, np.ndarray]:
        """``(keys, rows)`` without failing on unknown labels: the keys as a 1-d array of the
        labels' kind and the row of each, -1 where the label is unknown. A key of the wrong
        kind (a string for integer labels, or the reverse) still raises ``KeyError`` naming it,
        and a boolean ``TypeError``: those are mistakes, not new customers."""
        arr = _keys_like(self.labels, keys, self.what)
        pos = np.minimum(np.searchsorted(self.sorted_labels, arr), len(self.sorted_labels) - 1)
        found = np.asarray(self.sorted_labels[pos] == arr, dtype=bool)
        rows = pos if self.order is None else self.order[pos]
        return arr, np.where(found, rows, -1).astype(np.int64)


def _keys_like(labels: np.ndarray, keys: Any, what: str) -> np.ndarray:
    """``keys`` (one label or a 1-d sequence) as a 1-d array of the kind of ``labels``: int64
    for integer labels, an object array of ``str`` for string labels; the checks of
    :func:`rusket._validation.lookup`, minus its search."""
    if (
        isinstance(keys, (bool, np.bool_))
        or getattr(getattr(keys, "dtype", None), "kind", "") == "b"
    ):
        raise TypeError(f"{what} labels are integers or strings, never booleans; got {keys!r}")
    str_labels = labels.dtype == object
    arr = np.atleast_1d(np.asarray(keys, dtype=object if str_labels else None))
    if arr.ndim != 1:
        raise ValueError(
            f"{what} labels must be a label or a 1-d sequence of labels, got shape {arr.shape}"
        )
    if str_labels:
        arr = arr.astype(object, copy=False)
        for k in arr.tolist():
            if not isinstance(k, str):
                raise KeyError(f"unknown {what} {k!r}: this model's {what} labels are strings")
        return arr
    if arr.dtype.kind == "i" and not isinstance(keys, (list, tuple)):
        return arr.astype(np.int64, copy=False)
    if arr.dtype.kind == "u":
        values = arr.tolist()
        too_big = arr > _INT64_MAX
    else:
        # Python sequences: look at the values as given ([0, True] would become [0, 1]).
        values = list(keys) if isinstance(keys, (list, tuple)) else arr.tolist()
        for k in values:
            if isinstance(k, (bool, np.bool_)):
                raise TypeError(f"{what} labels are integers or strings, never booleans; got {k!r}")
            if not isinstance(k, numbers.Integral):
                raise KeyError(f"unknown {what} {k!r}: this model's {what} labels are integers")
        too_big = np.array([not _INT64_MIN <= k <= _INT64_MAX for k in values], dtype=bool)
    if too_big.any():  # beyond int64: no label can be it (and a cast would wrap around)
        raise KeyError(
            f"unknown {what} {values[int(np.argmax(too_big))]!r}: it was not in the training data"
        )
    return arr.astype(np.int64)


_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)


def _frozen(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def _index_arrays(m: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    return (
        _frozen(np.ascontiguousarray(m.indptr, dtype=np.int64)),
        _frozen(np.ascontiguousarray(m.indices, dtype=np.int32)),
    )


def _take_rows(
    indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """CSR index arrays of the rows ``rows`` (in that order), gathered without a Python loop."""
    rows = np.asarray(rows, dtype=np.int64)
    starts = indptr[rows]
    lengths = indptr[rows + 1] - starts
    out_ptr = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=out_ptr[1:])
    positions = np.arange(out_ptr[-1], dtype=np.int64) + np.repeat(starts - out_ptr[:-1], lengths)
    return out_ptr, np.ascontiguousarray(indices[positions], dtype=np.int32)


_LEGACY_NAMES = {
    "_user_items": "seen",
    "_user_factors": "user_factors",
    "_item_factors": "item_factors",
    "_user_labels": "user_labels",
    "_item_labels": "item_labels",
}


# --- the shared surface ----------------------------------------------------------------------


class Recommender:
    """Base of every rusket model: parameters, labels, seen items, recommendations,
    evaluation and persistence. Subclasses add parameters (stored by ``__init__`` only) and
    training (``fit``, ``from_transactions``, ``_fit_interactions``).

    Every public id is the user's own label (int or string); internal indices never leak.

    **Scores.** The score of an item for a user is the dot product of their latent vectors
    (:class:`Popularity`: the item's number of buyers). It ranks items for one user and users
    for one item; it is not a probability, has no fixed range, and is comparable only between
    scores of the same fitted model.

    **One label or many.** ``recommend_items(user)``, ``recommend_users(item)`` and
    ``similar_items(item)`` take exactly one label (a list, array, tuple or Series raises
    ``TypeError``); ``batch_recommend(users=[...])`` serves many users at once and
    ``score(users, items)`` scores given (user, item) pairs.

    **Seen items.** ``recommend_items`` and ``batch_recommend`` skip what the user already
    bought by default (``exclude_seen=True``: a recommendation is something new);
    ``recommend_users`` keeps buyers by default (``exclude_seen=False``: "who is closest to
    this item"); pass ``exclude_seen=True`` there for a campaign's target list.
    """

    #: The model's name in files and messages.
    _model_name: ClassVar[str] = "Recommender"
    #: The fitted state: set (in one assignment) by training and by load, never modified.
    _state: _Fitted

    def __init__(self) -> None:
        """No parameters; models with parameters store them here and nothing else."""

    # --- scikit-learn parameter protocol ---------------------------------------------------

    @classmethod
    def _param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [
            name
            for name, p in sig.parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]

    #: Values of parameters added later, for model files written before they existed.
    _legacy_param_values: ClassVar[dict[str, Any]] = {}

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters as a dict (scikit-learn protocol)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self: _M, **params: Any) -> _M:
        """Set constructor parameters; unknown names raise ``TypeError``."""
        valid = self._param_names()
        for key, value in params.items():
            if key not in valid:
                raise TypeError(
                    f"unknown parameter {key!r} for {self._model_name}{_near(key, valid)}; "
                    f"valid parameters: {', '.join(valid) or '(none)'}"
                )
            setattr(self, key, value)
        return self

    def __repr__(self) -> str:
        defaults = {
            k: v.default for k, v in inspect.signature(type(self).__init__).parameters.items()
        }
        changed = [
            f"{k}={v!r}" for k, v in self.get_params().items() if k in defaults and v != defaults[k]
        ]
        return f"{type(self).__name__}({', '.join(changed)})"

    def _checked_params(self) -> dict[str, Any]:
        """The validated parameters (``TypeError`` / ``ValueError`` naming a bad one)."""
        return {}

    def _num_threads(self) -> int:
        return check_threads(getattr(self, "num_threads", 0))

    # --- training entry points shared by the models ----------------------------------------

    def _fit_interactions(self: _M, inter: Interactions) -> _M:
        raise NotImplementedError

    # --- fitted state ------------------------------------------------------------------------

    def _fitted_state(self) -> _Fitted:
        """The current fitted state; read it once per method and use only that."""
        state: _Fitted | None = self.__dict__.get("_state")
        if state is None:
            raise NotFittedError(
                f"this {self._model_name} model is not fitted yet; call from_transactions(...) "
                "or fit(...) first"
            )
        return state

    def _fitted(self, name: str) -> Any:
        """Compatibility accessor of the state's parts by their former attribute names:
        ``"_user_items"`` (the seen matrix, CSR), ``"_user_factors"``, ``"_item_factors"``,
        ``"_user_labels"``, ``"_item_labels"``. Callers that read more than one part should
        call :meth:`_fitted_state` once instead, to read them from one model."""
        try:
            part = _LEGACY_NAMES[name]
        except KeyError:
            raise AttributeError(
                f"no fitted part {name!r}; known: {', '.join(_LEGACY_NAMES)}"
            ) from None
        return getattr(self._fitted_state(), part)

    @property
    def user_labels(self) -> np.ndarray:
        """The user labels of the training data, one per row of ``user_factors`` (read-only):
        sorted after ``from_transactions``, in the caller's order after
        ``fit(X, user_labels=...)`` (row ``i`` of ``X`` is ``user_labels[i]``)."""
        return self._fitted_state().user_labels

    @property
    def item_labels(self) -> np.ndarray:
        """The item labels of the training data, one per row of ``item_factors`` (read-only):
        sorted after ``from_transactions``, in the caller's order after
        ``fit(X, item_labels=...)``."""
        return self._fitted_state().item_labels

    # --- recommendations ---------------------------------------------------------------------

    def _topk(
        self,
        query: np.ndarray,
        targets: np.ndarray,
        n: int,
        exclude: tuple[np.ndarray, np.ndarray] | None,
        allowed: np.ndarray | None = None,
        index: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The Rust top-``n`` of every row of ``query`` against the rows of ``targets``:
        ``(indices int32, scores float32)``, ``min(n, len(targets))`` wide, padded with -1 /
        NaN.

        ``exclude``: CSR ``(indptr, indices)`` of targets to skip per query row; ``allowed``:
        bool mask over the targets (see :func:`_item_filter`), False = never returned;
        ``index``: the prepared targets (:meth:`_Fitted.topk_index`). Without ``index``, the
        current state's item index is used when ``targets`` is its ``item_factors``, so callers
        that score against the item factors (fold-in) get the prepared, cached path too.
        """
        kw: dict[str, Any] = {"num_threads": self._num_threads()}
        if exclude is not None:
            kw["exclude_indptr"], kw["exclude_indices"] = exclude
        if allowed is not None:
            kw["allowed"] = allowed
        query = np.ascontiguousarray(query, dtype=np.float32)
        if index is None:
            state: _Fitted | None = self.__dict__.get("_state")
            if state is not None and targets is state.item_factors:
                index = state.topk_index("items")
        if index is not None:
            return index.topk(query, n, **kw)  # type: ignore[no-any-return]
        return _core.topk(query, targets, n, **kw)

    def recommend_items(
        self,
        user: Any,
        n: int = 10,
        exclude_seen: bool = True,
        candidates: Any = None,
        exclude_items: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` best items for one user, as ``(item_labels, scores)``, best first.

        Parameters
        ----------
        user : int or str
            One user label. For many users use ``batch_recommend(users=[...])`` (a list,
            array, tuple or Series here raises ``TypeError``).
        n : int, default 10
        exclude_seen : bool, default True
            Skip the items the user bought in the training data (so fewer than ``n`` may
            come back).
        candidates : item label or 1-d sequence of item labels, optional
            Business filter: only these items may be recommended (e.g. the articles in
            stock). ``None`` (default) allows every item; an empty sequence allows none.
        exclude_items : item label or 1-d sequence of item labels, optional
            Business filter: never recommend these (e.g. articles merchandising forbids).
            Applied with ``candidates`` and ``exclude_seen``: the user gets the best ``n`` of
            what is left (fewer only if fewer are left). Unknown labels in either filter
            raise ``KeyError`` naming them.

        Returns
        -------
        item_labels : ndarray
        scores : ndarray of float32
            Dot products of the user's and the items' latent vectors (:class:`Popularity`:
            buyer counts): they rank, they are not probabilities, and they compare only within
            one fitted model. Equal scores are ranked in ``item_labels`` order.

        Raises ``KeyError`` for a user not in the training data.

        Examples
        --------
        >>> import pandas as pd, rusket
        >>> df = pd.DataFrame({"user": [1, 1, 2, 3], "item": ["a", "b", "a", "c"]})
        >>> model = rusket.Popularity.from_transactions(df, "user", "item")
        >>> model.recommend_items(user=3, n=2)[0].tolist()
        ['a', 'b']
        >>> model.recommend_items(user=3, n=2, exclude_items=["a"])[0].tolist()
        ['b']
        """
        state = self._fitted_state()
        n = check_int("n", n, minimum=1)
        _check_bool("exclude_seen", exclude_seen)
        rows = _one_label(
            state.user_index(), user, "recommend_items", "batch_recommend(users=[...])"
        )
        allowed = _item_filter(state, candidates, exclude_items)
        exclude = state.seen_rows(rows) if exclude_seen else None
        idx, scores = self._topk(
            state.user_factors[rows],
            state.item_factors,
            n,
            exclude,
            allowed,
            state.topk_index("items"),
        )
        keep = idx[0] >= 0
        return state.item_labels[idx[0][keep]], scores[0][keep]

    def recommend_users(
        self, item: Any, n: int = 10, exclude_seen: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` users with the highest score for one item, as ``(user_labels, scores)``.

        Parameters
        ----------
        item : int or str
            One item label (a list, array, tuple or Series raises ``TypeError``: call it once
            per item).
        n : int, default 10
        exclude_seen : bool, default False
            Unlike :meth:`recommend_items` (default ``True``), buyers of the item are kept by
            default: the answer is "who is closest to this item". ``exclude_seen=True`` skips
            them: the natural target list for a campaign.

        Scores are those of :meth:`recommend_items` (dot products, not probabilities). Equal
        scores are ranked in ``user_labels`` order (for :class:`Popularity` every user scores
        the same for an item).

        Examples
        --------
        >>> import pandas as pd, rusket
        >>> df = pd.DataFrame({"user": [1, 1, 2, 3], "item": ["a", "b", "a", "c"]})
        >>> model = rusket.Popularity.from_transactions(df, "user", "item")
        >>> model.recommend_users(item="a", exclude_seen=True)[0].tolist()
        [3]
        """
        state = self._fitted_state()
        n = check_int("n", n, minimum=1)
        _check_bool("exclude_seen", exclude_seen)
        cols = _one_label(
            state.item_index(),
            item,
            "recommend_users",
            "one call per item (batch_recommend(users=[...]) serves many users)",
        )
        exclude = state.buyers(cols) if exclude_seen else None
        idx, scores = self._topk(
            state.item_factors[cols],
            state.user_factors,
            n,
            exclude,
            index=state.topk_index("users"),
        )
        keep = idx[0] >= 0
        return state.user_labels[idx[0][keep]], scores[0][keep]

    def score(self, users: Any, items: Any) -> np.ndarray:
        """The scores of given (user, item) pairs, e.g. to rank a campaign's own candidates.

        Parameters
        ----------
        users, items : label or 1-d sequence of labels
            Aligned: pair ``k`` is ``(users[k], items[k])``. One label on either side is
            paired with every label of the other.

        Returns
        -------
        ndarray of float32, shape (n_pairs,)
            The score :meth:`recommend_items` gives the pair (the dot product of the latent
            vectors; :class:`Popularity`: the item's number of buyers), whether or not the
            user bought the item. Two single labels give one score in a 1-element array.

        Raises ``KeyError`` naming the first unknown label and ``ValueError`` when both sides
        are sequences of different lengths.

        Examples
        --------
        >>> import pandas as pd, rusket
        >>> df = pd.DataFrame({"user": [1, 1, 2, 3], "item": ["a", "b", "a", "c"]})
        >>> model = rusket.Popularity.from_transactions(df, "user", "item")
        >>> model.score([1, 2, 3], ["a", "b", "c"]).tolist()
        [2.0, 1.0, 1.0]
        >>> model.score(3, ["a", "c"]).tolist()
        [2.0, 1.0]
        """
        state = self._fitted_state()
        rows = state.user_index().rows(users)
        cols = state.item_index().rows(items)
        if len(rows) != len(cols):
            if np.ndim(users) == 0:
                rows = np.repeat(rows, len(cols))
            elif np.ndim(items) == 0:
                cols = np.repeat(cols, len(rows))
            else:
                raise ValueError(
                    f"users and items must be aligned: got {len(rows)} users and {len(cols)} "
                    "items (or give one label on either side)"
                )
        out = np.empty(len(rows), dtype=np.float32)
        # Row-wise dot products of the gathered vectors, in blocks to bound the gathered copies.
        for start in range(0, len(rows), _SCORE_BLOCK):
            r, c = rows[start : start + _SCORE_BLOCK], cols[start : start + _SCORE_BLOCK]
            np.einsum(
                "ij,ij->i",
                state.user_factors[r],
                state.item_factors[c],
                out=out[start : start + len(r)],
            )
        return out

    def batch_recommend(
        self,
        n: int = 10,
        exclude_seen: bool = True,
        users: Any = None,
        format: str = "pandas",
        unknown: str = "raise",
        candidates: Any = None,
        exclude_items: Any = None,
    ) -> Any:
        """Exact top-``n`` items for every user (or the given user labels) in one parallel pass.

        Parameters
        ----------
        n : int, default 10
        exclude_seen : bool, default True
            Skip each user's training items (never recommend a seen item).
        users : label or 1-d sequence of labels, optional
            The users to serve, in this order (duplicates allowed); default every user in
            ``user_labels`` order.
        format : {"pandas", "polars", "arrow", "spark", "numpy"}, default "pandas"
        unknown : {"raise", "drop", "popular"}, default "raise"
            What to do with labels of ``users`` that were not in the training data (cold
            start, like Spark MLlib's ``coldStartStrategy``): ``"raise"`` a ``KeyError``
            naming the first one; ``"drop"`` them (no rows for them); or give them the
            ``"popular"`` items: most distinct buyers in the training data first, ties in
            ``item_labels`` order, with the buyer counts (float32) as scores. Those scores are
            counts, not dot products: do not compare them with the model's scores of known
            users. A label of the wrong kind (a string for integer labels, or the reverse)
            raises ``KeyError`` in every mode.
        candidates, exclude_items : item label or 1-d sequence of item labels, optional
            Business filters applied to every user (see :meth:`recommend_items`): only
            ``candidates`` may be recommended, ``exclude_items`` never; each user gets the
            best ``n`` of what is allowed (fewer rows, or padding in ``"numpy"``, only when
            fewer are allowed). ``unknown="popular"`` users get the most popular allowed
            items. Unknown labels in the filters raise ``KeyError`` naming them.

        Returns
        -------
        Frame formats hold rows ``user_id, item_id, score, rank`` (rank 1 = best; a user with
        fewer than ``n`` unseen items gets fewer rows, never a seen item). ``"numpy"`` gives
        ``(item_labels[n_users, w], scores[n_users, w])``, ``w = min(n, n_items)`` (memory never
        grows with ``n``), with a row per user in the order of
        ``user_labels`` (or of ``users``, less the dropped ones); slots past a user's last
        candidate are padding, marked by a NaN score (their label is -1 for integer labels and
        None for string labels).

        Examples
        --------
        >>> import pandas as pd, rusket
        >>> df = pd.DataFrame({"user": [1, 1, 2, 3], "item": ["a", "b", "a", "c"]})
        >>> model = rusket.Popularity.from_transactions(df, "user", "item")
        >>> recs = model.batch_recommend(n=2, format="pandas")
        >>> list(recs.columns)
        ['user_id', 'item_id', 'score', 'rank']
        >>> recs[recs.user_id == 2].item_id.tolist()
        ['b', 'c']
        >>> new = model.batch_recommend(n=1, users=[2, 99], unknown="popular", format="pandas")
        >>> new.item_id.tolist()
        ['b', 'a']
        """
        state = self._fitted_state()
        n = check_int("n", n, minimum=1)
        _check_bool("exclude_seen", exclude_seen)
        check_format(format)
        unknown = check_choice("unknown", unknown, _UNKNOWN_USERS)
        allowed = _item_filter(state, candidates, exclude_items)
        if users is None:
            query, user_labels = state.user_factors, state.user_labels
            exclude = state.seen_rows() if exclude_seen else None
            idx, scores = self._topk(
                query, state.item_factors, n, exclude, allowed, state.topk_index("items")
            )
        else:
            user_labels, rows = state.user_index().find(users)
            known = rows >= 0
            if unknown == "raise" and not known.all():
                bad = user_labels[~known].tolist()[0]
                raise KeyError(
                    f"unknown user {bad!r}: it was not in the training data (pass "
                    "unknown='drop' or unknown='popular' to serve the others)"
                )
            if unknown == "drop":
                user_labels, rows, known = user_labels[known], rows[known], known[known]
            idx, scores = self._topk_rows(state, rows[known], n, exclude_seen, allowed)
            if not known.all():  # unknown="popular"
                idx, scores = _with_popular(state, idx, scores, known, n, allowed)
        return _recommendation_output(idx, scores, user_labels, state.item_labels, n, format)

    def _topk_rows(
        self,
        state: _Fitted,
        rows: np.ndarray,
        n: int,
        exclude_seen: bool,
        allowed: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        exclude = state.seen_rows(rows) if exclude_seen else None
        return self._topk(
            state.user_factors[rows],
            state.item_factors,
            n,
            exclude,
            allowed,
            state.topk_index("items"),
        )

    # --- evaluation --------------------------------------------------------------------------

    def evaluate(self, test: Any, user_col: str, item_col: str, k: int = 10) -> dict[str, Any]:
        """Ranking metrics of this model's top-``k`` on held-out order lines ``test``.

        Shorthand for ``rusket.evaluation.evaluate(model, test, user_col, item_col, k)``: a dict
        with ``ndcg@k``, ``precision@k``, ``recall@k``, ``map@k``, ``hit_rate@k``,
        ``coverage@k`` and the counts of evaluated and skipped customers; see there.

        Examples
        --------
        >>> import pandas as pd, rusket
        >>> train = pd.DataFrame({"c": [1, 1, 2, 2, 3], "a": [10, 11, 10, 12, 11]})
        >>> test = pd.DataFrame({"c": [1, 3], "a": [12, 12]})
        >>> pop = rusket.Popularity.from_transactions(train, "c", "a")
        >>> pop.evaluate(test, "c", "a", k=1)["hit_rate@1"]
        0.5
        """
        from rusket.evaluation import evaluate

        return evaluate(self, test, user_col, item_col, k)

    # --- persistence -------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the fitted model to one ``.npz`` file (no pickle), atomically.

        Format version 2: arrays ``user_factors``, ``item_factors`` (float32, 2-d);
        ``user_labels`` / ``item_labels`` (int64) for integer labels, or
        ``user_labels_utf8`` (uint8, the UTF-8 bytes of all labels) with ``user_labels_offsets``
        (int64, ``n + 1`` offsets into them) for string labels (same for items);
        ``seen_indptr`` (int64) / ``seen_indices`` (int32) / ``seen_data`` (float32): the
        training interactions as CSR; and ``metadata``: UTF-8 JSON with ``format_version``,
        ``rusket_version``, ``model``, ``params`` and the label kinds ``user_labels`` /
        ``item_labels`` (``"int"`` or ``"str"``). A missing directory raises
        ``FileNotFoundError`` naming ``path``.

        Examples
        --------
        >>> model.save("model.npz"); same = type(model).load("model.npz")  # doctest: +SKIP
        """
        state = self._fitted_state()
        self._checked_params()  # a file that load() would refuse is never written
        user_kind, user_arrays = _labels_to_arrays("user_labels", state.user_labels)
        item_kind, item_arrays = _labels_to_arrays("item_labels", state.item_labels)
        meta = {
            "format_version": FORMAT_VERSION,
            "rusket_version": _core.__version__,
            "model": self._model_name,
            "params": {k: _json_value(v) for k, v in self.get_params().items()},
            "user_labels": user_kind,
            "item_labels": item_kind,
        }
        seen_indptr, seen_indices = state.seen_rows()
        arrays = {
            "user_factors": state.user_factors,
            "item_factors": state.item_factors,
            **user_arrays,
            **item_arrays,
            "seen_indptr": seen_indptr,
            "seen_indices": seen_indices,
            "seen_data": np.asarray(state.seen.data, dtype=np.float32),
            "metadata": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8),
        }
        _write_atomically(Path(path), arrays)

    @classmethod
    def load(cls: type[_M], path: str | os.PathLike[str]) -> _M:
        """Read a model written by :meth:`save` (format version 1 or 2).

        The file is checked like any input before it is used: a file that is not a rusket
        model, a model of another kind, missing or unknown parts, bad parameters, shapes that
        disagree, non-finite numbers, duplicated labels and an inconsistent seen matrix all
        raise ``ValueError`` naming the problem. A missing file raises
        ``FileNotFoundError``.

        Examples
        --------
        >>> model = rusket.ALS.load("model.npz")  # doctest: +SKIP
        """
        where = str(path)
        arrays = _read_npz(path, where)
        meta = _read_metadata(arrays, where)
        version = meta["format_version"]
        name = meta["model"]
        if name != cls._model_name:
            hint = f"; load it with rusket.{name}.load" if name in _model_names() else ""
            raise ValueError(f"{where} holds a {name!r} model, not {cls._model_name}{hint}")
        model, params = cls._from_file_params(meta["params"], where)
        if version == 1:
            user_labels = _labels_v1(arrays, "user_labels", where)
            item_labels = _labels_v1(arrays, "item_labels", where)
            label_arrays = {"user_labels", "item_labels"}
        else:
            user_labels, user_names = _labels_v2(arrays, "user_labels", meta["user_labels"], where)
            item_labels, item_names = _labels_v2(arrays, "item_labels", meta["item_labels"], where)
            label_arrays = user_names | item_names
        expected = {"metadata", "user_factors", "item_factors", *_SEEN_ARRAYS} | label_arrays
        unknown = sorted(set(arrays) - expected)
        if unknown:
            raise ValueError(f"{where} holds unknown array(s) {unknown}: not a file save() wrote")
        state = _state_from_arrays(arrays, user_labels, item_labels, where)
        cls._check_loaded(state, params, where)
        model._state = state
        return model

    @classmethod
    def _from_file_params(cls: type[_M], params: Any, where: str) -> tuple[_M, dict[str, Any]]:
        if not isinstance(params, dict):
            raise ValueError(
                f"{where}: metadata 'params' must be a JSON object, got {type(params).__name__}"
            )
        names = cls._param_names()
        # Parameters added after a file was written take the value that reproduces the old
        # behaviour (never the new default).
        params = {**cls._legacy_param_values, **params}
        missing = [name for name in names if name not in params]
        if missing:
            raise ValueError(f"{where}: metadata 'params' lacks parameter(s) {missing}")
        unknown = sorted(set(params) - set(names))
        if unknown:
            raise ValueError(
                f"{where}: metadata 'params' has unknown parameter(s) {unknown} for "
                f"{cls._model_name} (valid: {names})"
            )
        model = cls(**params)
        try:
            checked = model._checked_params()
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: bad parameter in the model file: {e}") from None
        return model, checked

    @classmethod
    def _check_loaded(cls, state: _Fitted, params: dict[str, Any], where: str) -> None:
        """Model-specific checks of a state read from a file (``ValueError`` naming it)."""


class FactorModel(Recommender):
    """A :class:`Recommender` with latent factors: vectors, similar items, exports, PCA."""

    _model_name = "FactorModel"

    @property
    def user_factors(self) -> np.ndarray:
        """User latent vectors, float32 ``(n_users, factors)``, rows in ``user_labels`` order
        (read-only)."""
        return self._fitted_state().user_factors

    @property
    def item_factors(self) -> np.ndarray:
        """Item latent vectors, float32 ``(n_items, factors)``, rows in ``item_labels`` order
        (read-only)."""
        return self._fitted_state().item_factors

    user_embeddings = user_factors
    item_embeddings = item_factors

    def similar_items(self, item: Any, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` items closest to ``item`` by cosine similarity (itself excluded), as
        ``(item_labels, similarities)``.

        Examples
        --------
        >>> import scipy.sparse as sp, rusket
        >>> X = sp.csr_matrix([[1.0, 1.0, 0.0], [0.0, 1.0, 1.0]])
        >>> als = rusket.ALS(factors=2, iterations=3).fit(X, item_labels=["a", "b", "c"])
        >>> "a" in als.similar_items("a", n=2)[0].tolist()
        False
        """
        return self._similar("items", item, n)

    def similar_users(self, user: Any, n: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The ``n`` users closest to ``user`` by cosine similarity of their latent vectors
        (the user itself excluded), as ``(user_labels, similarities)``, most similar first;
        equal similarities in ``user_labels`` order. A user with an all-zero vector is
        similar to nobody: every similarity is 0.

        Raises ``KeyError`` for a user not in the training data (a list, array, tuple or
        Series raises ``TypeError``: call it once per user).

        Examples
        --------
        >>> import scipy.sparse as sp, rusket
        >>> X = sp.csr_matrix([[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        >>> als = rusket.ALS(factors=2, iterations=5).fit(X, user_labels=["x", "y", "z"])
        >>> als.similar_users("x", n=1)[0].tolist()
        ['y']
        """
        return self._similar("users", user, n)

    def _similar(self, side: str, key: Any, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Cosine neighbours of one user or item (``side`` "users" / "items"), itself excluded."""
        state = self._fitted_state()
        n = check_int("n", n, minimum=1)
        index, labels, unit = (
            (state.item_index(), state.item_labels, state.unit_items())
            if side == "items"
            else (state.user_index(), state.user_labels, state.unit_users())
        )
        what = side[:-1]
        rows = _one_label(index, key, f"similar_{side}", f"one call per {what}")
        itself = (np.array([0, 1], dtype=np.int64), rows.astype(np.int32))
        prepared = state.topk_index(f"unit_{side}")
        idx, scores = self._topk(unit[rows], unit, n, itself, index=prepared)
        keep = idx[0] >= 0
        return labels[idx[0][keep]], scores[0][keep]

    # --- exports -----------------------------------------------------------------------------

    def export_user_factors(self, normalize: bool = False, format: str = "pandas") -> Any:
        """User vectors as a frame with columns ``user_id`` and ``vector`` (Arrow
        ``fixed_size_list<float32>``, a list column in pandas, ``array<float>`` in Spark);
        ``"numpy"`` gives ``{"user_id": labels, "vector": 2-d array}``. ``normalize=True`` scales
        rows to unit L2 norm (zero rows stay zero) for cosine search in a vector store.

        Examples
        --------
        >>> import scipy.sparse as sp, rusket
        >>> als = rusket.ALS(factors=2, iterations=2).fit(sp.csr_matrix([[1.0, 0.0], [0.0, 2.0]]))
        >>> als.export_user_factors(normalize=True, format="numpy")["vector"].shape
        (2, 2)
        """
        state = self._fitted_state()
        return _export("user_id", state.user_labels, state.user_factors, normalize, format)

    def export_item_factors(self, normalize: bool = False, format: str = "pandas") -> Any:
        """Item vectors as a frame with columns ``item_id`` and ``vector``; see
        :meth:`export_user_factors`.

        Examples
        --------
        >>> df = als.export_item_factors(normalize=True, format="pandas")  # doctest: +SKIP
        """
        state = self._fitted_state()
        return _export("item_id", state.item_labels, state.item_factors, normalize, format)

    def export_factors(self, normalize: bool = False, format: str = "pandas") -> Any:
        """Alias of :meth:`export_item_factors`.

        Examples
        --------
        >>> df = als.export_factors(format="polars")  # doctest: +SKIP
        """
        return self.export_item_factors(normalize=normalize, format=format)

    # --- latent space ------------------------------------------------------------------------

    def pca(
        self,
        n_components: int = 3,
        normalize: bool = True,
        which: str = "items",
        max_points: int = 50_000,
        random_state: int | None = 0,
    ) -> Projection:
        """Project the item (or user) factors with :class:`rusket.PCA` for a look at the latent
        space; ``.plot(title=...)`` on the result gives an interactive plotly figure (3D for 3
        components, 2D for 2).

        Parameters
        ----------
        n_components : int, default 3
        normalize : bool, default True
            L2-normalise the vectors first (the geometry of cosine similarity).
        which : {"items", "users"}, default "items"
        max_points : int, default 50_000
            The figure draws a seeded sample of at most this many points.
        random_state : int or None, default 0

        Examples
        --------
        >>> fig = als.pca(n_components=3).plot(title="Latent Item Space")  # doctest: +SKIP
        >>> fig.show()  # doctest: +SKIP
        """
        from rusket.pca import project  # imports scikit-learn when installed: only on use

        state = self._fitted_state()
        which = check_choice("which", which, ("items", "users"))
        vectors, labels = (
            (state.item_factors, state.item_labels)
            if which == "items"
            else (state.user_factors, state.user_labels)
        )
        return project(
            vectors,
            labels,
            n_components=n_components,
            normalize=normalize,
            which=which,
            max_points=max_points,
            random_state=random_state,
        )

    @classmethod
    def _check_loaded(cls, state: _Fitted, params: dict[str, Any], where: str) -> None:
        f = params.get("factors")
        if f is not None and state.user_factors.shape[1] != f:
            raise ValueError(
                f"{where}: the factors have {state.user_factors.shape[1]} columns but the "
                f"parameter factors is {f}"
            )


def _model_names() -> set[str]:
    """The names of every model class (those a file can hold)."""
    names, todo = set(), list(Recommender.__subclasses__())
    while todo:
        cls = todo.pop()
        names.add(cls._model_name)
        todo.extend(cls.__subclasses__())
    return names


# --- helpers: training input -----------------------------------------------------------------


def interactions_from_matrix(
    X: Any, user_labels: Any, item_labels: Any, model_name: str
) -> Interactions:
    """Check a scipy sparse users x items matrix of ratings and name its rows and columns
    (default ``0..n-1``). The caller's order is kept: row ``i`` of the result is row ``i`` of
    ``X`` and belongs to ``user_labels[i]`` (the same for columns), so row ``i`` of a model's
    ``user_factors`` is the user of row ``i`` of ``X``. Labels need not be sorted, only unique.

    Examples
    --------
    >>> import scipy.sparse as sp
    >>> X = sp.csr_matrix([[1.0, 0.0], [0.0, 2.0]])
    >>> inter = interactions_from_matrix(X, ["b", "a"], None, "ALS")
    >>> inter.user_labels.tolist(), inter.matrix.toarray().tolist()
    (['b', 'a'], [[1.0, 0.0], [0.0, 2.0]])
    """
    if not sp.issparse(X):
        raise TypeError(
            f"X must be a scipy sparse matrix (users x items), got {type(X).__name__}; "
            "use from_transactions for data frames"
        )
    m = sp.csr_matrix(X, dtype=np.float64, copy=True)  # never sort or freeze the caller's X
    if m.shape[0] == 0 or m.shape[1] == 0:
        raise ValueError(
            f"X has shape {m.shape}: {model_name} needs at least one user and one item"
        )
    m.sum_duplicates()
    check_values(m.data, "X")
    ul = _labels_arg(user_labels, m.shape[0], "user_labels")
    il = _labels_arg(item_labels, m.shape[1], "item_labels")
    m.eliminate_zeros()
    m.sort_indices()
    return Interactions(m, ul, il)


def _labels_arg(labels: Any, n: int, name: str) -> np.ndarray:
    if labels is None:
        return np.arange(n, dtype=np.int64)
    arr = np.asarray(labels)
    if arr.ndim != 1 or len(arr) != n:
        raise ValueError(f"{name} must be 1-d with {n} entries, got shape {arr.shape}")
    arr = check_label_array(arr, name)
    if arr.dtype.kind in "iu":
        arr = arr.astype(np.int64)
    elif arr.dtype.kind in "UO" and all(isinstance(v, str) for v in arr.tolist()):
        # Read the strings from the caller's sequence: numpy's unicode dtype drops trailing
        # NUL characters ("a\0" -> "a").
        values = labels.tolist() if isinstance(labels, np.ndarray) else list(labels)
        arr = np.empty(n, dtype=object)
        arr[:] = values
    else:
        raise TypeError(f"{name} must hold integers or strings, got dtype {arr.dtype}")
    if len(np.unique(arr)) != n:
        raise ValueError(f"{name} must be unique")
    return arr


def _is_sorted(labels: np.ndarray) -> bool:
    return len(labels) < 2 or bool(np.all(labels[1:] > labels[:-1]))


def _check_bool(name: str, value: Any) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")


def _one_label(index: _LabelIndex, key: Any, method: str, many: str) -> np.ndarray:
    """The row (a 1-element array) of one label; ``TypeError`` for anything holding several
    (list, tuple, array, Series, set, ...), never silently its first element."""
    # The common case of a serving call, a plain int (or str) for int (or str) labels: one
    # binary search, without the general checks (a miss falls through to them for the error).
    kind = type(key)
    if (
        (kind is np.int64 and index.labels.dtype == np.int64)
        or (kind is int and index.labels.dtype == np.int64 and _INT64_MIN <= key <= _INT64_MAX)
        or (kind is str and index.labels.dtype == object)
    ):
        labels = index.sorted_labels
        pos = int(labels.searchsorted(key))
        if pos < len(labels) and labels[pos] == key:
            row = pos if index.order is None else int(index.order[pos])
            return np.array([row], dtype=np.int64)
    if isinstance(key, np.ndarray) and key.ndim == 0:
        key = key.item()
    if np.ndim(key) != 0 or (isinstance(key, Iterable) and not isinstance(key, (str, bytes))):
        size = f" of {len(key)}" if isinstance(key, Sized) else ""
        raise TypeError(
            f"{method} takes one {index.what} label, got {type(key).__name__}{size}; for many "
            f"use {many}"
        )
    return index.rows(key)


def _item_filter(
    state: _Fitted, candidates: Any = None, exclude_items: Any = None
) -> np.ndarray | None:
    """The business filters of a call as the top-k kernel's ``allowed`` mask: a bool array,
    one entry per item of ``state`` (``item_labels`` order), True where the item may be
    recommended; ``None`` when neither filter is given (no mask, no cost).

    ``candidates``: only these item labels may be recommended (``None``: every item; an empty
    sequence: none); ``exclude_items``: never these. Each is one label or a 1-d sequence of
    labels (list, tuple, set, array, Series; repeats allowed). Unknown labels raise
    ``KeyError`` naming them (and the argument). Pass the mask as ``_topk(..., allowed=mask)``.

    Examples
    --------
    >>> state = model._fitted_state()  # doctest: +SKIP
    >>> allowed = _item_filter(state, candidates=in_stock, exclude_items=["x"])  # doctest: +SKIP
    """
    if candidates is None and exclude_items is None:
        return None
    n_items = len(state.item_labels)
    if candidates is None:
        allowed = np.ones(n_items, dtype=bool)
    else:
        allowed = np.zeros(n_items, dtype=bool)
        allowed[_filter_cols(state, candidates, "candidates")] = True
    if exclude_items is not None:
        allowed[_filter_cols(state, exclude_items, "exclude_items")] = False
    return allowed


def _filter_cols(state: _Fitted, labels: Any, name: str) -> np.ndarray:
    """Item columns of the labels of one filter argument; ``KeyError`` naming unknown ones."""
    if isinstance(labels, (set, frozenset)):
        labels = list(labels)
    if isinstance(labels, (list, tuple)) and len(labels) == 0:
        return np.zeros(0, dtype=np.int64)
    try:
        keys, cols = state.item_index().find(labels)
    except KeyError as e:
        raise KeyError(f"{name}: {e.args[0] if e.args else e}") from None
    except (TypeError, ValueError) as e:
        raise type(e)(f"{name}: {e}") from None
    unknown = cols < 0
    if unknown.any():
        bad = keys[unknown].tolist()
        shown = ", ".join(repr(b) for b in bad[:10])
        more = f" and {len(bad) - 10} more" if len(bad) > 10 else ""
        raise KeyError(
            f"{name} holds {len(bad)} item label(s) the model does not know: {shown}{more} "
            "(not in the training data; leave them out of the filter)"
        )
    return cols


#: ``batch_recommend(unknown=...)``.
_UNKNOWN_USERS = ("raise", "drop", "popular")

#: Pairs per block of ``score``: bounds the gathered copies of the factors.
_SCORE_BLOCK = 65_536


def _with_popular(
    state: _Fitted,
    idx: np.ndarray,
    scores: np.ndarray,
    known: np.ndarray,
    n: int,
    allowed: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k arrays with a row per user: those of ``idx`` / ``scores`` (one per known user, in
    order) where ``known``, the most popular (``allowed``) items with their buyer counts
    elsewhere."""
    order, counts = state.popular_items()
    if allowed is not None:
        keep = allowed[order]
        order, counts = order[keep], counts[keep]
    width = idx.shape[1]  # the kernel's row width (n, or fewer when there are fewer items)
    k = min(n, width, len(order))
    all_idx = np.full((len(known), width), -1, dtype=np.int64)
    all_scores = np.full((len(known), width), np.nan, dtype=np.float32)
    all_idx[known], all_scores[known] = idx, scores
    all_idx[~known, :k] = order[:k]
    all_scores[~known, :k] = counts[:k].astype(np.float32)
    return all_idx, all_scores


def _recommendation_output(
    idx: np.ndarray,
    scores: np.ndarray,
    user_labels: np.ndarray,
    item_labels: np.ndarray,
    n: int,
    format: str,
) -> Any:
    """Top-k index arrays (-1 / NaN padding) as ``batch_recommend``'s output ``format``.

    The kernel's output is ``min(n, n_items)`` wide, so memory never grows with ``n``: the
    numpy format has that width (padding marks users with fewer candidates), frames carry only
    the real rows.
    """
    del n  # the width comes from the kernel
    valid = idx >= 0
    if format == "numpy":
        if item_labels.dtype == object:
            labels = np.full(idx.shape, None, dtype=object)
        else:
            labels = np.full(idx.shape, -1, dtype=item_labels.dtype)
        labels[valid] = item_labels[idx[valid]]
        return labels, scores
    per_user = valid.sum(axis=1)
    table = pa.table(
        {
            "user_id": _label_array(np.repeat(user_labels, per_user)),
            "item_id": _label_array(item_labels[idx[valid]]),
            "score": pa.array(scores[valid], pa.float32()),
            "rank": pa.array(
                np.broadcast_to(np.arange(1, idx.shape[1] + 1, dtype=np.int32), idx.shape)[valid]
            ),
        }
    )
    return convert(table, format)


# --- helpers: outputs ------------------------------------------------------------------------


def _l2_normalize(v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.divide(v, norms, out=np.zeros_like(v), where=norms > 0).astype(np.float32)


def _label_array(labels: np.ndarray) -> pa.Array:
    if labels.dtype == object:
        return pa.array(labels, pa.large_string())
    return pa.array(labels, pa.int64())


def _export(
    id_col: str, labels: np.ndarray, vectors: np.ndarray, normalize: bool, format: str
) -> Any:
    check_format(format)
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be True or False, got {normalize!r}")
    v = _l2_normalize(vectors) if normalize else vectors
    table = pa.table({id_col: _label_array(labels), "vector": vectors_to_arrow(v)})
    return convert(table, format)


# --- helpers: writing model files ------------------------------------------------------------


def _json_value(value: Any) -> Any:
    """numpy scalars as plain JSON numbers (parameters may be set from numpy values)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    return value


def _labels_to_arrays(name: str, labels: np.ndarray) -> tuple[str, dict[str, np.ndarray]]:
    if labels.dtype != object:
        return "int", {name: np.asarray(labels, dtype=np.int64)}
    encoded = [s.encode("utf-8", "surrogatepass") for s in labels.tolist()]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(b) for b in encoded], out=offsets[1:])
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    return "str", {f"{name}_utf8": data, f"{name}_offsets": offsets}


def _write_atomically(path: Path, arrays: dict[str, Any]) -> None:
    """``np.savez`` to a temporary file beside ``path``, then rename it over ``path``; errors
    name ``path``, never the temporary file."""
    if not path.parent.is_dir():
        raise FileNotFoundError(
            errno.ENOENT,
            f"cannot save the model: the directory {str(path.parent)!r} does not exist",
            str(path),
        )
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise type(e)(e.errno, f"cannot save the model: {e.strerror}", str(path)) from None
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise type(e)(e.errno, f"cannot save the model: {e.strerror}", str(path)) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- helpers: reading and checking model files -----------------------------------------------

_SEEN_ARRAYS = ("seen_indptr", "seen_indices", "seen_data")
_METADATA_KEYS = {
    1: {"format_version", "rusket_version", "model", "params"},
    2: {"format_version", "rusket_version", "model", "params", "user_labels", "item_labels"},
}
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def _read_npz(path: str | os.PathLike[str], where: str) -> dict[str, np.ndarray]:
    """Every array of the file, read without pickle; anything unreadable is a ``ValueError``."""
    with open(path, "rb") as fh:  # a missing file raises FileNotFoundError naming it
        head = fh.read(6)
        if head.startswith(b"\x93NUMPY"):
            raise ValueError(
                f"{where} is not a rusket model file: it holds one plain .npy array "
                "(model files are .npz archives written by save())"
            )
        if head[:4] not in _ZIP_MAGIC:
            raise ValueError(f"{where} is not a rusket model file (not a .npz archive)")
        fh.seek(0)
        try:
            with np.load(fh, allow_pickle=False) as z:
                arrays = {name: z[name] for name in z.files}
        except Exception as e:  # whatever breaks while decoding a damaged or hostile archive
            raise ValueError(
                f"{where} is not a rusket model file, or it is damaged: {type(e).__name__}: {e}"
            ) from None
    for name, value in arrays.items():
        if not isinstance(value, np.ndarray):
            raise ValueError(f"{where} is not a rusket model file: {name!r} is not a .npy array")
    return arrays


def _read_metadata(arrays: Mapping[str, np.ndarray], where: str) -> dict[str, Any]:
    raw = arrays.get("metadata")
    if raw is None:
        raise ValueError(f"{where} is not a rusket model file (no metadata)")
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise ValueError(
            f"{where}: metadata must be a 1-d uint8 array of UTF-8 JSON, got dtype {raw.dtype} "
            f"and shape {raw.shape}"
        )
    try:
        meta = json.loads(raw.tobytes().decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ValueError(f"{where}: metadata is not UTF-8 JSON ({e})") from None
    if not isinstance(meta, dict):
        raise ValueError(f"{where}: metadata must be a JSON object, got {type(meta).__name__}")
    version = meta.get("format_version")
    if (
        isinstance(version, bool)
        or not isinstance(version, int)
        or version not in _READABLE_VERSIONS
    ):
        raise ValueError(
            f"{where} has format version {version!r}; this rusket reads versions "
            f"{', '.join(map(str, _READABLE_VERSIONS))}"
        )
    keys = _METADATA_KEYS[version]
    missing = sorted(keys - set(meta))
    if missing:
        raise ValueError(f"{where}: metadata lacks {missing}")
    unknown = sorted(set(meta) - keys)
    if unknown:
        raise ValueError(f"{where}: metadata has unknown key(s) {unknown}")
    if not isinstance(meta["model"], str):
        raise ValueError(f"{where}: metadata 'model' must be a string, got {meta['model']!r}")
    if version == 1 and meta["model"] != "ALS":
        raise ValueError(f"{where}: version 1 files hold ALS models, not {meta['model']!r}")
    if not isinstance(meta["rusket_version"], str):
        raise ValueError(f"{where}: metadata 'rusket_version' must be a string")
    return meta


def _array(
    arrays: Mapping[str, np.ndarray], name: str, dtype: Any, ndim: int, where: str
) -> np.ndarray:
    """The array ``name``, which must exist with exactly this dtype (native byte order) and
    number of dimensions."""
    try:
        a = arrays[name]
    except KeyError:
        raise ValueError(f"{where} lacks the array {name!r}: not a complete model file") from None
    if a.dtype != np.dtype(dtype) or a.ndim != ndim:
        raise ValueError(
            f"{where}: array {name!r} must be {ndim}-d {np.dtype(dtype).name}, got "
            f"{a.ndim}-d {a.dtype}"
        )
    return a


def _labels_v1(arrays: Mapping[str, np.ndarray], name: str, where: str) -> np.ndarray:
    try:
        a = arrays[name]
    except KeyError:
        raise ValueError(f"{where} lacks the array {name!r}: not a complete model file") from None
    if a.ndim != 1 or not (a.dtype == np.dtype(np.int64) or a.dtype.kind == "U"):
        raise ValueError(f"{where}: {name} must be 1-d int64 or unicode, got {a.dtype} {a.shape}")
    labels = a.astype(object) if a.dtype.kind == "U" else a
    _check_labels(labels, name, where)
    return labels


def _labels_v2(
    arrays: Mapping[str, np.ndarray], name: str, kind: Any, where: str
) -> tuple[np.ndarray, set[str]]:
    if kind == "int":
        labels = _array(arrays, name, np.int64, 1, where)
        _check_labels(labels, name, where)
        return labels, {name}
    if kind != "str":
        raise ValueError(f"{where}: metadata {name!r} must be 'int' or 'str', got {kind!r}")
    data = _array(arrays, f"{name}_utf8", np.uint8, 1, where)
    offsets = _array(arrays, f"{name}_offsets", np.int64, 1, where)
    if (
        len(offsets) == 0
        or offsets[0] != 0
        or offsets[-1] != len(data)
        or np.any(np.diff(offsets) < 0)
    ):
        raise ValueError(
            f"{where}: {name}_offsets must start at 0, never decrease and end at the "
            f"{len(data)} bytes of {name}_utf8"
        )
    raw = data.tobytes()
    try:
        strings = [
            raw[a:b].decode("utf-8", "surrogatepass")
            for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist())
        ]
    except UnicodeDecodeError as e:
        raise ValueError(f"{where}: {name} holds bytes that are not UTF-8 ({e})") from None
    labels = np.empty(len(strings), dtype=object)
    labels[:] = strings
    _check_labels(labels, name, where)
    return labels, {f"{name}_utf8", f"{name}_offsets"}


def _check_labels(labels: np.ndarray, name: str, where: str) -> None:
    if len(labels) == 0:
        raise ValueError(f"{where}: {name} is empty; a fitted model has at least one")
    # Sorted (from_transactions) or in the order fit(X, labels) was given: either way unique.
    if not _is_sorted(labels) and len(np.unique(labels)) != len(labels):
        raise ValueError(f"{where}: {name} must be unique (a fitted model's labels are)")


def _max_row_norm(a: np.ndarray) -> float:
    if a.size == 0:
        return 0.0
    return float(np.sqrt(np.max(np.einsum("ij,ij->i", a, a, dtype=np.float64))))


def _state_from_arrays(
    arrays: Mapping[str, np.ndarray],
    user_labels: np.ndarray,
    item_labels: np.ndarray,
    where: str,
) -> _Fitted:
    n_users, n_items = len(user_labels), len(item_labels)
    users = _array(arrays, "user_factors", np.float32, 2, where)
    items = _array(arrays, "item_factors", np.float32, 2, where)
    if users.shape[0] != n_users or items.shape[0] != n_items:
        raise ValueError(
            f"{where}: factors of shapes {users.shape} (users) and {items.shape} (items) do not "
            f"match the {n_users} user and {n_items} item labels"
        )
    if users.shape[1] != items.shape[1] or users.shape[1] == 0:
        raise ValueError(
            f"{where}: user and item factors need the same number (>= 1) of columns, got "
            f"{users.shape[1]} and {items.shape[1]}"
        )
    for name, a in (("user_factors", users), ("item_factors", items)):
        bad = int(np.count_nonzero(~np.isfinite(a)))
        if bad:
            raise ValueError(f"{where}: {name} holds {bad} NaN or infinite value(s)")
    # The top-k kernel refuses factors whose dot products could overflow float32 (the product
    # of the largest row norms above float32 max / 4); a fitted model never has such factors.
    bound = _max_row_norm(users) * _max_row_norm(items)
    if bound > float(np.finfo(np.float32).max) / 4:
        raise ValueError(
            f"{where}: the factors are too large to score (a dot product could reach "
            f"{bound:.3e} and overflow float32)"
        )
    indptr = _array(arrays, "seen_indptr", np.int64, 1, where)
    indices = _array(arrays, "seen_indices", np.int32, 1, where)
    data = _array(arrays, "seen_data", np.float32, 1, where)
    nnz = len(indices)
    if len(indptr) != n_users + 1:
        raise ValueError(
            f"{where}: seen_indptr has {len(indptr)} entries; {n_users} users need {n_users + 1}"
        )
    if indptr[0] != 0 or indptr[-1] != nnz or np.any(np.diff(indptr) < 0):
        raise ValueError(
            f"{where}: seen_indptr must start at 0, never decrease and end at the {nnz} "
            f"entries of seen_indices (got {indptr[0]} .. {indptr[-1]})"
        )
    if len(data) != nnz:
        raise ValueError(f"{where}: seen_data has {len(data)} values for {nnz} seen_indices")
    if nnz and (indices.min() < 0 or indices.max() >= n_items):
        raise ValueError(f"{where}: seen_indices must lie in [0, {n_items}) (the item labels)")
    if nnz > 1:
        # Within each row, indices must strictly increase (sorted, no duplicate item); the
        # pairs straddling a row boundary are exempt.
        same_row = np.ones(nnz - 1, dtype=bool)
        starts = indptr[1:-1]
        same_row[starts[(starts > 0) & (starts < nnz)] - 1] = False
        if np.any(np.diff(indices)[same_row] <= 0):
            raise ValueError(f"{where}: seen_indices must be sorted and unique within each user")
    bad = int(np.count_nonzero(~(np.isfinite(data) & (data > 0))))
    if bad:
        raise ValueError(
            f"{where}: seen_data holds {bad} value(s) that are not finite and > 0 (a fitted "
            "model stores positive interactions only)"
        )
    seen = sp.csr_matrix((data, indices, indptr), shape=(n_users, n_items))
    return _Fitted.build(users, items, user_labels, item_labels, seen)
