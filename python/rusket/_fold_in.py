"""An ALS model after training: new customers (fold-in), incremental updates, explanations.

Everything here is the user step of Hu, Koren & Volinsky (2008) held against the fixed item
factors ``Y``: a customer with confidences ``c_j`` on the articles ``j`` of a history gets

    x = A^-1 b,   A = Y^T Y + sum_j (c_j - 1) y_j y_j^T + lambda_L I,   b = sum_j c_j y_j,

the exact minimiser of that customer's part of the training loss (``lambda_L`` is the model's
penalty for a row of ``L`` articles, ``lambda * max(L, 1) ** regularization_exponent`` with
``"auto"`` evaluated over its stored confidences exactly like ``training_loss``). The
eigendecomposition ``Y^T Y = Q D Q^T`` and the rotated item factors ``Y Q`` are computed once per
fitted state (kept in the state's cache, never pickled); a customer with ``L`` articles then
costs ``O(L^2 f + f^2)`` (``L < f``) or ``O(L f^2 + f^3)`` in numpy float64 (:func:`solve_rows`).

:func:`partial_fit` goes the other way round: it merges new order lines into the stored history
and re-solves the touched rows with the Rust half-step (``_core.als_solve_side``) against the
fixed other side, customers first, then articles.

The ``ALS`` methods (``recommend_basket``, ``fold_in``, ``partial_fit``, ``explain``) are thin
wrappers over the functions of this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp

from rusket import _core
from rusket._model import _export, _Fitted, _frozen, _item_filter, _one_label
from rusket._validation import check_choice, check_int, check_no_bools
from rusket.interactions import Interactions, check_values

if TYPE_CHECKING:  # pragma: no cover
    from rusket.als import ALS

#: ``unknown=`` of ``recommend_basket`` / ``fold_in``: what to do with article labels the model
#: does not know.
UNKNOWN_ITEMS = ("raise", "ignore")

#: Non-zeros per stack of the batched solve (bounds its float64 copies of the factors).
_OUTER_BLOCK = 16_384


# --- the exact user step ---------------------------------------------------------------------


def _gram(state: _Fitted) -> np.ndarray:
    """``Y^T Y`` of the state's item factors in float64 (cached in the state)."""

    def build() -> np.ndarray:
        y = state.item_factors.astype(np.float64)
        return _frozen(y.T @ y)

    gram: np.ndarray = state._cached("fold_in_gram", build)
    return gram


@dataclass(frozen=True)
class RowPenalty:
    """The model's penalty of a row with ``n`` pairs: ``lam * max(n, 1) ** exponent``."""

    lam: float
    exponent: float

    def of(self, n: int) -> float:
        from rusket.als import _row_weights

        return self.lam * float(_row_weights(n, self.exponent))


def penalty(model: ALS, state: _Fitted, p: dict[str, Any] | None = None) -> RowPenalty:
    """The model's penalty: ``regularization``, or ``"auto"`` over the stored confidences
    (the value ``training_loss`` uses; ``lam`` equals ``regularization_`` after ``fit``)."""
    from rusket.als import _base_penalty

    p = p if p is not None else model._checked_params()
    reg, nu = p["regularization"], p["regularization_exponent"]
    # "auto" averages every stored confidence: once per state, not per call.
    lam: float = state._cached(
        f"fold_in_penalty_{reg!r}_{nu!r}", lambda: _base_penalty(p, state.seen)
    )
    return RowPenalty(lam, nu)


def _eigenbasis(state: _Fitted) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(V, Q, d)`` for ``Y^T Y = Q diag(d) Q^T``: the rotated item factors ``V = Y Q``
    (float64, a row per item), ``Q`` and the eigenvalues, cached in the state."""

    def build() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        d, q = np.linalg.eigh(_gram(state))
        v = state.item_factors.astype(np.float64) @ q
        return _frozen(v), _frozen(q), _frozen(np.maximum(d, 0.0))

    basis: tuple[np.ndarray, np.ndarray, np.ndarray] = state._cached("fold_in_eigen", build)
    return basis


def _scales(d: np.ndarray, lam: float) -> np.ndarray:
    """``(d + lam)^-1/2``: with ``P = Y^T Y + lam I = Q diag(d + lam) Q^T``, ``R = Q diag(s)^-1``
    whitens ``P`` (``R^T P^-1 R = I``)."""
    t = d + lam
    if not np.all(np.isfinite(t)) or t.min() <= 1e-14 * max(float(t.max()), 1e-300):
        raise ValueError(
            "Y^T Y + regularization is singular (the item factors span fewer dimensions "
            "than factors and regularization is 0); use regularization > 0"
        )
    scales: np.ndarray = 1.0 / np.sqrt(t)
    return scales


def solve_rows(
    state: _Fitted, pen: RowPenalty, indptr: np.ndarray, cols: np.ndarray, conf: np.ndarray
) -> np.ndarray:
    """The exactly solved vector of every row of a CSR of confidences against the state's item
    factors, float32 ``(n_rows, f)``. An empty row gets the zero vector (``b = 0``).

    In whitened coordinates (``P = Y^T Y + lambda I = Q diag(d + lambda) Q^T``, ``s = (d +
    lambda)^-1/2``, ``w_j = s * (Q^T y_j)``) a row's system is ``(I + U^T U) z = b~`` with
    ``U = diag(sqrt(c_j - 1)) W_row`` and ``b~ = sum_j c_j w_j``, and ``x = Q (s * z)``; the
    penalty ``lambda`` of a row depends on its length (``pen``). A row with ``L < f`` articles
    is solved through the ``L x L`` system ``I + U U^T`` (Woodbury), a longer one through the
    ``f x f`` one: ``O(L^2 f)`` instead of ``O(f^3)`` for the short baskets that make up most
    customers (the Rust Cholesky solver does the same). Rows are solved in stacks of equal
    ``L`` (no padding) with batched BLAS/LAPACK calls, one matrix per row, so a customer gets
    the same vector alone (``recommend_basket``) or among many (``fold_in``).
    """
    n_rows = len(indptr) - 1
    rotated, q, d = _eigenbasis(state)
    f = rotated.shape[1]
    out = np.zeros((n_rows, f), dtype=np.float32)
    lengths = np.diff(indptr)
    if n_rows == 1:  # one basket: one stack, no grouping
        order, by_length, bounds = np.zeros(1, np.int64), lengths, [(0, 1)]
    else:
        order = np.argsort(lengths, kind="stable")
        by_length = lengths[order]
        starts = np.flatnonzero(np.r_[True, by_length[1:] != by_length[:-1]])
        bounds = list(zip(starts.tolist(), np.r_[starts[1:], len(order)].tolist()))
    for s0, e0 in bounds:
        width = int(by_length[s0])
        if width == 0:
            continue  # empty histories: x = 0
        scale = _scales(d, pen.of(width))
        step = max(1, _OUTER_BLOCK // width)
        for k in range(s0, e0, step):
            rows = order[k : min(k + step, e0)]
            pos = indptr[rows][:, None] + np.arange(width)
            w = rotated[cols[pos]] * scale  # (B, L, f)
            c = conf[pos].astype(np.float64)  # (B, L)
            b = np.matmul(c[:, None, :], w)  # (B, 1, f)
            u = np.sqrt(c - 1.0)[:, :, None] * w
            ut = u.transpose(0, 2, 1)
            if width < f:
                k_small = np.matmul(u, ut)
                k_small += np.eye(width)
                t = np.matmul(u, b.transpose(0, 2, 1))  # (B, L, 1)
                z = b - np.matmul(np.linalg.solve(k_small, t).transpose(0, 2, 1), u)
            else:
                a = np.matmul(ut, u)
                a += np.eye(f)
                z = np.linalg.solve(a, b.transpose(0, 2, 1)).transpose(0, 2, 1)
            x = np.matmul(z * scale, q.T)[:, 0, :]  # x = Q (s * z)
            if not np.all(np.isfinite(x)):
                raise ValueError(
                    "the fold-in system overflowed (non-finite values): the confidences are "
                    "too large"
                )
            out[rows] = x
    return out


# --- inputs: one basket, a frame of order lines ----------------------------------------------


def _known_columns(
    state: _Fitted, labels: Any, unknown: str, what: str
) -> tuple[np.ndarray, np.ndarray]:
    """``(columns, kept)``: the model's column of each label and the mask of known labels;
    ``KeyError`` naming the unknown ones when ``unknown="raise"``."""
    keys, cols = state.item_index().find(labels)
    known = cols >= 0
    if unknown == "raise" and not known.all():
        bad = keys[~known].tolist()
        shown = ", ".join(map(repr, bad[:5])) + (
            f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        )
        raise KeyError(
            f"{what} holds {len(bad)} article label(s) the model does not know: {shown}. Pass "
            "unknown='ignore' to leave them out (the model has no vector for them), or "
            "partial_fit the new articles first"
        )
    return cols, known


def basket_row(
    model: ALS, state: _Fitted, items: Any, ratings: Any, unknown: str, p: dict[str, Any]
) -> tuple[np.ndarray, np.ndarray]:
    """One customer's basket as ``(columns, confidences)``: sorted unique known columns and the
    confidences of their summed amounts, exactly as training reads order lines."""
    unknown = check_choice("unknown", unknown, UNKNOWN_ITEMS)
    check_no_bools(items, "item")
    if isinstance(items, (str, bytes)) or np.ndim(items) == 0:
        raise TypeError(
            "items must be a sequence of article labels (a list, array or Series), got "
            f"{type(items).__name__} {items!r}; wrap one article as [label]"
        )
    keys = list(items.tolist() if hasattr(items, "tolist") else items)
    if len(keys) == 0:
        raise ValueError(
            "items is empty: a new customer needs at least one article (for a customer without "
            "history use batch_recommend(users=[...], unknown='popular'))"
        )
    if ratings is None:
        values = np.ones(len(keys))
    else:
        if isinstance(ratings, (str, bytes)) or np.ndim(ratings) != 1:
            raise TypeError(f"ratings must be a 1-d sequence of numbers, got {ratings!r}")
        try:
            values = np.asarray(ratings, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"ratings must hold numbers, got {ratings!r}") from None
        if len(values) != len(keys):
            raise ValueError(
                f"ratings has {len(values)} value(s) for {len(keys)} item(s); give one amount "
                "per article (or ratings=None to count each line as 1)"
            )
        check_values(values, "ratings")
    cols, known = _known_columns(state, keys, unknown, "items")
    cols, values = cols[known], values[known]
    if len(cols) == 0:
        raise ValueError(
            "none of the basket's articles is known to the model (unknown='ignore' left none); "
            "there is nothing to fold in"
        )
    uniq, inverse = np.unique(cols, return_inverse=True)
    summed = np.bincount(inverse, weights=values, minlength=len(uniq))
    keep = summed > 0  # like training: pairs summing to 0 are no interaction
    if not keep.any():
        raise ValueError(
            "every amount of the basket is 0: a customer needs at least one article with an "
            "amount > 0 (training leaves such lines out as well)"
        )
    return uniq[keep].astype(np.int32), model._confidence(summed[keep], p)


def frame_rows(
    model: ALS,
    state: _Fitted,
    data: Any,
    transaction_col: Any,
    item_col: Any,
    rating_col: Any,
    unknown: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Order lines of new customers as ``(customer_labels, indptr, columns, confidences)``,
    read like ``from_transactions`` (sorted customers, duplicates summed, zeros left out)."""
    unknown = check_choice("unknown", unknown, UNKNOWN_ITEMS)
    inter = Interactions.from_frame(data, transaction_col, item_col, rating_col)
    item_cols, known = _known_columns(state, inter.item_labels, unknown, f"column {item_col!r}")
    m = inter.matrix.tocoo()
    keep = known[m.col]
    rows, cols, values = m.row[keep], item_cols[m.col[keep]], m.data[keep]
    csr = sp.csr_matrix(
        (values, (rows, cols)), shape=(len(inter.user_labels), len(state.item_labels))
    )
    csr.sort_indices()
    p = model._checked_params()
    return (
        inter.user_labels,
        np.asarray(csr.indptr, dtype=np.int64),
        np.asarray(csr.indices, dtype=np.int32),
        model._confidence(csr.data, p),
    )


# --- the public operations -------------------------------------------------------------------


def recommend_basket(
    model: ALS,
    items: Any,
    ratings: Any,
    n: int,
    exclude_seen: bool,
    candidates: Any,
    exclude_items: Any,
    unknown: str,
) -> tuple[np.ndarray, np.ndarray]:
    state = model._fitted_state()
    n = check_int("n", n, minimum=1)
    if not isinstance(exclude_seen, (bool, np.bool_)):
        raise TypeError(f"exclude_seen must be True or False, got {exclude_seen!r}")
    allowed = _item_filter(state, candidates, exclude_items)
    p = model._checked_params()
    cols, conf = basket_row(model, state, items, ratings, unknown, p)
    indptr = np.array([0, len(cols)], dtype=np.int64)
    x = solve_rows(state, penalty(model, state, p), indptr, cols, conf)
    exclude = (indptr, cols) if exclude_seen else None
    idx, scores = model._topk(x, state.item_factors, n, exclude, allowed)
    keep = idx[0] >= 0
    return state.item_labels[idx[0][keep]], scores[0][keep]


def fold_in(
    model: ALS,
    data: Any,
    transaction_col: Any,
    item_col: Any,
    rating_col: Any,
    format: str,
    unknown: str,
) -> Any:
    state = model._fitted_state()
    labels, indptr, cols, conf = frame_rows(
        model, state, data, transaction_col, item_col, rating_col, unknown
    )
    vectors = solve_rows(state, penalty(model, state), indptr, cols, conf)
    return _export("user_id", labels, vectors, False, format)


def explain(model: ALS, user: Any, item: Any, n: int) -> tuple[float, np.ndarray, np.ndarray]:
    state = model._fitted_state()
    n = check_int("n", n, minimum=1)
    row = int(_one_label(state.user_index(), user, "explain", "one call per user")[0])
    col = int(_one_label(state.item_index(), item, "explain", "one call per item")[0])
    lo, hi = int(state.seen.indptr[row]), int(state.seen.indptr[row + 1])
    idx = np.asarray(state.seen.indices[lo:hi], dtype=np.int64)
    c = np.asarray(state.seen.data[lo:hi], dtype=np.float64)
    if len(idx) == 0:
        return 0.0, state.item_labels[:0], np.zeros(0)
    f = state.item_factors.shape[1]
    ys = state.item_factors[idx].astype(np.float64)
    lam = penalty(model, state).of(len(idx))
    a = _gram(state) + lam * np.eye(f) + (ys * (c - 1.0)[:, None]).T @ ys
    try:
        # w_j = A^-1 y_j for every past article j; its share is c_j * y_i . w_j.
        w = np.linalg.solve(a, ys.T)
    except np.linalg.LinAlgError:
        raise ValueError(
            "the customer's system is singular (regularization is 0); use regularization > 0"
        ) from None
    contributions = c * (state.item_factors[col].astype(np.float64) @ w)
    score = float(np.sum(contributions))
    order = np.argsort(-contributions, kind="stable")[:n]
    return score, state.item_labels[idx[order]], contributions[order]


# --- incremental updates ---------------------------------------------------------------------


def _ratings_of(model: ALS, conf: np.ndarray, p: dict[str, Any]) -> np.ndarray:
    """The summed ratings behind stored confidences (the inverse of ``ALS._confidence``, in
    float64 from the float32 confidences: relative rounding about 1e-6)."""
    c = np.asarray(conf, dtype=np.float64) - 1.0
    if p["alpha"] == 0:
        return np.zeros_like(c)  # every confidence is 1 whatever the rating
    r = c / p["alpha"]
    if p["confidence"] == "log":
        r = p["epsilon"] * np.expm1(r)
    return np.maximum(r, 0.0)


def _merge_labels(
    old: np.ndarray | None, new: np.ndarray, index: Any, what: str, col: Any
) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, rows)``: the model's labels followed by the new ones (in sorted order), and
    the row of every label of ``new``."""
    if old is None:
        return new, np.arange(len(new), dtype=np.int64)
    if (old.dtype == object) != (new.dtype == object):
        kinds = ("strings", "integers") if old.dtype == object else ("integers", "strings")
        raise TypeError(
            f"the model's {what} labels are {kinds[0]} but column {col!r} holds {kinds[1]}; "
            "cast the column to the kind of the training data"
        )
    _, rows = index.find(new)
    fresh = rows < 0
    rows[fresh] = len(old) + np.arange(int(fresh.sum()), dtype=np.int64)
    labels = np.concatenate([old, new[fresh]]) if fresh.any() else old
    if old.dtype == object:
        labels = labels.astype(object)
    return labels, rows


def partial_fit(
    model: ALS,
    data: Any,
    transaction_col: Any,
    item_col: Any,
    rating_col: Any,
    sweeps: int | None,
) -> ALS:
    from rusket.als import _base_penalty, _csr_arrays, _initial_factors, _row_scales, _solve_kwargs

    p = model._checked_params()
    state: _Fitted | None = model.__dict__.get("_state")
    if sweeps is None:
        sweeps = p["iterations"] if state is None else 1
    sweeps = check_int("sweeps", sweeps, minimum=1)
    f = p["factors"]
    if state is not None and state.user_factors.shape[1] != f:
        raise ValueError(
            f"the model was fitted with {state.user_factors.shape[1]} factors but the parameter "
            f"factors is now {f}; set it back, or refit from scratch with from_transactions"
        )
    new = Interactions.from_frame(data, transaction_col, item_col, rating_col)
    user_labels, urows = _merge_labels(
        None if state is None else state.user_labels,
        new.user_labels,
        None if state is None else state.user_index(),
        "customer",
        transaction_col,
    )
    item_labels, icols = _merge_labels(
        None if state is None else state.item_labels,
        new.item_labels,
        None if state is None else state.item_index(),
        "article",
        item_col,
    )
    n_users, n_items = len(user_labels), len(item_labels)
    if n_users * n_items >= 2**62:
        raise ValueError(f"{n_users} customers x {n_items} articles is too large to merge")

    # The merged history as sorted keys row * n_items + col. Pairs the new lines do not touch
    # keep their stored confidences bit for bit; touched pairs get the confidence of the summed
    # rating (stored rating, recovered from its confidence, plus the new amounts).
    m = new.matrix.tocoo()
    new_keys = urows[m.row] * n_items + icols[m.col]
    order = np.argsort(new_keys, kind="stable")
    new_keys, new_values = new_keys[order], m.data[order]
    if state is None:
        old_keys, old_conf = np.zeros(0, np.int64), np.zeros(0, np.float32)
    else:
        seen = state.seen
        old_rows = np.repeat(np.arange(seen.shape[0], dtype=np.int64), np.diff(seen.indptr))
        old_keys = old_rows * n_items + seen.indices.astype(np.int64)
        old_conf = np.asarray(seen.data, dtype=np.float32)
    # Both key arrays are sorted and unique: insert the fresh pairs into the stored ones (one
    # O(nnz) pass, no re-sort of the whole history).
    at = np.minimum(np.searchsorted(old_keys, new_keys), max(len(old_keys) - 1, 0))
    fresh = new_keys[~(old_keys[at] == new_keys)] if len(old_keys) else new_keys
    slots = np.searchsorted(old_keys, fresh)
    keys = np.insert(old_keys, slots, fresh)
    old_pos = np.flatnonzero(np.insert(np.ones(len(old_keys), dtype=bool), slots, False))
    new_pos = np.searchsorted(keys, new_keys)
    conf = np.empty(len(keys), dtype=np.float32)
    conf[old_pos] = old_conf
    summed = np.zeros(len(keys))
    summed[old_pos] = _ratings_of(model, old_conf, p)
    summed[new_pos] += new_values
    conf[new_pos] = model._confidence(summed[new_pos], p)
    rows = keys // n_items
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_users), out=indptr[1:])
    conf_u = sp.csr_matrix(
        (conf, (keys % n_items).astype(np.int32), indptr), shape=(n_users, n_items)
    )
    conf_i = conf_u.T.tocsr()
    conf_i.sort_indices()

    # Factors: the stored rows, then fit's start for the new rows (new customers at zero, as
    # they are solved first; new articles small and random, drawn like fit's), so a first
    # partial_fit on an unfitted model is exactly fit.
    rng = np.random.default_rng(model.seed)
    n_old_u = 0 if state is None else len(state.user_labels)
    n_old_i = 0 if state is None else len(state.item_labels)
    users = np.zeros((n_users, f), dtype=np.float32)
    items = np.empty((n_items, f), dtype=np.float32)
    items[n_old_i:] = _initial_factors(rng, n_items - n_old_i, f)
    if state is not None:
        users[:n_old_u] = state.user_factors
        items[:n_old_i] = state.item_factors

    lam = _base_penalty(p, conf_u)
    kw = _solve_kwargs(p, lam)
    touched_u = np.unique(urows)
    touched_i = np.unique(icols)
    sub_u = _csr_arrays(conf_u[touched_u])
    sub_i = _csr_arrays(conf_i[touched_i])
    # The touched rows' penalties, from their lengths in the merged history.
    scale_u, scale_i = _row_scales(conf_u, p)
    if scale_u is not None and scale_i is not None:
        scale_u, scale_i = scale_u[touched_u], scale_i[touched_i]
    # When every row is touched (a first partial_fit) the half-steps may rotate the model like
    # fit's (so that it equals fit); otherwise untouched rows would be left in the old frame.
    rotate = len(touched_u) == n_users and len(touched_i) == n_items
    for _ in range(sweeps):
        target = np.ascontiguousarray(users[touched_u])
        _core.als_solve_side(*sub_u, items, target, **kw, row_scale=scale_u, rotate_fixed=rotate)
        users[touched_u] = target
        target = np.ascontiguousarray(items[touched_i])
        _core.als_solve_side(*sub_i, users, target, **kw, row_scale=scale_i, rotate_fixed=rotate)
        items[touched_i] = target

    model.regularization_ = lam
    model.loss_history_ = []
    model._state = _Fitted.build(users, items, user_labels, item_labels, conf_u)
    return model
