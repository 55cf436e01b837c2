//! Exact all-rows top-n scoring for Python.

use numpy::ndarray::Array2;
use numpy::{IntoPyArray, PyArray2, PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::{slice1, slice2};
use crate::kernels::csr::CsrView;
use crate::kernels::pool::{check_threads, with_threads};
use crate::kernels::topk::{topk, topk_prepared, Prepared};

/// Query rows up to which `TopKIndex.topk` runs on the calling thread (one block of the kernel).
const SMALL_QUERY: usize = 4;

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
/// of items), padded with -1 / NaN where fewer than `w` candidates remain. `allowed` (bool, one
/// per item) keeps the items where it is False out of every row.
#[pyfunction(name = "topk")]
#[pyo3(signature = (query, items, n, *, exclude_indptr=None, exclude_indices=None, allowed=None, num_threads=0))]
#[allow(clippy::too_many_arguments)]
fn topk_py<'py>(
    py: Python<'py>,
    query: PyReadonlyArray2<'py, f32>,
    items: PyReadonlyArray2<'py, f32>,
    n: i64,
    exclude_indptr: Option<PyReadonlyArray1<'py, i64>>,
    exclude_indices: Option<PyReadonlyArray1<'py, i32>>,
    allowed: Option<PyReadonlyArray1<'py, bool>>,
    num_threads: usize,
) -> PyResult<TopKArrays<'py>> {
    let (v, n_items, f) = c_slice2(&items, "items")?;
    let r = Request::check(
        &query,
        n,
        n_items,
        f,
        &exclude_indptr,
        &exclude_indices,
        &allowed,
    )?;
    let res = py.detach(|| {
        with_threads(num_threads, || {
            if r.allowed.is_none() {
                topk(r.q, r.m, v, n_items, f, r.n, r.exclude.as_ref())
            } else {
                let prep = Prepared::new(v, n_items, f, false)?;
                topk_prepared(&prep, r.q, r.m, r.n, r.exclude.as_ref(), r.allowed)
            }
        })
    })??;
    arrays(py, r.m, res)
}

/// Item factors prepared once for many top-k calls (checked, packed for the scoring loop, and a
/// int8 copy for the screen of single queries); immutable, so concurrent calls share it.
/// Not picklable: keep it in a cache that is rebuilt on first use.
#[pyclass(name = "TopKIndex", module = "rusket._core", frozen)]
pub struct TopKIndex {
    prep: Prepared,
}

#[pymethods]
impl TopKIndex {
    #[new]
    #[pyo3(signature = (items, *, num_threads=0))]
    fn new(py: Python<'_>, items: PyReadonlyArray2<'_, f32>, num_threads: usize) -> PyResult<Self> {
        let (v, n_items, f) = c_slice2(&items, "items")?;
        let prep =
            py.detach(|| with_threads(num_threads, || Prepared::new(v, n_items, f, true)))??;
        Ok(Self { prep })
    }

    /// Number of items.
    #[getter]
    fn n_items(&self) -> usize {
        self.prep.n_items()
    }

    /// Number of factors per item.
    #[getter]
    fn factors(&self) -> usize {
        self.prep.factors()
    }

    /// True when single queries are answered through the int8 screen (exact answers).
    #[getter]
    fn screens(&self) -> bool {
        self.prep.screens()
    }

    /// `topk(query, self's items, n, ...)` with an optional item filter: `allowed` (bool, one per
    /// item) keeps the items where it is False out of every row.
    #[pyo3(signature = (query, n, *, exclude_indptr=None, exclude_indices=None, allowed=None, num_threads=0))]
    #[allow(clippy::too_many_arguments)]
    fn topk<'py>(
        &self,
        py: Python<'py>,
        query: PyReadonlyArray2<'py, f32>,
        n: i64,
        exclude_indptr: Option<PyReadonlyArray1<'py, i64>>,
        exclude_indices: Option<PyReadonlyArray1<'py, i32>>,
        allowed: Option<PyReadonlyArray1<'py, bool>>,
        num_threads: usize,
    ) -> PyResult<TopKArrays<'py>> {
        let prep = &self.prep;
        let r = Request::check(
            &query,
            n,
            prep.n_items(),
            prep.factors(),
            &exclude_indptr,
            &exclude_indices,
            &allowed,
        )?;
        let res = if r.m <= SMALL_QUERY {
            // A few rows run on this thread: handing them to a pool costs more than they do.
            check_threads(num_threads)?;
            py.detach(|| topk_prepared(prep, r.q, r.m, r.n, r.exclude.as_ref(), r.allowed))?
        } else {
            py.detach(|| {
                with_threads(num_threads, || {
                    topk_prepared(prep, r.q, r.m, r.n, r.exclude.as_ref(), r.allowed)
                })
            })??
        };
        arrays(py, r.m, res)
    }
}

/// The checked arguments of one top-k call, shared by `topk` and `TopKIndex.topk`.
struct Request<'a> {
    n: usize,
    q: &'a [f32],
    m: usize,
    exclude: Option<CsrView<'a>>,
    allowed: Option<&'a [bool]>,
}

impl<'a> Request<'a> {
    /// Checks `n`, the query's shape against items of `f` factors, the exclusion CSR against
    /// `n_items` (the kernel checks `allowed`'s length).
    fn check(
        query: &'a PyReadonlyArray2<'_, f32>,
        n: i64,
        n_items: usize,
        f: usize,
        exclude_indptr: &'a Option<PyReadonlyArray1<'_, i64>>,
        exclude_indices: &'a Option<PyReadonlyArray1<'_, i32>>,
        allowed: &'a Option<PyReadonlyArray1<'_, bool>>,
    ) -> PyResult<Self> {
        let n = check_n(n)?;
        let (q, m, fq) = c_slice2(query, "query")?;
        if fq != f {
            return Err(PyValueError::new_err(format!(
                "query has {fq} factors but items have {f}; both need the same number of columns"
            )));
        }
        let exclude = exclude_view(exclude_indptr, exclude_indices, n_items)?;
        let allowed = match allowed {
            Some(a) => Some(slice1(a, "allowed")?),
            None => None,
        };
        Ok(Self {
            n,
            q,
            m,
            exclude,
            allowed,
        })
    }
}

fn check_n(n: i64) -> PyResult<usize> {
    usize::try_from(n)
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| PyValueError::new_err(format!("n must be an integer >= 1, got {n}")))
}

fn exclude_view<'a>(
    exclude_indptr: &'a Option<PyReadonlyArray1<'_, i64>>,
    exclude_indices: &'a Option<PyReadonlyArray1<'_, i32>>,
    n_items: usize,
) -> PyResult<Option<CsrView<'a>>> {
    match (exclude_indptr, exclude_indices) {
        (None, None) => Ok(None),
        (Some(p), Some(i)) => Ok(Some(CsrView::new(
            slice1(p, "exclude_indptr")?,
            slice1(i, "exclude_indices")?,
            &[],
            n_items,
        )?)),
        _ => Err(PyValueError::new_err(
            "give both exclude_indptr and exclude_indices, or neither",
        )),
    }
}

fn arrays(py: Python<'_>, m: usize, res: crate::kernels::topk::TopK) -> PyResult<TopKArrays<'_>> {
    let w = res.width;
    let idx = Array2::from_shape_vec((m, w), res.indices)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let sc = Array2::from_shape_vec((m, w), res.scores)
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok((idx.into_pyarray(py), sc.into_pyarray(py)))
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(topk_py, m)?)?;
    m.add_class::<TopKIndex>()?;
    Ok(())
}
