//! ALS half-steps and loss for Python.

use numpy::{
    BorrowError, PyArray2, PyArrayMethods, PyReadonlyArray1, PyReadonlyArray2, PyReadwriteArray2,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::{byte_range, check_disjoint, csr, slice1, slice2};
use std::sync::Mutex;

use crate::kernels::als::{loss, solve_side_in, solve_side_rotating, Penalty, Solver, Workspace};
use crate::kernels::pool::with_threads;

/// Buffers that the half-steps of one fit share (see `Workspace`): a fit creates one, passes it
/// to each `als_solve_side` and drops it at the end. Never pickled (a model does not hold it).
/// Calls from several threads with one workspace take turns.
#[pyclass(name = "AlsWorkspace", module = "rusket._core", frozen)]
#[derive(Default)]
pub struct AlsWorkspace {
    inner: Mutex<Workspace>,
}

#[pymethods]
impl AlsWorkspace {
    #[new]
    fn new() -> Self {
        Self::default()
    }
}

/// Recomputes every row of `target` in place with `fixed` held constant.
/// `indptr/indices/data` is the CSR matrix whose rows are `target`'s rows and whose values are
/// the confidences `c = 1 + alpha * r` of the observed pairs. `target` must be writeable and
/// share no memory with the other arrays (`ValueError` otherwise). With `rotate_fixed` (and a
/// per-row penalty) the model may be rotated instead of taking the rows back out of the
/// eigenbasis: `fixed` (then writeable, and sharing no memory with the other inputs) becomes
/// `fixed · Q` and `target` is written in that frame (see `solve_side_rotating`).
#[pyfunction(name = "als_solve_side")]
#[pyo3(signature = (indptr, indices, data, fixed, target, *, regularization, solver, cg_steps, num_threads, tol=0.0, row_scale=None, workspace=None, rotate_fixed=false))]
#[allow(clippy::too_many_arguments)]
fn als_solve_side_py(
    py: Python<'_>,
    indptr: PyReadonlyArray1<'_, i64>,
    indices: PyReadonlyArray1<'_, i32>,
    data: PyReadonlyArray1<'_, f32>,
    fixed: PyReadonlyArray2<'_, f32>,
    target: Bound<'_, PyArray2<f32>>,
    regularization: f32,
    solver: &str,
    cg_steps: usize,
    num_threads: usize,
    tol: f32,
    row_scale: Option<PyReadonlyArray1<'_, f32>>,
    workspace: Option<PyRef<'_, AlsWorkspace>>,
    rotate_fixed: bool,
) -> PyResult<()> {
    let solver = Solver::parse(solver, cg_steps, tol)?;
    let (fixed_s, n_cols, f) = slice2(&fixed, "fixed")?;
    let m = csr(&indptr, &indices, &data, n_cols)?;
    let row_scale = row_scale
        .as_ref()
        .map(|s| slice1(s, "row_scale"))
        .transpose()?;
    if target.shape()[1] != f {
        return Err(PyValueError::new_err(format!(
            "target has {} factors, fixed has {f}",
            target.shape()[1]
        )));
    }
    if !target.is_c_contiguous() {
        return Err(PyValueError::new_err("target must be a C-contiguous array"));
    }
    // Compare the bytes before borrowing `target` mutably: an overlap seen by numpy's borrow
    // tracking (views of one base array) and one it cannot see (separate buffer views of one
    // memory) give the same error.
    let start = target.data() as usize;
    let out = (start, start + target.len() * std::mem::size_of::<f32>());
    // `fixed` first, then the inputs that a rotated `fixed` must not overlap either.
    let inputs = [
        (byte_range(fixed_s), "fixed"),
        (byte_range(m.indptr), "indptr"),
        (byte_range(m.indices), "indices"),
        (byte_range(m.data), "data"),
        (byte_range(row_scale.unwrap_or(&[])), "row_scale"),
    ];
    check_disjoint(out, "target", &inputs)?;
    let mut target = writeable(&target, "target", "")?;
    let target_s = target
        .as_slice_mut()
        .map_err(|_| PyValueError::new_err("target must be a C-contiguous array"))?;
    let shared: Option<&AlsWorkspace> = workspace.as_deref();
    let penalty = Penalty {
        lambda: regularization,
        row_scale,
    };
    if !rotate_fixed {
        return in_workspace(py, shared, num_threads, |ws| {
            solve_side_in(&m, fixed_s, target_s, f, penalty, solver, ws)
        });
    }
    check_disjoint(inputs[0].0, "fixed", &inputs[1..])?;
    // Trade the read-only borrow of `fixed` for a writeable one.
    let fixed_obj = (*fixed).clone();
    drop(fixed);
    let mut fixed_rw = writeable(&fixed_obj, "fixed", " and rotate_fixed=True writes it")?;
    let fixed_m = fixed_rw
        .as_slice_mut()
        .map_err(|_| PyValueError::new_err("fixed must be a C-contiguous array"))?;
    in_workspace(py, shared, num_threads, |ws| {
        solve_side_rotating(&m, fixed_m, target_s, f, penalty, solver, ws)
    })
}

/// A writeable borrow of the array `name`; `ValueError` when it is read-only (`why` says why
/// it is written) or already borrowed.
fn writeable<'py>(
    a: &Bound<'py, PyArray2<f32>>,
    name: &str,
    why: &str,
) -> PyResult<PyReadwriteArray2<'py, f32>> {
    a.try_readwrite().map_err(|e| match e {
        BorrowError::NotWriteable => {
            PyValueError::new_err(format!("{name} is read-only{why}; pass a writeable array"))
        }
        _ => PyValueError::new_err(format!(
            "{name} is already borrowed (it shares memory with another argument); pass a \
             separate array"
        )),
    })
}

/// Runs `job` without the GIL on `num_threads` threads with the buffers of `shared` (locked
/// for the call) or buffers of its own.
fn in_workspace(
    py: Python<'_>,
    shared: Option<&AlsWorkspace>,
    num_threads: usize,
    job: impl FnOnce(&mut Workspace) -> crate::error::CoreResult<()> + Send,
) -> PyResult<()> {
    py.detach(|| {
        with_threads(num_threads, || {
            // A panic while the lock was held cannot leave the buffer list inconsistent.
            let mut own = Workspace::default();
            let mut guard = shared.map(|w| w.inner.lock().unwrap_or_else(|e| e.into_inner()));
            job(guard.as_deref_mut().unwrap_or(&mut own))
        })
    })??;
    Ok(())
}

/// The implicit-ALS training objective for the CSR matrix of confidences (users as rows).
#[pyfunction(name = "als_loss")]
#[pyo3(signature = (indptr, indices, data, users, items, *, regularization, num_threads, user_scale=None, item_scale=None))]
#[allow(clippy::too_many_arguments)]
fn als_loss_py(
    py: Python<'_>,
    indptr: PyReadonlyArray1<'_, i64>,
    indices: PyReadonlyArray1<'_, i32>,
    data: PyReadonlyArray1<'_, f32>,
    users: PyReadonlyArray2<'_, f32>,
    items: PyReadonlyArray2<'_, f32>,
    regularization: f32,
    num_threads: usize,
    user_scale: Option<PyReadonlyArray1<'_, f32>>,
    item_scale: Option<PyReadonlyArray1<'_, f32>>,
) -> PyResult<f64> {
    let user_scale = user_scale
        .as_ref()
        .map(|s| slice1(s, "user_scale"))
        .transpose()?;
    let item_scale = item_scale
        .as_ref()
        .map(|s| slice1(s, "item_scale"))
        .transpose()?;
    let (items_s, n_items, f) = slice2(&items, "items")?;
    let (users_s, _, fu) = slice2(&users, "users")?;
    if fu != f {
        return Err(PyValueError::new_err(format!(
            "users have {fu} factors, items have {f}"
        )));
    }
    let m = csr(&indptr, &indices, &data, n_items)?;
    Ok(py.detach(|| {
        with_threads(num_threads, || {
            let penalty = |row_scale| Penalty {
                lambda: regularization,
                row_scale,
            };
            loss(
                &m,
                users_s,
                items_s,
                f,
                penalty(user_scale),
                penalty(item_scale),
            )
        })
    })??)
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<AlsWorkspace>()?;
    m.add_function(wrap_pyfunction!(als_solve_side_py, m)?)?;
    m.add_function(wrap_pyfunction!(als_loss_py, m)?)?;
    Ok(())
}
