"""Type stubs for the native module ``rusket._core`` (kept in sync by hand; see tests)."""

from typing import final

import numpy as np
import numpy.typing as npt

__version__: str

# --- ALS (src/bindings/als.rs) ---------------------------------------------------------------
# Every num_threads (here and below) is 0 (all cores) to 1024 (rusket._validation.MAX_THREADS).
# `target` is written in place: it must be writeable and share no memory with the other arrays.
# solver: "cg" (tol > 0: CG to tolerance, with exact Woodbury short rows through Z = Y G^-1
# where the other side is smaller; tol = 0: exactly cg_steps whitened CG steps), "auto" (the
# same as "cg" with tol > 0), "cg_whitened" (the whitened CG on every row), "cholesky" (exact),
# "reference" (the textbook f64 solve, slow). rotate_fixed=True (with row_scale, not
# "reference") turns the model instead of taking the rows out of the eigenbasis: `fixed`
# (writeable, sharing no memory with the inputs) becomes fixed @ Q, Q orthogonal, and `target`
# is written in that frame (same scores, same objective).

def als_solve_side(
    indptr: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int32],
    data: npt.NDArray[np.float32],
    fixed: npt.NDArray[np.float32],
    target: npt.NDArray[np.float32],
    *,
    regularization: float,
    solver: str,
    cg_steps: int,
    num_threads: int,
    tol: float = 0.0,
    row_scale: npt.NDArray[np.float32] | None = None,
    workspace: AlsWorkspace | None = None,
    rotate_fixed: bool = False,
) -> None: ...

@final
class AlsWorkspace:
    """Buffers shared by the half-steps of one fit (never pickled)."""

    def __init__(self) -> None: ...

def als_loss(
    indptr: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int32],
    data: npt.NDArray[np.float32],
    users: npt.NDArray[np.float32],
    items: npt.NDArray[np.float32],
    *,
    regularization: float,
    num_threads: int,
    user_scale: npt.NDArray[np.float32] | None = None,
    item_scale: npt.NDArray[np.float32] | None = None,
) -> float: ...

# (end of ALS section)

# --- top-k scoring (src/bindings/topk.rs) ----------------------------------------------------
# Returns (indices, scores) of shape (m, min(n, n_items)): any n >= 1 costs at most n_items.
# `allowed` (bool, one per item): items where it is False are never returned (business filters).

def topk(
    query: npt.NDArray[np.float32],
    items: npt.NDArray[np.float32],
    n: int,
    *,
    exclude_indptr: npt.NDArray[np.int64] | None = None,
    exclude_indices: npt.NDArray[np.int32] | None = None,
    allowed: npt.NDArray[np.bool_] | None = None,
    num_threads: int = 0,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]: ...

@final
class TopKIndex:
    """Item factors prepared once for many top-k calls (not picklable; cache it)."""

    def __new__(cls, items: npt.NDArray[np.float32], *, num_threads: int = 0) -> TopKIndex: ...
    @property
    def n_items(self) -> int: ...
    @property
    def factors(self) -> int: ...
    @property
    def screens(self) -> bool: ...
    def topk(
        self,
        query: npt.NDArray[np.float32],
        n: int,
        *,
        exclude_indptr: npt.NDArray[np.int64] | None = None,
        exclude_indices: npt.NDArray[np.int32] | None = None,
        allowed: npt.NDArray[np.bool_] | None = None,
        num_threads: int = 0,
    ) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]: ...

# (end of top-k section)

# --- PCA (src/bindings/pca.rs) ---------------------------------------------------------------
# n_components + n_oversamples must not overflow 64 bits; data whose variances overflow float64
# is a ValueError.

def pca_fit(
    x: npt.NDArray[np.float32] | npt.NDArray[np.float64],
    *,
    n_components: int,
    solver: str,
    n_oversamples: int = 10,
    n_iter: int = 4,
    seed: int = 0,
    num_threads: int = 0,
) -> tuple[
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    npt.NDArray[np.float64],
    float,
]: ...

# (end of PCA section)
