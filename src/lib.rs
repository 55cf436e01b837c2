//! rusket's native core. This file only registers the Python-facing functions;
//! the numerics live in `kernels` (pure Rust, no pyo3) and the conversions in `bindings`.

pub mod bindings;
pub mod error;
pub mod kernels;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    bindings::als::register(m)?;
    bindings::topk::register(m)?;
    bindings::pca::register(m)?;
    Ok(())
}
