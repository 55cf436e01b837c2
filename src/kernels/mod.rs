//! Pure Rust numerics: no pyo3 in here, so `cargo test` exercises them directly.

pub mod als;
pub mod csr;
pub mod dense64;
pub mod pca;
pub mod pool;
pub mod topk;
pub mod vecops;
