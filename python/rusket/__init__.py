"""rusket: cross-sell recommendations from raw purchase transactions.

Implicit-feedback ALS trained straight from pandas / polars / Arrow / Spark frames, a best-seller
baseline (``Popularity``) on the same surface, batch top-n scoring for every customer, factor
exports for vector stores and a Rust-backed PCA, with the hot loops in Rust.

Examples
--------
>>> import rusket
>>> model = rusket.ALS(factors=64, iterations=15, alpha=40.0, seed=42)
"""

from typing import TYPE_CHECKING, Any

from rusket._core import __version__
from rusket._validation import NotFittedError
from rusket.als import ALS
from rusket.popularity import Popularity

if TYPE_CHECKING:  # pragma: no cover
    from rusket.pca import PCA, Projection
    from rusket.tiers import potential_tiers

__all__ = [
    "ALS",
    "PCA",
    "NotFittedError",
    "Popularity",
    "Projection",
    "__version__",
    "datasets",
    "evaluation",
    "potential_tiers",
    "spark",
]


def __getattr__(name: str) -> Any:
    # The modules rusket.evaluation, rusket.datasets and rusket.spark, on first use.
    if name in ("evaluation", "datasets", "spark"):
        import importlib

        return importlib.import_module(f"rusket.{name}")
    if name == "potential_tiers":
        from rusket.tiers import potential_tiers

        return potential_tiers
    # rusket.PCA subclasses scikit-learn's BaseEstimator when scikit-learn is installed: import
    # it (and so scikit-learn) only when PCA is first used, keeping `import rusket` light.
    if name in ("PCA", "Projection"):
        from rusket import pca

        return getattr(pca, name)
    raise AttributeError(f"module 'rusket' has no attribute {name!r}")
