//! Runs a closure on a Rayon pool of the requested size (0 = all cores).

use crate::error::{CoreError, CoreResult};

pub fn with_threads<T: Send>(num_threads: usize, f: impl FnOnce() -> T + Send) -> CoreResult<T> {
    if num_threads == 0 {
        return Ok(f());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(num_threads)
        .build()
        .map_err(|e| CoreError::Value(format!("could not start {num_threads} threads: {e}")))?;
    Ok(pool.install(f))
}
