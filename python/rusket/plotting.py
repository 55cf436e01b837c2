"""Plotly figures (optional: ``pip install 'rusket[plot]'``); plotly is imported lazily.

Most users get here through :meth:`rusket.pca.Projection.plot` (``ALS.pca().plot()``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from rusket._optional import require

__all__ = ["projection_figure", "values_by_label"]

_AXES = ("x", "y", "z")


def _is_missing(v: Any) -> bool:
    """None, NaN, NaT and pandas' NA: a point without a value."""
    if v is None:
        return True
    try:
        return bool(v != v)
    except (TypeError, ValueError):  # pandas.NA refuses bool()
        return True


def _is_numeric(values: np.ndarray) -> bool:
    """Numbers (bools excluded), ignoring missing values; at least one present."""
    if values.dtype != object:
        return np.issubdtype(values.dtype, np.number) and not np.issubdtype(values.dtype, np.bool_)
    present = [v for v in values.tolist() if not _is_missing(v)]
    return bool(present) and all(
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
        for v in present
    )


def _is_by_label(values: Any) -> bool:
    """A mapping or a pandas Series: values keyed by label, not by position."""
    if isinstance(values, Mapping):
        return True
    kind = type(values)
    return kind.__module__.split(".")[0] == "pandas" and kind.__name__ == "Series"


def values_by_label(values: Any, labels: np.ndarray, name: str) -> np.ndarray:
    """The value of every label, looked up in a mapping label -> value or a pandas Series
    indexed by label; labels it lacks get None (drawn as a "(none)" group).

    ``ValueError`` when a Series index has duplicates, and when no label at all is found (the
    keys are of another kind, or the Series is not indexed by the ids: e.g.
    ``catalogue.set_index("article_id")["category"]``).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> s = pd.Series(["bags", "shoes"], index=["sku-2", "sku-1"])
    >>> values_by_label(s, np.array(["sku-1", "sku-2", "sku-3"], dtype=object), "color").tolist()
    ['shoes', 'bags', None]
    """
    if isinstance(values, Mapping):
        mapping = dict(values)
    else:
        index = values.index
        if not index.is_unique:
            dup = index[index.duplicated()].tolist()[0]
            raise ValueError(
                f"{name}: the Series index holds label {dup!r} more than once; give one value "
                "per label"
            )
        mapping = dict(zip(index.tolist(), values.tolist(), strict=True))
    keys = np.asarray(labels).tolist()
    out = np.empty(len(keys), dtype=object)
    out[:] = [mapping.get(k) for k in keys]
    if keys and all(k not in mapping for k in keys):
        sample = next(iter(mapping), None)
        raise ValueError(
            f"{name}: none of the {len(keys)} point labels (e.g. {keys[0]!r}) is a key of the "
            f"{type(values).__name__} (e.g. {sample!r}); index it by the ids, e.g. "
            'catalogue.set_index("article_id")["category"]'
        )
    return out


def _point_values(values: Any, labels: np.ndarray, name: str) -> np.ndarray | None:
    """Per-point values: by label for a mapping / Series, else by position (one per point)."""
    if values is None:
        return None
    if _is_by_label(values):
        return values_by_label(values, labels, name)
    arr = np.asarray(values)
    if arr.ndim != 1 or len(arr) != len(labels):
        raise ValueError(
            f"{name} must have one value per point ({len(labels)}) in the order of the labels, "
            f"or be a dict / pandas Series keyed by label; got shape {arr.shape}"
        )
    return arr


def projection_figure(
    coordinates: np.ndarray,
    labels: np.ndarray,
    *,
    axis_ratios: np.ndarray | None = None,
    id_name: str = "item_id",
    title: str | None = None,
    color: Any = None,
    hover: Any = None,
    n_total: int | None = None,
    marker_size: float = 3.0,
    opacity: float = 0.8,
) -> Any:
    """A scatter of 2-d or 3-d coordinates with each point's label in its hover text.

    Parameters
    ----------
    coordinates : ndarray of shape (n, 2) or (n, 3)
        Points to draw (``Scatter`` for 2 columns, ``Scatter3d`` for 3).
    labels : ndarray of shape (n,)
        Id of each point, shown on hover.
    axis_ratios : ndarray, optional
        Explained-variance ratio of each axis, shown in the axis titles.
    id_name : str
        Name of the ids in the hover text (``item_id`` / ``user_id``).
    title : str, optional
        Figure title; a default names the space and the number of points.
    color : array-like of shape (n,), mapping label -> value, or pandas Series, optional
        An array or list is taken in the order of ``labels`` (one value per point); a dict or
        a pandas Series indexed by label is looked up by label (see :func:`values_by_label`).
        Numbers give a continuous colour scale; anything else one legend entry per value.
        Points without a value form a grey ``"(none)"`` group.
    hover : array-like of shape (n,), mapping or pandas Series, optional
        Extra hover text per point, aligned like ``color`` (empty for points without one).
    n_total : int, optional
        Size of the whole space when ``coordinates`` is a sample (said in the title).
    marker_size, opacity : float
        Marker look.

    Returns
    -------
    plotly.graph_objects.Figure

    Examples
    --------
    >>> import numpy as np
    >>> fig = projection_figure(np.zeros((2, 3)), np.array(["a", "b"]))  # doctest: +SKIP
    >>> type(fig.data[0]).__name__  # doctest: +SKIP
    'Scatter3d'
    """
    require("plotly")
    go = require("plotly.graph_objects")

    coords = np.asarray(coordinates)
    if coords.ndim != 2 or coords.shape[1] not in (2, 3):
        raise ValueError(
            "a figure needs 2 or 3 components; project with n_components=2 or 3 "
            f"(got coordinates of shape {coords.shape})"
        )
    n, k = coords.shape
    labels = np.asarray(labels)
    if len(labels) != n:
        raise ValueError(f"labels must have one entry per point ({n}); got {len(labels)}")
    n_total = n if n_total is None else n_total
    text = [str(v) for v in labels.tolist()]

    axis_titles = []
    for j in range(k):
        name = f"PC{j + 1}"
        if axis_ratios is not None and j < len(axis_ratios):
            name += f" ({100 * float(axis_ratios[j]):.1f}%)"
        axis_titles.append(name)

    hover_values = _point_values(hover, labels, "hover")
    hover_text = (
        None
        if hover_values is None
        else ["" if _is_missing(h) else str(h) for h in hover_values.tolist()]
    )
    color = _point_values(color, labels, "color")

    coord_lines = "<br>".join(f"PC{j + 1}=%{{{_AXES[j]}:.3f}}" for j in range(k))
    template = f"<b>{id_name}=%{{text}}</b>"
    if hover_text is not None:
        template += "<br>%{customdata}"
    template += f"<br>{coord_lines}<extra></extra>"
    scatter = go.Scatter3d if k == 3 else go.Scatter

    def trace(mask: np.ndarray, name: str | None, marker: dict[str, Any]) -> Any:
        kw: dict[str, Any] = {
            "x": coords[mask, 0],
            "y": coords[mask, 1],
            "mode": "markers",
            "text": [t for t, m in zip(text, mask, strict=True) if m],
            "hovertemplate": template,
            "marker": {"size": marker_size, "opacity": opacity, **marker},
            "name": name or id_name,
            "showlegend": name is not None,
        }
        if k == 3:
            kw["z"] = coords[mask, 2]
        if hover_text is not None:
            kw["customdata"] = [h for h, m in zip(hover_text, mask, strict=True) if m]
        return scatter(**kw)

    everything = np.ones(n, dtype=bool)
    if color is None:
        traces = [trace(everything, None, {})]
    else:
        missing = np.array([_is_missing(c) for c in color.tolist()], dtype=bool)
        if _is_numeric(color):
            present = ~missing
            marker = {
                "color": np.asarray(color[present], dtype=float),
                "colorscale": "Viridis",
                "showscale": True,
            }
            traces = [trace(present, None, marker)]
            if missing.any():
                traces.append(trace(missing, "(none)", {"color": "lightgrey"}))
        else:
            keys = np.asarray(
                ["(none)" if m else str(c) for c, m in zip(color.tolist(), missing, strict=True)]
            )
            _, first = np.unique(keys, return_index=True)
            grey = {"color": "lightgrey"}
            traces = [
                trace(keys == keys[i], str(keys[i]), grey if missing[i] else {})
                for i in sorted(first)
            ]

    if title is None:
        space = "Item" if id_name == "item_id" else "User" if id_name == "user_id" else id_name
        title = f"{space} space, first {k} principal components"
    if n < n_total:
        title += f"<br><sup>random sample of {n:,} of {n_total:,} points</sup>"

    fig = go.Figure(data=traces)
    if k == 3:
        fig.update_layout(
            scene={
                "xaxis_title": axis_titles[0],
                "yaxis_title": axis_titles[1],
                "zaxis_title": axis_titles[2],
            }
        )
    else:
        fig.update_layout(xaxis_title=axis_titles[0], yaxis_title=axis_titles[1])
    fig.update_layout(title=title, template="plotly_white", margin={"l": 0, "r": 0, "b": 0})
    return fig
