"""Checks shared by the estimators: parameters, fitted state, label lookups."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np


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


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return str(value)


def lookup(labels: np.ndarray, keys: Any, what: str) -> np.ndarray:
    """Internal row indices of ``keys`` in the sorted label array ``labels``.

    Raises ``KeyError`` naming the first unknown label. ``keys`` may be one label or a sequence.
    """
    scalar = np.ndim(keys) == 0
    arr = np.atleast_1d(np.asarray(keys, dtype=object if labels.dtype == object else None))
    if arr.ndim != 1:
        raise ValueError(f"{what} labels must be a label or a 1-d sequence of labels")
    int_labels = labels.dtype.kind in "iu"
    if int_labels and arr.dtype.kind not in "iu":
        if arr.size and not all(
            isinstance(k, numbers.Integral) and not isinstance(k, bool) for k in arr.tolist()
        ):
            bad = next(k for k in arr.tolist() if not isinstance(k, numbers.Integral))
            raise KeyError(f"unknown {what} {bad!r}: this model's {what} labels are integers")
        arr = arr.astype(np.int64)
    if not int_labels and arr.dtype != object:
        arr = arr.astype(object)
    if not int_labels and arr.size:
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
