//! One error type for every kernel, converted to a Python exception once, at the boundary.

use pyo3::exceptions::PyValueError;
use pyo3::PyErr;
use std::fmt;

/// Errors the kernels report instead of panicking. All of them mean "the caller passed
/// something inconsistent" and become `ValueError` in Python.
#[derive(Debug, Clone, PartialEq)]
pub enum CoreError {
    /// Arrays whose lengths or shapes do not fit together.
    Shape(String),
    /// A value outside its domain (a negative index, a NaN, a singular system...).
    Value(String),
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreError::Shape(m) | CoreError::Value(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for CoreError {}

impl From<CoreError> for PyErr {
    fn from(e: CoreError) -> PyErr {
        PyValueError::new_err(e.to_string())
    }
}

pub type CoreResult<T> = Result<T, CoreError>;

/// Shorthand used by the kernels' input checks.
pub fn shape_err<T>(msg: impl Into<String>) -> CoreResult<T> {
    Err(CoreError::Shape(msg.into()))
}
