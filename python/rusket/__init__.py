"""rusket: cross-sell recommendations from raw purchase transactions.

Implicit-feedback ALS trained straight from pandas / polars / Arrow / Spark frames, batch top-n
scoring for every customer, factor exports for vector stores and a Rust-backed PCA, with the hot
loops in Rust.
"""

from rusket._core import __version__

__all__ = ["__version__"]
