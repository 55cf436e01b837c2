//! PCA fit for Python: borrow a float32 or float64 C-contiguous matrix, release the GIL, fit.

use numpy::{
    IntoPyArray, PyArray1, PyArray2, PyArrayMethods, PyReadonlyArray2, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use super::slice2;
use crate::kernels::pca::{fit, Element, PcaFit, Solver};
use crate::kernels::pool::with_threads;

type FitOut<'py> = (
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray2<f64>>,
    Bound<'py, PyArray1<f64>>,
    Bound<'py, PyArray1<f64>>,
    f64,
);

fn run<T: Element + numpy::Element>(
    py: Python<'_>,
    x: &PyReadonlyArray2<'_, T>,
    n_components: usize,
    solver: Solver,
    num_threads: usize,
) -> PyResult<PcaFit> {
    // `as_slice` also accepts Fortran order, which would be read transposed here.
    if !x.is_c_contiguous() {
        return Err(PyValueError::new_err(
            "X must be a C-contiguous (row-major) array; use np.ascontiguousarray(X)",
        ));
    }
    let (xs, n, d) = slice2(x, "X")?;
    Ok(py.detach(|| with_threads(num_threads, || fit(xs, n, d, n_components, solver)))??)
}

/// Fits PCA to the C-contiguous float32/float64 matrix `x` (accumulating in f64).
///
/// Returns `(mean, components, explained_variance, singular_values, total_variance)`, all
/// float64; `components` is `r x d` with orthonormal rows by decreasing variance and signs
/// following scikit-learn's rule. The exact solvers (`"full"`, `"covariance_eigh"`) return all
/// `r = min(n, d)` components, `n_components` (0 = all) saying how many must be accurate
/// (it picks the f32 or f64 kernel for float32 input); `"randomized"` returns `n_components`.
#[pyfunction(name = "pca_fit")]
#[pyo3(signature = (x, *, n_components, solver, n_oversamples=10, n_iter=4, seed=0, num_threads=0))]
#[allow(clippy::too_many_arguments)]
fn pca_fit_py<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    n_components: usize,
    solver: &str,
    n_oversamples: usize,
    n_iter: usize,
    seed: u64,
    num_threads: usize,
) -> PyResult<FitOut<'py>> {
    let solver = Solver::parse(solver, n_oversamples, n_iter, seed)?;
    let out = if let Ok(a) = x.extract::<PyReadonlyArray2<'py, f32>>() {
        run(py, &a, n_components, solver, num_threads)?
    } else if let Ok(a) = x.extract::<PyReadonlyArray2<'py, f64>>() {
        run(py, &a, n_components, solver, num_threads)?
    } else {
        return Err(PyTypeError::new_err(
            "X must be a 2-d numpy array of float32 or float64 (use np.ascontiguousarray)",
        ));
    };
    let d = out.mean.len();
    let r = out.n_components();
    let components = out
        .components
        .into_pyarray(py)
        .reshape([r, d])
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok((
        out.mean.into_pyarray(py),
        components,
        out.explained_variance.into_pyarray(py),
        out.singular_values.into_pyarray(py),
        out.total_variance,
    ))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(pca_fit_py, m)?)?;
    Ok(())
}
