//! The Python-facing wrappers: borrow numpy arrays, check shapes, release the GIL, call a kernel.

pub mod als;
pub mod pca;
pub mod topk;

use numpy::{PyReadonlyArray1, PyReadonlyArray2, PyUntypedArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::kernels::csr::CsrView;

/// A contiguous slice of a 1-d array, or a `ValueError` naming the argument.
pub(crate) fn slice1<'a, T: numpy::Element>(
    a: &'a PyReadonlyArray1<'_, T>,
    name: &str,
) -> PyResult<&'a [T]> {
    a.as_slice()
        .map_err(|_| PyValueError::new_err(format!("{name} must be a C-contiguous array")))
}

/// `(slice, rows, cols)` of a C-contiguous 2-d array.
pub(crate) fn slice2<'a, T: numpy::Element>(
    a: &'a PyReadonlyArray2<'_, T>,
    name: &str,
) -> PyResult<(&'a [T], usize, usize)> {
    let shape = a.shape();
    if !a.is_c_contiguous() {
        return Err(PyValueError::new_err(format!(
            "{name} must be a C-contiguous array (use np.ascontiguousarray)"
        )));
    }
    let s = a
        .as_slice()
        .map_err(|_| PyValueError::new_err(format!("{name} must be a C-contiguous array")))?;
    Ok((s, shape[0], shape[1]))
}

/// The bytes `[start, end)` a slice occupies.
pub(crate) fn byte_range<T>(s: &[T]) -> (usize, usize) {
    let start = s.as_ptr() as usize;
    (start, start + std::mem::size_of_val(s))
}

/// `ValueError` when the bytes `out` of the array written to (`out_name`) overlap the bytes of
/// one of the `inputs` (`(bytes, name)`). Arrays that share memory through separate buffer views
/// (two `np.frombuffer` of one buffer, say) are not seen by numpy's borrow tracking: writing to
/// one while reading the other through a shared slice would be undefined behaviour in Rust.
pub(crate) fn check_disjoint(
    out: (usize, usize),
    out_name: &str,
    inputs: &[((usize, usize), &str)],
) -> PyResult<()> {
    for &((start, end), name) in inputs {
        if start < end && out.0 < out.1 && start < out.1 && out.0 < end {
            return Err(PyValueError::new_err(format!(
                "{out_name} shares memory with {name}; the array written to must not overlap an \
                 input (pass a separate array, e.g. {name}.copy())"
            )));
        }
    }
    Ok(())
}

/// A checked CSR view over three borrowed arrays.
pub(crate) fn csr<'a>(
    indptr: &'a PyReadonlyArray1<'_, i64>,
    indices: &'a PyReadonlyArray1<'_, i32>,
    data: &'a PyReadonlyArray1<'_, f32>,
    n_cols: usize,
) -> PyResult<CsrView<'a>> {
    Ok(CsrView::new(
        slice1(indptr, "indptr")?,
        slice1(indices, "indices")?,
        slice1(data, "data")?,
        n_cols,
    )?)
}
