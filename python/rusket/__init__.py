"""rusket: cross-sell recommendations from raw purchase transactions.

Implicit-feedback ALS trained straight from pandas / polars / Arrow / Spark frames, batch top-n
scoring for every customer, factor exports for vector stores and a Rust-backed PCA, with the hot
loops in Rust.

Examples
--------
>>> import rusket
>>> model = rusket.ALS(factors=64, iterations=15, alpha=40.0, seed=42)
"""

from rusket._core import __version__
from rusket._validation import NotFittedError
from rusket.als import ALS

__all__ = ["ALS", "NotFittedError", "__version__"]
