//! Runs a closure on a Rayon pool of the requested size (0 = all cores).
//!
//! Building a pool costs about as much as a small half-step (a few hundred microseconds, measured
//! on MovieLens-100k), so pools are built once per size and kept: the global pool when the size
//! matches it, otherwise a small cache of dedicated pools.
//!
//! Sizes are bounded: at most [`MAX_THREADS`] threads per call (a larger request is an error,
//! never an attempt to start a million threads), and a pool larger than [`cached_limit`] is
//! built for its call only, so idle cached pools hold at most `MAX_POOLS x cached_limit()`
//! threads whatever sizes were asked for.

use std::sync::{Arc, Mutex, OnceLock};

use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::error::{CoreError, CoreResult};

/// The most threads one call may ask for (`num_threads`); the Python side checks the same
/// bound (`rusket._validation.MAX_THREADS`). More threads than cores never make a kernel
/// faster; the bound is a constant, not a multiple of this machine's cores, so that a
/// parameter valid on one machine (a saved model's `num_threads`) is valid on every machine.
pub const MAX_THREADS: usize = 1024;

/// Dedicated pools kept alive, most recently used last.
static POOLS: Mutex<Vec<(usize, Arc<ThreadPool>)>> = Mutex::new(Vec::new());
/// How many dedicated pools to keep (each holds its threads).
const MAX_POOLS: usize = 4;

/// Largest pool kept in the cache: four times the available cores (at least 16).
fn cached_limit() -> usize {
    static LIMIT: OnceLock<usize> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        cores.saturating_mul(4).max(16)
    })
}

fn build(num_threads: usize) -> CoreResult<Arc<ThreadPool>> {
    ThreadPoolBuilder::new()
        .num_threads(num_threads)
        .build()
        .map(Arc::new)
        .map_err(|e| CoreError::Value(format!("could not start {num_threads} threads: {e}")))
}

fn pool_of(num_threads: usize) -> CoreResult<Arc<ThreadPool>> {
    if num_threads > cached_limit() {
        return build(num_threads);
    }
    // A panic while the lock was held cannot leave the vector inconsistent: keep using it.
    let mut pools = POOLS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(k) = pools.iter().position(|(n, _)| *n == num_threads) {
        let entry = pools.remove(k);
        let pool = Arc::clone(&entry.1);
        pools.push(entry);
        return Ok(pool);
    }
    let pool = build(num_threads)?;
    if pools.len() == MAX_POOLS {
        pools.remove(0);
    }
    pools.push((num_threads, Arc::clone(&pool)));
    Ok(pool)
}

/// `num_threads` itself when it is at most [`MAX_THREADS`], else an error naming the bound.
pub fn check_threads(num_threads: usize) -> CoreResult<usize> {
    if num_threads > MAX_THREADS {
        return Err(CoreError::Value(format!(
            "num_threads must be at most {MAX_THREADS} (0 = all cores), got {num_threads}; \
             more threads than cores only slow the kernels down"
        )));
    }
    Ok(num_threads)
}

pub fn with_threads<T: Send>(num_threads: usize, f: impl FnOnce() -> T + Send) -> CoreResult<T> {
    check_threads(num_threads)?;
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

    #[test]
    fn refuses_more_than_max_threads_without_starting_any() {
        let err = with_threads(MAX_THREADS + 1, || 0u8).unwrap_err();
        assert!(err.to_string().contains("at most 1024"), "{err}");
        assert!(with_threads(1_000_000, || ()).is_err());
        assert!(with_threads(usize::MAX, || ()).is_err());
    }

    #[test]
    fn pools_above_the_cached_limit_are_not_kept() {
        let big = cached_limit() + 1;
        assert_eq!(with_threads(big, rayon::current_num_threads).unwrap(), big);
        let pools = POOLS.lock().unwrap();
        assert!(pools.iter().all(|(n, _)| *n <= cached_limit()));
    }
}
