"""Lazy imports of optional dependencies, with an error that names the extra to install."""

from __future__ import annotations

import importlib
from types import ModuleType

_EXTRA_OF = {
    "pandas": "pandas",
    "polars": "polars",
    "pyspark": "spark-local",
    "plotly": "plot",
    "sklearn": "sklearn",
    "tqdm": "progress",
    "lancedb": "vector",
    "faiss": "vector",
    "deltalake": "delta",
}


def require(module: str) -> ModuleType:
    """Import ``module`` or raise an ``ImportError`` that says which extra brings it.

    Examples
    --------
    >>> require("numpy").__name__
    'numpy'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        top = module.split(".")[0]
        extra = _EXTRA_OF.get(top, top)
        raise ImportError(
            f"this feature needs the optional dependency {top!r}; "
            f"install it with `pip install 'rusket[{extra}]'` (or `rusket[all]`)"
        ) from exc
