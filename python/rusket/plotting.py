"""Plotly figures (optional: ``pip install 'rusket[plot]'``); plotly is imported lazily.

Most users get here through :meth:`rusket.pca.Projection.plot` (``ALS.pca().plot()``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rusket._optional import require

__all__ = ["projection_figure"]

_AXES = ("x", "y", "z")


def _is_numeric(values: np.ndarray) -> bool:
    if values.dtype == object:
        return all(
            isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
            for v in values.tolist()
        )
    return np.issubdtype(values.dtype, np.number) and not np.issubdtype(values.dtype, np.bool_)


def projection_figure(
    coordinates: np.ndarray,
    labels: np.ndarray,
    *,
    axis_ratios: np.ndarray | None = None,
    id_name: str = "item_id",
    title: str | None = None,
    color: np.ndarray | None = None,
    hover: np.ndarray | None = None,
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
    color : ndarray of shape (n,), optional
        Numbers give a continuous colour scale; anything else one legend entry per value.
    hover : ndarray of shape (n,), optional
        Extra hover text per point.
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

    coord_lines = "<br>".join(f"PC{j + 1}=%{{{_AXES[j]}:.3f}}" for j in range(k))
    template = f"<b>{id_name}=%{{text}}</b>"
    if hover is not None:
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
        if hover is not None:
            kw["customdata"] = [str(h) for h, m in zip(hover.tolist(), mask, strict=True) if m]
        return scatter(**kw)

    everything = np.ones(n, dtype=bool)
    if color is None:
        traces = [trace(everything, None, {})]
    else:
        color = np.asarray(color)
        if len(color) != n:
            raise ValueError(f"color must have one value per point ({n}); got {len(color)}")
        if _is_numeric(color):
            marker = {
                "color": color.astype(float),
                "colorscale": "Viridis",
                "showscale": True,
            }
            traces = [trace(everything, None, marker)]
        else:
            keys = np.asarray(["(none)" if c is None else str(c) for c in color.tolist()])
            _, first = np.unique(keys, return_index=True)
            traces = [trace(keys == keys[i], str(keys[i]), {}) for i in sorted(first)]

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
