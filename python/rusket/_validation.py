"""Checks shared by the estimators: parameters, fitted state, labels and label lookups."""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

#: The most threads a ``num_threads`` parameter may ask for (the Rust kernels refuse more with
#: the same bound, ``src/kernels/pool.rs``). A constant rather than a multiple of this
#: machine's cores, so that a parameter valid on one machine (in a saved model) is valid on
#: any; threads beyond the cores never make the kernels faster.
MAX_THREADS = 1024

_INT64_MIN, _INT64_MAX = int(np.iinfo(np.int64).min), int(np.iinfo(np.int64).max)


class NotFittedError(ValueError, AttributeError):
    """Raised when a model is used before it was fitted (same bases as scikit-learn's)."""


def check_int(name: str, value: Any, *, minimum: int) -> int:
    """An ``int`` >= ``minimum`` (bools rejected), else ``TypeError``/``ValueError`` naming it."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def check_float(name: str, value: Any, *, minimum: float = 0.0) -> float:
    """A finite real number >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    v = float(value)
    if not np.isfinite(v) or v < minimum:
        raise ValueError(f"{name} must be a finite number >= {minimum}, got {value!r}")
    return v


def check_threads(value: Any, name: str = "num_threads") -> int:
    """A thread count: an ``int`` from 0 (all cores) to :data:`MAX_THREADS`.

    >>> check_threads(4)
    4
    >>> check_threads(10**6)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: num_threads must be at most 1024 (0 = all cores), got 1000000; ...
    """
    n = check_int(name, value, minimum=0)
    if n > MAX_THREADS:
        raise ValueError(
            f"{name} must be at most {MAX_THREADS} (0 = all cores), got {n}; more threads than "
            "cores only slow the kernels down (use 0)"
        )
    return n


def check_label_array(arr: np.ndarray, name: str) -> np.ndarray:
    """Integer labels as int64, checked to fit: ``ValueError`` naming ``name`` for values beyond
    int64 (uint64 labels >= 2**63 would silently wrap to negative numbers), ``TypeError`` for
    booleans (never labels). Arrays of another kind (strings, objects) come back unchanged.

    >>> check_label_array(np.array([1, 2], np.uint64), "user_labels").dtype
    dtype('int64')
    >>> check_label_array(np.array([2**63], np.uint64), "user_labels")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: user_labels must fit int64 (labels from -2**63 to 2**63 - 1); got 92233...
    """
    arr = np.asarray(arr)
    kind = arr.dtype.kind
    if kind == "b":
        raise TypeError(f"{name} must hold integers or strings, not booleans (dtype {arr.dtype})")
    if kind == "i":
        return arr.astype(np.int64, copy=False)
    if kind == "u":
        big = arr > _INT64_MAX
        if big.any():
            raise ValueError(
                f"{name} must fit int64 (labels from -2**63 to 2**63 - 1); got "
                f"{arr[big].tolist()[0]}"
            )
        return arr.astype(np.int64)
    if kind == "O" and arr.size:
        values = arr.ravel().tolist()
        if any(isinstance(v, (bool, np.bool_)) for v in values):
            raise TypeError(f"{name} must hold integers or strings, not booleans")
        if all(isinstance(v, numbers.Integral) for v in values):
            bad = [v for v in values if not _INT64_MIN <= v <= _INT64_MAX]
            if bad:
                raise ValueError(
                    f"{name} must fit int64 (labels from -2**63 to 2**63 - 1); got {bad[0]}"
                )
            return np.asarray(values, dtype=np.int64).reshape(arr.shape)
    return arr


def check_no_bools(keys: Any, what: str) -> None:
    """``TypeError`` when ``keys`` (one label or a sequence of labels) is or holds a boolean.

    Booleans are never labels: numpy would read ``True`` as 1 (scoring another customer) and a
    boolean array as a mask. Call it on the keys as the caller gave them, before ``np.asarray``
    turns ``[0, True]`` into ``[0, 1]``.

    >>> check_no_bools([0, True], "user")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    TypeError: user labels are integers or strings, never booleans; got True ...
    """
    if isinstance(keys, (bool, np.bool_)):
        bad: Any = keys
    elif isinstance(keys, np.ndarray) or hasattr(keys, "dtype"):
        dtype = getattr(keys, "dtype", None)
        kind = getattr(dtype, "kind", None)
        if kind == "b" or str(dtype) in ("bool", "boolean", "Boolean"):
            bad = next(iter(np.asarray(keys, dtype=object).ravel().tolist()), True)
        elif kind == "O":
            bad = next(
                (k for k in np.asarray(keys).ravel().tolist() if isinstance(k, (bool, np.bool_))),
                None,
            )
        else:
            return
    elif isinstance(keys, Sequence) and not isinstance(keys, (str, bytes)):
        bad = next((k for k in keys if isinstance(k, (bool, np.bool_))), None)
    else:
        return
    if bad is not None:
        raise TypeError(
            f"{what} labels are integers or strings, never booleans; got {bad!r} (a boolean "
            f"would be read as the {what} 0 or 1). Pass the labels themselves"
        )


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return str(value)


def lookup(labels: np.ndarray, keys: Any, what: str) -> np.ndarray:
    """Internal row indices of ``keys`` in the sorted label array ``labels``.

    Raises ``KeyError`` naming the first unknown label (also a key of the wrong kind: a string
    for integer labels or the reverse) and ``TypeError`` for booleans, which are never labels.
    ``keys`` may be one label or a sequence.

    >>> lookup(np.array([3, 5, 9]), [9, 3], "user").tolist()
    [2, 0]
    """
    check_no_bools(keys, what)
    scalar = np.ndim(keys) == 0
    arr = np.atleast_1d(np.asarray(keys, dtype=object if labels.dtype == object else None))
    if arr.ndim != 1:
        raise ValueError(f"{what} labels must be a label or a 1-d sequence of labels")
    int_labels = labels.dtype.kind in "iu"
    if int_labels and arr.dtype.kind == "u":
        too_big = arr > _INT64_MAX
        if too_big.any():  # beyond int64 no label can match (and a cast would wrap around)
            raise KeyError(
                f"unknown {what} {arr[too_big].tolist()[0]!r}: it was not in the training data"
            )
        arr = arr.astype(np.int64)
    elif int_labels and arr.dtype.kind != "i":
        values = arr.tolist()
        for k in values:
            if isinstance(k, bool) or not isinstance(k, numbers.Integral):
                raise KeyError(f"unknown {what} {k!r}: this model's {what} labels are integers")
            if not _INT64_MIN <= int(k) <= _INT64_MAX:
                raise KeyError(f"unknown {what} {k!r}: it was not in the training data")
        arr = np.asarray(values, dtype=np.int64)
    if not int_labels:
        arr = arr.astype(object, copy=False)
        for k in arr.tolist():
            if not isinstance(k, str):
                raise KeyError(f"unknown {what} {k!r}: this model's {what} labels are strings")
    idx = np.searchsorted(labels, arr)
    idx_c = np.minimum(idx, len(labels) - 1)
    if len(labels) == 0:
        found = np.zeros(len(arr), bool)
    else:
        found = (idx < len(labels)) & (labels[idx_c] == arr)
    if not np.all(found):
        bad = arr[~found].tolist()[0]
        raise KeyError(f"unknown {what} {bad!r}: it was not in the training data")
    out = idx.astype(np.int64)
    return out[:1] if scalar else out
