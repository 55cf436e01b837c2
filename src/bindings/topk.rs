//! Exact all-rows top-n scoring for Python.

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::{slice1, slice2};
use crate::kernels::csr::CsrView;
use crate::kernels::pool::with_threads;
use crate::kernels::topk::topk;

/// `slice2` for a C-ordered array only: `as_slice` also accepts Fortran-ordered arrays, whose
/// memory would be read transposed.
fn c_slice2<'a>(
    a: &'a PyReadonlyArray2<'_, f32>,
    name: &str,
) -> PyResult<(&'a [f32], usize, usize)> {
    if !a.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "{name} must be a C-contiguous array (use np.ascontiguousarray)"
        )));
    }
    slice2(a, name)
}

type TopKArrays<'py> = (Bound<'py, PyArray2<i32>>, Bound<'py, PyArray2<f32>>);

/// For every row of `query`, the `n` items of `items` with the highest dot product, best first,
/// ties by lower item index; items listed in the CSR row `exclude_indices[exclude_indptr[u]:
/// exclude_indptr[u+1]]` are skipped for row `u`. Returns `(indices int32 [m, w], scores
/// float32 [m, w])` with `w = min(n, n_items)` (so memory never grows with `n` past the number
/// of items), padded with -1 / NaN where fewer than `w` candidates remain.
#[pyfunction(name = "topk")]
#[pyo3(signature = (query, items, n, *, exclude_indptr=None, exclude_indices=None, num_threads=0))]
fn topk_py<'py>(
    py: Python<'py>,
    query: PyReadonlyArray2<'py, f32>,
    items: PyReadonlyArray2<'py, f32>,
    n: i64,
    exclude_indptr: Option<PyReadonlyArray1<'py, i64>>,
    exclude_indices: Option<PyReadonlyArray1<'py, i32>>,
    num_threads: usize,
) -> PyResult<TopKArrays<'py>> {
    let n = usize::try_from(n)
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| PyValueError::new_err(format!("n must be an integer >= 1, got {n}")))?;
    let (q, m, fq) = c_slice2(&query, "query")?;
    let (v, n_items, f) = c_slice2(&items, "items")?;
    if fq != f {
        return Err(PyValueError::new_err(format!(
            "query has {fq} factors but items have {f}; both need the same number of columns"
        )));
    }
    let exclude = match (&exclude_indptr, &exclude_indices) {
        (None, None) => None,
        (Some(p), Some(i)) => Some(CsrView::new(
            slice1(p, "exclude_indptr")?,
            slice1(i, "exclude_indices")?,
            &[],
            n_items,
        )?),
        _ => {
            return Err(PyValueError::new_err(
                "give both exclude_indptr and exclude_indices, or neither",
            ))
        }
    };
    let res = py.detach(|| {
        with_threads(num_threads, || {
            topk(q, m, v, n_items, f, n, exclude.as_ref())
        })
    })??;
    let w = res.width;
    let idx = Array2::from_shape_vec((m, w), res.indices)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let sc = Array2::from_shape_vec((m, w), res.scores)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok((idx.into_pyarray(py), sc.into_pyarray(py)))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(topk_py, m)?)?;
    Ok(())
}
