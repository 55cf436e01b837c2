//! Runs a closure on a Rayon pool of the requested size (0 = all cores).
//!
//! Building a pool costs about as much as a small half-step (a few hundred microseconds, measured
//! on MovieLens-100k), so pools are built once per size and kept: the global pool when the size
//! matches it, otherwise a small cache of dedicated pools.

use std::sync::{Arc, Mutex};

use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::error::{CoreError, CoreResult};

/// Dedicated pools kept alive, most recently used last.
static POOLS: Mutex<Vec<(usize, Arc<ThreadPool>)>> = Mutex::new(Vec::new());
/// How many dedicated pools to keep (each holds its threads).
const MAX_POOLS: usize = 4;

fn pool_of(num_threads: usize) -> CoreResult<Arc<ThreadPool>> {
    // A panic while the lock was held cannot leave the vector inconsistent: keep using it.
    let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(k) = pools.iter().position(|(n, _)| *n == num_threads) {
        let entry = pools.remove(k);
        let pool = Arc::clone(&entry.1);
        pools.push(entry);
        return Ok(pool);
    }
    let pool = Arc::new(
        ThreadPoolBuilder::new()
            .num_threads(num_threads)
            .build()
            .map_err(|e| CoreError::Value(format!("could not start {num_threads} threads: {e}")))?,
    );
    if pools.len() == MAX_POOLS {
        pools.remove(0);
    }
    pools.push((num_threads, Arc::clone(&pool)));
    Ok(pool)
}

pub fn with_threads<T: Send>(num_threads: usize, f: impl FnOnce() -> T + Send) -> CoreResult<T> {
    if num_threads == 0 || num_threads == rayon::current_num_threads() {
        return Ok(f());
    }
    Ok(pool_of(num_threads)?.install(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_on_the_requested_number_of_threads() {
        for n in [1usize, 3, 1, 5, 2, 7, 3] {
            assert_eq!(with_threads(n, rayon::current_num_threads).unwrap(), n);
        }
        assert_eq!(
            with_threads(0, rayon::current_num_threads).unwrap(),
            rayon::current_num_threads()
        );
        assert!(POOLS.lock().unwrap().len() <= MAX_POOLS);
    }
}
