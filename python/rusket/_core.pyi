"""Type stubs for the native module ``rusket._core`` (kept in sync by hand; see tests)."""

import numpy as np
import numpy.typing as npt

__version__: str

# --- ALS (src/bindings/als.rs) ---------------------------------------------------------------

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
) -> None: ...
def als_loss(
    indptr: npt.NDArray[np.int64],
    indices: npt.NDArray[np.int32],
    data: npt.NDArray[np.float32],
    users: npt.NDArray[np.float32],
    items: npt.NDArray[np.float32],
    *,
    regularization: float,
    num_threads: int,
) -> float: ...

# (end of ALS section)

# --- top-k scoring (src/bindings/topk.rs) ----------------------------------------------------

def topk(
    query: npt.NDArray[np.float32],
    items: npt.NDArray[np.float32],
    n: int,
    *,
    exclude_indptr: npt.NDArray[np.int64] | None = None,
    exclude_indices: npt.NDArray[np.int32] | None = None,
    num_threads: int = 0,
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.float32]]: ...

# (end of top-k section)

# --- PCA (src/bindings/pca.rs) ---------------------------------------------------------------

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
