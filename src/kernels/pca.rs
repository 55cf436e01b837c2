//! Principal component analysis of a dense row-major `n x d` matrix `X`, in f64.
//!
//! Two solvers, both working on the centred matrix `A = X − 1μᵀ` without ever writing it out
//! whole (each block of rows is centred into a small buffer when it is read):
//!
//! * [`Solver::Covariance`] (exact). When `d <= n` it forms the covariance `AᵀA / (n−1)` and
//!   takes its symmetric eigendecomposition `V Λ Vᵀ`: the eigenvalues are the explained
//!   variances and the eigenvectors the components. Centring before forming the product avoids
//!   the cancellation of `XᵀX − n μμᵀ`. Two kernels form it:
//!   - f64 (f64 input, and f32 input with few rows or a wide spectrum): one pass for the column
//!     means, a second that centres blocks of rows in f64 and accumulates the lower triangle of
//!     `AᵀA` with faer's triangular product.
//!   - f32 (f32 input, `n >= F32_MIN_ROWS`): usually one pass. A shift `s` (the mean of ~1,000
//!     evenly spaced rows, rounded to f32) stands in for μ; blocks of about `√n` (at most 256)
//!     rows of `x − s` are rounded to f32 and multiplied in f32 (twice the speed of f64 on
//!     AVX2), and each block's product and column sums are added into f64. With
//!     `m = mean(x − s)`: `AᵀA = Σ(x − s)(x − s)ᵀ − n m mᵀ` and `μ = s + m`. If the sample
//!     was not representative (`m` large against the spread), a second pass repeats the sums
//!     with `s = μ`. The f32 products err by about `ε₃₂ λ₁` at most in each eigenvalue, so the
//!     f64 kernel redoes fits whose needed eigenvalues are below 1% of the largest.
//!
//!   When `d > n` (wide data, where the `d x d` covariance would be large) it takes the thin
//!   SVD of the centred `n x d` matrix instead, which also yields a complete orthonormal set of
//!   components.
//! * [`Solver::Randomized`]: randomized SVD after Halko, Martinsson & Tropp (SIAM Review
//!   2011): a seeded Gaussian `Ω` (`d x l`, `l = k + oversamples`), power (subspace)
//!   iterations `V ← qr(Aᵀ(A V))` that re-orthonormalise after every product, then a
//!   Rayleigh–Ritz step on `A V` (eigendecomposition of the small `l x l` matrix `VᵀAᵀAV`).
//!   Only `d x l` and `l x l` matrices are factored; each iteration is one pass over `X` that
//!   forms `Aᵀ(A V)` block by block (`4 n d l` flops): with the pass for the means,
//!   `n_iter + 3` passes in all.
//!
//! Both report the total variance of the data (`‖A‖²_F / (n−1)`), so explained-variance ratios
//! are relative to all of the variance, also when only `k` components were computed.
//!
//! Rows are cut into at most [`MAX_CHUNKS`] contiguous chunks whose boundaries depend on `n`
//! and `d` only; every chunk sums its rows in order and the chunk partials are added in chunk
//! order, so the result does not depend on the number of threads. The dense factorisations
//! (eigendecompositions of `d x d` and `l x l` matrices, QR of `d x l`, and the thin SVD of the
//! wide exact path) come from faer and run sequentially (`Par::Seq`): faer's parallel versions
//! round differently with different thread counts. Only the wide exact SVD is large; wide data
//! with few components should use the randomized solver (what `"auto"` picks in Python).
//!
//! Signs follow scikit-learn's rule for PCA (`svd_flip(u_based_decision=False)`): in each
//! component, the entry of largest magnitude (the first one on ties) is made positive.

use faer::diag::Diag;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::matmul::{matmul, triangular, triangular::BlockStructure};
use faer::linalg::{householder, qr, svd};
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rayon::prelude::*;
use std::ops::Range;

use crate::error::{shape_err, CoreError, CoreResult};
use crate::kernels::dense64::eigh;

/// Rows centred into one f64 buffer at a time.
const BLOCK_ROWS: usize = 512;
/// Upper bound on the number of row chunks processed in parallel (and so on per-chunk partials).
const MAX_CHUNKS: usize = 64;
/// Memory allowed for the per-chunk partial sums of one pass, in f64 values (256 MiB).
const PARTIALS_BUDGET: usize = 1 << 25;

/// Input element types: f32 and f64, both read as f64 (f32 also has its own exact kernel).
pub trait Element: Copy + Send + Sync + 'static {
    fn to_f64(self) -> f64;
    /// The input itself when it is f32: selects the f32 covariance kernel.
    fn as_f32(_x: &[Self]) -> Option<&[f32]> {
        None
    }
}

impl Element for f32 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn as_f32(x: &[f32]) -> Option<&[f32]> {
        Some(x)
    }
}

impl Element for f64 {
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Solver {
    /// Exact: covariance eigendecomposition (`d <= n`) or thin SVD of the centred data.
    Covariance,
    /// Randomized SVD with `oversamples` extra directions and `n_iter` power iterations.
    Randomized {
        oversamples: usize,
        n_iter: usize,
        seed: u64,
    },
}

impl Solver {
    /// Parses the solver name used by the Python side. `"auto"` is resolved in Python.
    pub fn parse(name: &str, oversamples: usize, n_iter: usize, seed: u64) -> CoreResult<Self> {
        match name {
            "full" | "covariance_eigh" | "covariance" => Ok(Solver::Covariance),
            "randomized" => Ok(Solver::Randomized {
                oversamples,
                n_iter,
                seed,
            }),
            other => Err(CoreError::Value(format!(
                "svd_solver must be \"full\", \"covariance_eigh\" or \"randomized\"; got {other:?}"
            ))),
        }
    }
}

/// What a fit returns; matrices are row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct PcaFit {
    /// Column means, length `d`.
    pub mean: Vec<f64>,
    /// `r x d` components (orthonormal rows), by decreasing variance.
    pub components: Vec<f64>,
    /// Variance along each component (`s² / (n−1)`), length `r`.
    pub explained_variance: Vec<f64>,
    /// Singular values of the centred data, length `r`.
    pub singular_values: Vec<f64>,
    /// Total variance of the data, `Σ_j var(X[:, j])` with `ddof = 1`.
    pub total_variance: f64,
}

impl PcaFit {
    /// A fit from the singular values of the centred `n`-row data (variances `s² / (n−1)`).
    fn from_singular_values(
        mean: Vec<f64>,
        components: Vec<f64>,
        singular_values: Vec<f64>,
        n: usize,
        total_variance: f64,
    ) -> Self {
        let explained_variance = singular_values
            .iter()
            .map(|s| s * s / (n - 1) as f64)
            .collect();
        Self {
            mean,
            components,
            explained_variance,
            singular_values,
            total_variance,
        }
    }
}

impl PcaFit {
    /// Number of components computed.
    pub fn n_components(&self) -> usize {
        self.explained_variance.len()
    }
}

/// Fits PCA to the row-major `n x d` matrix `x`.
///
/// The exact solver returns all `min(n, d)` components (the caller truncates; `n_components`,
/// 0 meaning all, only says how many must be accurate, see [`F32_MIN_EIGEN_RATIO`]); the
/// randomized one returns `n_components` of them (`1 <= n_components <= min(n, d)`).
pub fn fit<T: Element>(
    x: &[T],
    n: usize,
    d: usize,
    n_components: usize,
    solver: Solver,
) -> CoreResult<PcaFit> {
    if n < 2 {
        return shape_err(format!("PCA needs at least 2 samples (rows); got {n}"));
    }
    if d == 0 {
        return shape_err("PCA needs at least 1 feature (column); got 0");
    }
    if x.len() != n * d {
        return shape_err(format!(
            "X has {} values, expected {n} rows x {d} columns",
            x.len()
        ));
    }
    let r = n.min(d);
    if let Solver::Randomized { oversamples, .. } = solver {
        if n_components == 0 || n_components > r {
            return Err(CoreError::Value(format!(
                "n_components must be between 1 and min(n_samples, n_features)={r}; \
                 got {n_components}"
            )));
        }
        // The subspace has min(n_components + n_oversamples, r) directions; a sum that wraps
        // around would silently give an empty one.
        if n_components.checked_add(oversamples).is_none() {
            return Err(CoreError::Value(format!(
                "n_components + n_oversamples overflows ({n_components} + {oversamples}); \
                 more than min(n_samples, n_features)={r} directions in all add nothing"
            )));
        }
    }
    let mut out = match solver {
        Solver::Covariance if d <= n => covariance_eigh(x, n, d, n_components),
        Solver::Covariance => centred_svd(x, n, d, column_means(x, n, d)?),
        Solver::Randomized {
            oversamples,
            n_iter,
            seed,
        } => randomized(x, n, d, n_components, oversamples, n_iter, seed),
    }?;
    // Last guard: no NaN or infinity ever leaves as a "result" (the checks above catch the
    // known causes with a more precise message).
    let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
    if !(finite(&out.mean)
        && finite(&out.components)
        && finite(&out.explained_variance)
        && finite(&out.singular_values)
        && out.total_variance.is_finite())
    {
        return overflow_err(x, "the fit is not finite");
    }
    flip_signs(&mut out.components, d);
    Ok(out)
}

/// Contiguous row ranges, a function of `n` and the partial size only (never of the threads).
fn chunks(n: usize, partial_len: usize) -> Vec<Range<usize>> {
    let by_rows = n.div_ceil(BLOCK_ROWS);
    let by_memory = (PARTIALS_BUDGET / partial_len.max(1)).max(1);
    let c = by_rows.min(by_memory).clamp(1, MAX_CHUNKS);
    let per = n.div_ceil(c);
    (0..c)
        .map(|i| (i * per).min(n)..((i + 1) * per).min(n))
        .filter(|r| !r.is_empty())
        .collect()
}

/// Adds equally long partials in the given order.
fn sum_in_order(parts: Vec<Vec<f64>>, len: usize) -> Vec<f64> {
    let mut total = vec![0.0f64; len];
    for p in parts {
        for (t, v) in total.iter_mut().zip(&p) {
            *t += v;
        }
    }
    total
}

/// Column means in f64; fails on NaN or infinite values (a non-finite sum means one of them).
fn column_means<T: Element>(x: &[T], n: usize, d: usize) -> CoreResult<Vec<f64>> {
    let parts: Vec<Vec<f64>> = chunks(n, d)
        .into_par_iter()
        .map(|rows| {
            let mut s = vec![0.0f64; d];
            for row in x[rows.start * d..rows.end * d].chunks_exact(d) {
                for (sj, v) in s.iter_mut().zip(row) {
                    *sj += v.to_f64();
                }
            }
            s
        })
        .collect();
    let mut mean = sum_in_order(parts, d);
    if mean.iter().any(|v| !v.is_finite()) {
        return overflow_err(x, "the column sums overflow");
    }
    let inv = 1.0 / n as f64;
    mean.iter_mut().for_each(|m| *m *= inv);
    Ok(mean)
}

/// Writes rows `rows` of `x`, centred, into `buf` (row-major, i.e. a column-major `d x len`
/// matrix: the transposed block `A_blockᵀ`, see [`block_view`]).
#[inline]
fn centre_into<T: Element>(
    x: &[T],
    d: usize,
    mean: &[f64],
    rows: Range<usize>,
    buf: &mut Vec<f64>,
) {
    buf.clear();
    buf.reserve(rows.len() * d);
    for row in x[rows.start * d..rows.end * d].chunks_exact(d) {
        buf.extend(row.iter().zip(mean).map(|(v, m)| v.to_f64() - m));
    }
}

/// The centred block in `buf` as the column-major `d x len` matrix `A_blockᵀ`.
#[inline]
fn block_view(buf: &[f64], d: usize) -> MatRef<'_, f64> {
    MatRef::from_column_major_slice(buf, d, buf.len() / d)
}

/// Sub-blocks of at most `BLOCK_ROWS` rows of a chunk.
fn blocks(rows: Range<usize>) -> impl Iterator<Item = Range<usize>> {
    let end = rows.end;
    rows.step_by(BLOCK_ROWS)
        .map(move |s| s..(s + BLOCK_ROWS).min(end))
}

/// `scale · AᵀA` (full, symmetric, column-major `d x d`) in f64.
fn centred_gram<T: Element>(x: &[T], n: usize, d: usize, mean: &[f64], scale: f64) -> Mat<f64> {
    let parts: Vec<Vec<f64>> = chunks(n, d * d)
        .into_par_iter()
        .map(|rows| {
            let mut g = vec![0.0f64; d * d];
            let mut buf = Vec::new();
            for b in blocks(rows) {
                centre_into(x, d, mean, b, &mut buf);
                let at = block_view(&buf, d);
                let gm = MatMut::from_column_major_slice_mut(&mut g, d, d);
                // Only the lower triangle: half the work of a full product.
                triangular::matmul(
                    gm,
                    BlockStructure::TriangularLower,
                    Accum::Add,
                    at,
                    BlockStructure::Rectangular,
                    at.transpose(),
                    BlockStructure::Rectangular,
                    1.0,
                    Par::Seq,
                );
            }
            g
        })
        .collect();
    let g = sum_in_order(parts, d * d);
    Mat::from_fn(d, d, |i, j| {
        scale * if i >= j { g[i + j * d] } else { g[j + i * d] }
    })
}

/// Rows of one f32 block in [`covariance_f32`]: about `√n`, a multiple of 8 in `16..=256`.
///
/// Each block's Gram matrix is summed in f32 (in the registers of faer's kernel) before it is
/// added into f64, so the error grows with the block: the block errors, random, add up to
/// about `ε₃₂ · B / √n · λ₁` in the covariance (measured: the error in every eigenvalue grows
/// linearly with `B`). `B ≈ √n` keeps it below `ε₃₂ λ₁`; 256 rows (256 KiB for `d = 256`, in
/// L2) is where faer's f32 kernel reaches its full speed, 128 is 10-20% slower.
fn block_rows_f32(n: usize) -> usize {
    (n.isqrt() / 8 * 8).clamp(16, 256)
}
/// Fewer f32 rows than this go through the f64 kernel: fast anyway, and exact. The f32 kernel
/// rounds every centred value to f32, an error that only averages out over many rows.
const F32_MIN_ROWS: usize = 4096;
/// The f32 kernel's fit is kept when the smallest needed explained variance is at least this
/// share of the largest; else the f64 kernel redoes it. The f32 block products err by up to
/// about `0.35 ε₃₂ λ₁ ≈ 2e-8 λ₁` in every eigenvalue (the worst of 27 random spectra spanning
/// 1e6..1e10, n = 4096..200,000, d = 8..128; typically ten times less), so this keeps the
/// relative error of the needed ones at 2e-6 or below (1e-7 typically), like scikit-learn's
/// float32 SVD (its `full` solver).
const F32_MIN_EIGEN_RATIO: f64 = 1e-2;
/// Rows sampled (evenly spaced) for the shift of the one-pass f32 covariance.
const SHIFT_SAMPLE: usize = 1024;
/// The shift is accepted when every column's mean of `x − s` satisfies
/// `m_j² <= SHIFT_TOL · mean((x_j − s_j)²)`, i.e. when it inflates the rounding error of the
/// f32 products by at most a factor `1 + SHIFT_TOL` (else a second pass uses the exact mean).
const SHIFT_TOL: f64 = 1.0 / 16.0;
/// Fewest blocks per chunk of the f32 pass: every chunk fills a fresh `d x d` f64 partial.
const MIN_BLOCKS_PER_CHUNK: usize = 16;

fn nonfinite_err<T>() -> CoreResult<T> {
    Err(CoreError::Value(
        "X contains NaN or infinity (or values too large to sum); \
         remove or impute them before fitting"
            .into(),
    ))
}

/// The error for a non-finite intermediate (`what` says which): NaN or infinity in `x` itself, or finite
/// values so large (near the float64 limit) that sums or squares of them overflow.
fn overflow_err<T, E: Element>(x: &[E], what: &str) -> CoreResult<T> {
    let mut largest = 0.0f64;
    for v in x {
        let v = v.to_f64();
        if !v.is_finite() {
            return nonfinite_err();
        }
        largest = largest.max(v.abs());
    }
    Err(CoreError::Value(format!(
        "X's values are too large for float64 arithmetic (largest |x| = {largest:.3e}): {what}. \
         Rescale X first, e.g. X / np.abs(X).max() (the components do \
         not change; the variances scale with the square of the factor)"
    )))
}

/// Row ranges made of whole blocks of `block` rows, a function of `n` and `d` only.
fn block_chunks(n: usize, d: usize, block: usize) -> Vec<Range<usize>> {
    let nb = n.div_ceil(block);
    let by_memory = (PARTIALS_BUDGET / (d * d).max(1)).max(1);
    let c = (nb / MIN_BLOCKS_PER_CHUNK)
        .min(by_memory)
        .clamp(1, MAX_CHUNKS);
    let per = nb.div_ceil(c) * block;
    (0..c)
        .map(|i| (i * per).min(n)..((i + 1) * per).min(n))
        .filter(|r| !r.is_empty())
        .collect()
}

/// One pass over f32 rows: `Σ (x − s)` and the lower triangle of `Σ (x − s)(x − s)ᵀ`
/// (column-major `d x d`), both in f64. The shift `s` is an f32 vector, so `x − s` is exact in
/// f64: the sums are those of the exact differences, and the products use them rounded once
/// to f32. Every block of shifted rows is multiplied in f32 and its products added into f64.
fn shifted_sums_f32(x: &[f32], n: usize, d: usize, shift: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let block = block_rows_f32(n);
    let parts: Vec<(Vec<f64>, Vec<f64>)> = block_chunks(n, d, block)
        .into_par_iter()
        .map(|rows| {
            let mut sum = vec![0.0f64; d];
            let mut g = vec![0.0f64; d * d];
            let mut gb = vec![0.0f32; d * d];
            let mut buf = vec![0.0f32; block * d];
            let end = rows.end;
            for start in rows.step_by(block) {
                let len = (end - start).min(block);
                let src = &x[start * d..(start + len) * d];
                for (row, out) in src.chunks_exact(d).zip(buf.chunks_exact_mut(d)) {
                    for (((o, v), s), t) in out.iter_mut().zip(row).zip(shift).zip(sum.iter_mut()) {
                        // Exact in f64 (both are f32), so the sums are those of the true
                        // differences; rounded once to f32 for the product.
                        let a = *v as f64 - *s as f64;
                        *t += a;
                        *o = a as f32;
                    }
                }
                let at = MatRef::from_column_major_slice(&buf[..len * d], d, len);
                let gm = MatMut::from_column_major_slice_mut(&mut gb, d, d);
                triangular::matmul(
                    gm,
                    BlockStructure::TriangularLower,
                    Accum::Replace,
                    at,
                    BlockStructure::Rectangular,
                    at.transpose(),
                    BlockStructure::Rectangular,
                    1.0f32,
                    Par::Seq,
                );
                for j in 0..d {
                    let col = j * d + j..(j + 1) * d;
                    for (a, b) in g[col.clone()].iter_mut().zip(&gb[col]) {
                        *a += *b as f64;
                    }
                }
            }
            (sum, g)
        })
        .collect();
    let (sums, grams): (Vec<_>, Vec<_>) = parts.into_iter().unzip();
    (sum_in_order(sums, d), sum_in_order(grams, d * d))
}

/// Column means and covariance (full, symmetric) of f32 data in one pass in the common case.
///
/// With a shift `s` close to the mean μ (the mean of [`SHIFT_SAMPLE`] evenly spaced rows), one
/// pass accumulates `Σ(x − s)` and `Σ(x − s)(x − s)ᵀ`; with `m = mean(x − s)`,
/// `C = [Σ(x − s)(x − s)ᵀ − n m mᵀ] / (n − 1)` and `μ = s + m`. The correction cancels only
/// `m_j²` out of `mean((x_j − s_j)²) = var_j + m_j²`, so the f32 rounding error stays that of
/// centred data as long as `m` is small; if it is not (data whose sampled rows are not
/// representative), a second pass repeats the sums with `s = μ` (a two-pass scheme).
/// Also returns the number of passes over `x` (1 or 2).
fn covariance_f32(x: &[f32], n: usize, d: usize) -> CoreResult<(Vec<f64>, Mat<f64>, usize)> {
    let stride = n / n.min(SHIFT_SAMPLE);
    let count = n / stride;
    let mut shift = vec![0.0f64; d];
    for i in 0..count {
        let row = &x[i * stride * d..(i * stride + 1) * d];
        shift.iter_mut().zip(row).for_each(|(s, v)| *s += *v as f64);
    }
    shift.iter_mut().for_each(|s| *s /= count as f64);
    if shift.iter().any(|v| !v.is_finite()) {
        return nonfinite_err();
    }
    let nf = n as f64;
    for pass in 0.. {
        // The shift actually used is the f32 one: μ = s + m holds for it exactly.
        let shift32: Vec<f32> = shift.iter().map(|v| *v as f32).collect();
        shift = shift32.iter().map(|v| *v as f64).collect();
        let (sum, g) = shifted_sums_f32(x, n, d, &shift32);
        if sum.iter().chain(&g).any(|v| !v.is_finite()) {
            return nonfinite_err();
        }
        let m: Vec<f64> = sum.iter().map(|v| v / nf).collect();
        let ok = (0..d).all(|j| m[j] * m[j] <= SHIFT_TOL * g[j * d + j] / nf);
        shift.iter_mut().zip(&m).for_each(|(s, v)| *s += v);
        // The second pass shifts by the mean itself: accepted whatever its m.
        if ok || pass == 1 {
            let scale = 1.0 / (n - 1) as f64;
            let c = Mat::from_fn(d, d, |i, j| {
                let (i, j) = if i >= j { (i, j) } else { (j, i) };
                scale * (g[i + j * d] - nf * m[i] * m[j])
            });
            return Ok((shift, c, pass + 1));
        }
    }
    unreachable!("the second pass always returns")
}

/// The f32 kernel's covariance, when the input is float32 with enough rows and finite sums
/// (`None`: use the f64 kernel).
fn covariance_f32_if_fit<T: Element>(x: &[T], n: usize, d: usize) -> Option<(Vec<f64>, Mat<f64>)> {
    let x32 = T::as_f32(x).filter(|_| n >= F32_MIN_ROWS)?;
    covariance_f32(x32, n, d)
        .ok()
        .map(|(mean, c, _passes)| (mean, c))
}

/// Whether the f32 kernel resolved the smallest of the first `needed` (0 = all) variances well.
fn f32_fit_is_accurate(explained_variance: &[f64], needed: usize) -> bool {
    let k = if needed == 0 {
        explained_variance.len()
    } else {
        needed.min(explained_variance.len())
    };
    k == 0 || explained_variance[k - 1] >= F32_MIN_EIGEN_RATIO * explained_variance[0]
}

fn covariance_eigh<T: Element>(x: &[T], n: usize, d: usize, needed: usize) -> CoreResult<PcaFit> {
    fit_on_covariance(x, n, d, needed, |c, mean| eigen_fit(c, mean, n, d))
}

/// Runs `solve` on the covariance `AᵀA / (n − 1)` and the column means of `x`. float32 input
/// with enough rows goes through the f32 kernel first; on non-finite sums (NaN, infinity, or
/// values whose f32 squares overflow) the f64 kernel takes over (it reports the first two and
/// computes the third), and also when the fit's smallest needed variance (of the first
/// `needed`, 0 = all) is too small for the f32 products' error, about 0.35 ε₃₂ λ₁ (measured).
fn fit_on_covariance<T: Element>(
    x: &[T],
    n: usize,
    d: usize,
    needed: usize,
    solve: impl Fn(Mat<f64>, Vec<f64>) -> CoreResult<PcaFit>,
) -> CoreResult<PcaFit> {
    if let Some((mean, c)) = covariance_f32_if_fit(x, n, d) {
        let fit = solve(c, mean)?;
        if f32_fit_is_accurate(&fit.explained_variance, needed) {
            return Ok(fit);
        }
    }
    let mean = column_means(x, n, d)?;
    let c = centred_gram(x, n, d, &mean, 1.0 / (n - 1) as f64);
    if c.col_iter()
        .flat_map(|col| col.iter())
        .any(|v| !v.is_finite())
    {
        // Finite data whose squared deviations overflow: the variances are not representable,
        // and an eigendecomposition of infinities would give NaN components.
        return overflow_err(x, "the covariance (sums of squared deviations) overflows");
    }
    solve(c, mean)
}

/// PCA from the covariance matrix `c`: eigenvalues decreasing, eigenvectors as components.
fn eigen_fit(c: Mat<f64>, mean: Vec<f64>, n: usize, d: usize) -> CoreResult<PcaFit> {
    let total_variance: f64 = (0..d).map(|j| c[(j, j)]).sum();
    let (u, s) = eigh(c.as_ref())?;
    // faer sorts eigenvalues increasingly; PCA wants them decreasing. Rounding can leave the
    // eigenvalues of a positive semi-definite matrix slightly negative: clip them at zero.
    let mut components = Vec::with_capacity(d * d);
    let mut explained_variance = Vec::with_capacity(d);
    for k in (0..d).rev() {
        explained_variance.push(s[k].max(0.0));
        components.extend((0..d).map(|j| u[(j, k)]));
    }
    let singular_values = explained_variance
        .iter()
        .map(|v| (v * (n - 1) as f64).sqrt())
        .collect();
    Ok(PcaFit {
        mean,
        components,
        explained_variance,
        singular_values,
        total_variance,
    })
}

/// Exact PCA of wide data (`d > n`): thin SVD of the centred `n x d` matrix.
fn centred_svd<T: Element>(x: &[T], n: usize, d: usize, mean: Vec<f64>) -> CoreResult<PcaFit> {
    let mut buf = Vec::new();
    // Column-major `d x n`: the transposed centred matrix, `Aᵀ = V S Uᵀ`.
    centre_into(x, d, &mean, 0..n, &mut buf);
    let total_variance = buf.iter().map(|v| v * v).sum::<f64>() / (n - 1) as f64;
    if !total_variance.is_finite() {
        return overflow_err(x, "the sum of squared deviations overflows");
    }
    let (v, s) = thin_svd(block_view(&buf, d))?;
    let r = n.min(d);
    let mut components = Vec::with_capacity(r * d);
    for k in 0..r {
        components.extend((0..d).map(|j| v[(j, k)]));
    }
    let singular_values: Vec<f64> = (0..r).map(|k| s[k]).collect();
    Ok(PcaFit::from_singular_values(
        mean,
        components,
        singular_values,
        n,
        total_variance,
    ))
}

/// `Z = Aᵀ(A V)` (column-major `d x l`) for a column-major `d x l` matrix `V`, in one pass over
/// the rows: every block computes `Y_b = A_b V` and adds `A_bᵀ Y_b`, so `A V` is never stored.
/// Also returns `‖A‖²_F`.
fn gram_times<T: Element>(
    x: &[T],
    n: usize,
    d: usize,
    mean: &[f64],
    v: MatRef<'_, f64>,
) -> (Mat<f64>, f64) {
    let l = v.ncols();
    let parts: Vec<(Vec<f64>, f64)> = chunks(n, d * l)
        .into_par_iter()
        .map(|rows| {
            let mut z = vec![0.0f64; d * l];
            let mut ss = 0.0f64;
            let mut buf = Vec::new();
            let mut yt = vec![0.0f64; l * BLOCK_ROWS];
            for b in blocks(rows) {
                centre_into(x, d, mean, b.clone(), &mut buf);
                ss += buf.iter().map(|v| v * v).sum::<f64>();
                let at = block_view(&buf, d);
                // Y_bᵀ (l x B) = Vᵀ (l x d) · A_bᵀ (d x B)
                let ytm = MatMut::from_column_major_slice_mut(&mut yt[..l * b.len()], l, b.len());
                matmul(ytm, Accum::Replace, v.transpose(), at, 1.0, Par::Seq);
                // Z += A_bᵀ (d x B) · Y_b (B x l)
                let zm = MatMut::from_column_major_slice_mut(&mut z, d, l);
                let ytr = MatRef::from_column_major_slice(&yt[..l * b.len()], l, b.len());
                matmul(zm, Accum::Add, at, ytr.transpose(), 1.0, Par::Seq);
            }
            (z, ss)
        })
        .collect();
    let sumsq = parts.iter().map(|p| p.1).sum();
    let z = sum_in_order(parts.into_iter().map(|p| p.0).collect(), d * l);
    (Mat::from_fn(d, l, |i, j| z[i + j * d]), sumsq)
}

/// Thin SVD `m = U S Vᵀ`: `(U, S)`, singular values decreasing.
fn thin_svd(m: MatRef<'_, f64>) -> CoreResult<(Mat<f64>, Vec<f64>)> {
    let (r, c) = m.shape();
    let size = r.min(c);
    let mut u = Mat::zeros(r, size);
    let mut v = Mat::zeros(c, size);
    let mut s = Diag::zeros(size);
    let thin = svd::ComputeSvdVectors::Thin;
    let req = svd::svd_scratch::<f64>(r, c, thin, thin, Par::Seq, Default::default());
    let mut mem = MemBuffer::new(req);
    svd::svd(
        m,
        s.as_mut(),
        Some(u.as_mut()),
        Some(v.as_mut()),
        Par::Seq,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map_err(|e| CoreError::Value(format!("SVD did not converge: {e:?}")))?;
    let s = (0..size).map(|i| s.column_vector()[i]).collect();
    Ok((u, s))
}

/// An orthonormal basis (thin Q of a sequential Householder QR) of the columns of `m`
/// (`rows >= cols`).
fn orthonormal(m: MatRef<'_, f64>) -> Mat<f64> {
    let (r, c) = m.shape();
    let size = r.min(c);
    let mut a = m.to_owned();
    let bs = qr::no_pivoting::factor::recommended_block_size::<f64>(r, c);
    let mut coeff = Mat::zeros(bs, size);
    let req =
        qr::no_pivoting::factor::qr_in_place_scratch::<f64>(r, c, bs, Par::Seq, Default::default());
    let mut mem = MemBuffer::new(req);
    qr::no_pivoting::factor::qr_in_place(
        a.as_mut(),
        coeff.as_mut(),
        Par::Seq,
        MemStack::new(&mut mem),
        Default::default(),
    );
    // The Householder basis is the unit lower-trapezoidal part of `a`; clear R out of it.
    for j in 0..size {
        a[(j, j)] = 1.0;
        for i in 0..j {
            a[(i, j)] = 0.0;
        }
    }
    let mut q = Mat::identity(r, size);
    let req = householder::apply_block_householder_sequence_on_the_left_in_place_scratch::<f64>(
        r, bs, size,
    );
    let mut mem = MemBuffer::new(req);
    householder::apply_block_householder_sequence_on_the_left_in_place_with_conj(
        a.as_ref().subcols(0, size),
        coeff.as_ref(),
        faer::Conj::No,
        q.as_mut(),
        Par::Seq,
        MemStack::new(&mut mem),
    );
    q
}

#[allow(clippy::too_many_arguments)]
fn randomized<T: Element>(
    x: &[T],
    n: usize,
    d: usize,
    k: usize,
    oversamples: usize,
    n_iter: usize,
    seed: u64,
) -> CoreResult<PcaFit> {
    let l = k.saturating_add(oversamples).min(n.min(d));
    // Tall data: forming AᵀA once (`n d²` flops, the float32 kernel for float32 input) costs
    // less than the `n_iter + 2` passes of `4 n d l` flops each; the iteration is then the same
    // on the d x d matrix, with the same random start.
    let passes_cost = n_iter.saturating_add(2).saturating_mul(4).saturating_mul(l);
    if d <= n && d <= GRAM_MAX_D && d <= passes_cost {
        return fit_on_covariance(x, n, d, k, |c, mean| {
            randomized_on_gram(c, mean, n, d, k, l, n_iter, seed)
        });
    }
    let mean = column_means(x, n, d)?;
    let mut rng = Rng::new(seed);
    let omega = Mat::from_fn(d, l, |_, _| rng.normal());
    // Subspace iteration on AᵀA: V ← qr(Aᵀ(A V)), re-orthonormalised after every product.
    // After `n_iter + 1` steps V spans (AᵀA)^(n_iter+1) Ω, the row space Halko's scheme with
    // `n_iter` power iterations projects on (B = QᵀA with Q = orth((AAᵀ)^n_iter A Ω)). Only
    // the small d x l side is factored, so no QR of a tall n x l matrix is needed.
    let mut v = orthonormal(omega.as_ref());
    let mut total_variance = 0.0;
    for step in 0..=n_iter {
        let (z, sumsq) = gram_times(x, n, d, &mean, v.as_ref());
        if step == 0 {
            total_variance = sumsq / (n - 1) as f64;
            if !total_variance.is_finite() {
                return overflow_err(x, "the sum of squared deviations overflows");
            }
        }
        if z.col_iter()
            .flat_map(|col| col.iter())
            .any(|v| !v.is_finite())
        {
            return overflow_err(x, "a product with the centred data overflows");
        }
        v = orthonormal(z.as_ref());
    }
    let (z, _) = gram_times(x, n, d, &mean, v.as_ref());
    let (components, singular_values) = rayleigh_ritz(v.as_ref(), z.as_ref(), k, 1.0)?;
    Ok(PcaFit::from_singular_values(
        mean,
        components,
        singular_values,
        n,
        total_variance,
    ))
}

/// Largest `d` for which the randomized solver may form the `d x d` covariance (8·d² bytes).
const GRAM_MAX_D: usize = 2048;

/// The randomized solver's subspace iteration on the covariance `c = AᵀA / (n − 1)`.
#[allow(clippy::too_many_arguments)]
fn randomized_on_gram(
    c: Mat<f64>,
    mean: Vec<f64>,
    n: usize,
    d: usize,
    k: usize,
    l: usize,
    n_iter: usize,
    seed: u64,
) -> CoreResult<PcaFit> {
    let total_variance: f64 = (0..d).map(|j| c[(j, j)]).sum();
    let mut rng = Rng::new(seed);
    let omega = Mat::from_fn(d, l, |_, _| rng.normal());
    let mut v = orthonormal(omega.as_ref());
    let mut z = Mat::zeros(d, l);
    for _ in 0..=n_iter {
        matmul(
            z.as_mut(),
            Accum::Replace,
            c.as_ref(),
            v.as_ref(),
            1.0,
            Par::Seq,
        );
        v = orthonormal(z.as_ref());
    }
    matmul(
        z.as_mut(),
        Accum::Replace,
        c.as_ref(),
        v.as_ref(),
        1.0,
        Par::Seq,
    );
    let (components, singular_values) = rayleigh_ritz(v.as_ref(), z.as_ref(), k, (n - 1) as f64)?;
    Ok(PcaFit::from_singular_values(
        mean,
        components,
        singular_values,
        n,
        total_variance,
    ))
}

/// Rayleigh–Ritz on span(V) given `Z = M V` for `M = AᵀA / scale`: with `VᵀZ = W Λ Wᵀ`, the
/// singular values of `A` on span(V) are `(scale Λ)^½` and the right singular vectors are the
/// columns of `V W`. Returns the `k` leading components (row-major `k x d`) and singular values.
fn rayleigh_ritz(
    v: MatRef<'_, f64>,
    z: MatRef<'_, f64>,
    k: usize,
    scale: f64,
) -> CoreResult<(Vec<f64>, Vec<f64>)> {
    let (d, l) = (v.nrows(), v.ncols());
    let mut g = Mat::zeros(l, l);
    matmul(g.as_mut(), Accum::Replace, v.transpose(), z, 1.0, Par::Seq);
    let g = Mat::from_fn(l, l, |i, j| 0.5 * (g[(i, j)] + g[(j, i)]));
    let (w, lam) = eigh(g.as_ref())?;
    let mut components = Vec::with_capacity(k * d);
    let mut singular_values = Vec::with_capacity(k);
    for c in (l - k..l).rev() {
        singular_values.push((scale * lam[c]).max(0.0).sqrt());
        components.extend((0..d).map(|j| (0..l).map(|t| v[(j, t)] * w[(t, c)]).sum::<f64>()));
    }
    Ok((components, singular_values))
}

/// scikit-learn's sign rule: the largest-magnitude entry of each component (first on ties) is
/// positive.
fn flip_signs(components: &mut [f64], d: usize) {
    for row in components.chunks_exact_mut(d) {
        let mut best = 0;
        for (j, v) in row.iter().enumerate() {
            if v.abs() > row[best].abs() {
                best = j;
            }
        }
        if row[best] < 0.0 {
            row.iter_mut().for_each(|v| *v = -*v);
        }
    }
}

/// xoshiro256** seeded through SplitMix64, with Box–Muller normals: small, fast and the same
/// on every platform, so one seed gives one result.
struct Rng {
    s: [u64; 4],
    spare: Option<f64>,
}

impl Rng {
    fn new(seed: u64) -> Self {
        let mut z = seed;
        let mut next = || {
            z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut x = z;
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            x ^ (x >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
            spare: None,
        }
    }

    fn next_u64(&mut self) -> u64 {
        let s = &mut self.s;
        let result = s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = s[1] << 17;
        s[2] ^= s[0];
        s[3] ^= s[1];
        s[1] ^= s[2];
        s[0] ^= s[3];
        s[2] ^= t;
        s[3] = s[3].rotate_left(45);
        result
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    fn normal(&mut self) -> f64 {
        if let Some(v) = self.spare.take() {
            return v;
        }
        let (u1, u2) = (self.uniform(), self.uniform());
        let r = (-2.0 * u1.ln()).sqrt();
        let t = 2.0 * std::f64::consts::PI * u2;
        self.spare = Some(r * t.sin());
        r * t.cos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random test data.
    fn data(n: usize, d: usize, seed: u64) -> Vec<f64> {
        let mut rng = Rng::new(seed);
        (0..n * d).map(|_| rng.normal()).collect()
    }

    /// `n x d` data of rank `rank` plus an offset, so centring matters.
    fn low_rank(n: usize, d: usize, rank: usize, seed: u64) -> Vec<f64> {
        let a = data(n, rank, seed);
        let b = data(rank, d, seed + 1);
        let mut x = vec![0.0; n * d];
        for i in 0..n {
            for j in 0..d {
                let s: f64 = (0..rank)
                    .map(|t| a[i * rank + t] * b[t * d + j] * (rank - t) as f64)
                    .sum();
                x[i * d + j] = s + 3.0 + j as f64;
            }
        }
        x
    }

    /// Reference: eigenvalues of the covariance by a dense f64 Jacobi-free route (faer SVD of
    /// the explicitly centred matrix).
    fn reference(x: &[f64], n: usize, d: usize) -> (Vec<f64>, Mat<f64>) {
        let mean: Vec<f64> = (0..d)
            .map(|j| (0..n).map(|i| x[i * d + j]).sum::<f64>() / n as f64)
            .collect();
        let a = Mat::from_fn(n, d, |i, j| x[i * d + j] - mean[j]);
        let svd = a.thin_svd().unwrap();
        let ev = (0..n.min(d))
            .map(|k| svd.S().column_vector()[k].powi(2) / (n - 1) as f64)
            .collect();
        (ev, svd.V().to_owned())
    }

    fn assert_close(a: f64, b: f64, tol: f64, what: &str) {
        assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{what}: {a} vs {b}");
    }

    /// Components agree with the reference up to sign, and the sign rule holds.
    fn check_components(fit: &PcaFit, v: &Mat<f64>, d: usize, k: usize, tol: f64) {
        for c in 0..k {
            let row = &fit.components[c * d..(c + 1) * d];
            let dot: f64 = (0..d).map(|j| row[j] * v[(j, c)]).sum();
            assert_close(dot.abs(), 1.0, tol, "component alignment");
            let big = row
                .iter()
                .cloned()
                .fold(0.0f64, |m, v| if v.abs() > m.abs() { v } else { m });
            assert!(big > 0.0, "sign rule");
        }
    }

    #[test]
    fn covariance_matches_reference_svd() {
        let (n, d) = (700, 9);
        let x = low_rank(n, d, 9, 3);
        let fit = fit(&x, n, d, 0, Solver::Covariance).unwrap();
        let (ev, v) = reference(&x, n, d);
        assert_eq!(fit.n_components(), d);
        for (a, b) in fit.explained_variance.iter().zip(&ev) {
            assert_close(*a, *b, 1e-9, "variance");
        }
        assert_close(fit.total_variance, ev.iter().sum(), 1e-10, "total");
        check_components(&fit, &v, d, d, 1e-8);
    }

    #[test]
    fn wide_exact_path_matches_reference() {
        let (n, d) = (20, 50);
        let x = data(n, d, 7);
        let fit = fit(&x, n, d, 0, Solver::Covariance).unwrap();
        let (ev, v) = reference(&x, n, d);
        assert_eq!(fit.n_components(), n);
        for (a, b) in fit.explained_variance.iter().zip(&ev).take(n - 1) {
            assert_close(*a, *b, 1e-10, "variance");
        }
        check_components(&fit, &v, d, n - 1, 1e-8);
        // The components are orthonormal, including the one for the zero singular value.
        for a in 0..n {
            for b in 0..n {
                let dot: f64 = (0..d)
                    .map(|j| fit.components[a * d + j] * fit.components[b * d + j])
                    .sum();
                assert_close(dot, if a == b { 1.0 } else { 0.0 }, 1e-10, "orthonormal");
            }
        }
    }

    #[test]
    fn randomized_is_exact_on_low_rank_data() {
        // d = 40: the iteration runs on the formed covariance; d = 400 with one power step and
        // few oversamples (400 > 4 (n_iter + 2) l = 48): it makes passes over the rows.
        for (n, d, n_iter, oversamples) in [(3000, 40, 4, 10), (3000, 400, 0, 2)] {
            let rank = 4;
            assert_eq!(d <= 4 * (n_iter + 2) * (rank + oversamples), d == 40);
            let x = low_rank(n, d, rank, 11);
            let solver = Solver::Randomized {
                oversamples,
                n_iter,
                seed: 5,
            };
            let fit = fit(&x, n, d, rank, solver).unwrap();
            let (ev, v) = reference(&x, n, d);
            for (a, b) in fit.explained_variance.iter().zip(&ev).take(rank) {
                assert_close(*a, *b, 1e-9, "variance");
            }
            assert_close(fit.total_variance, ev.iter().sum(), 1e-9, "total variance");
            check_components(&fit, &v, d, rank, 1e-9);
        }
    }

    #[test]
    fn randomized_on_float32_tall_data_uses_the_f32_covariance_accurately() {
        let (n, d, rank) = (F32_MIN_ROWS + 1000, 24, 5);
        let (x32, x64) = as_f32(&low_rank(n, d, rank, 4));
        let solver = Solver::Randomized {
            oversamples: 10,
            n_iter: 4,
            seed: 9,
        };
        let fit = fit(&x32, n, d, rank, solver).unwrap();
        // The f32 route is the one taken (not the f64 fall-back).
        assert!(covariance_f32_if_fit(&x32, n, d).is_some());
        assert!(f32_fit_is_accurate(&fit.explained_variance, rank));
        let (ev, v) = reference(&x64, n, d);
        for (a, b) in fit.explained_variance.iter().zip(&ev).take(rank) {
            assert_close(*a, *b, 1e-6, "variance");
        }
        assert_close(fit.total_variance, ev.iter().sum(), 1e-6, "total variance");
        check_components(&fit, &v, d, rank, 1e-5);
    }

    /// `x` rounded to f32, and the same values in f64 (the reference reads these exactly).
    fn as_f32(x: &[f64]) -> (Vec<f32>, Vec<f64>) {
        let x32: Vec<f32> = x.iter().map(|v| *v as f32).collect();
        let back = x32.iter().map(|v| *v as f64).collect();
        (x32, back)
    }

    /// The f32 kernel against the f64 reference of the same (f32) values: explained variances
    /// to `tol` relative to the largest (the f32 products err by about `ε₃₂ · λ₁`, see
    /// [`block_rows_f32`]), total variance to `tol` relative, means to 1e-12 of the spread, and
    /// components up to sign.
    fn check_f32(x: &[f64], n: usize, d: usize, tol: f64) {
        let (x32, back) = as_f32(x);
        // The f32 kernel itself, also below F32_MIN_ROWS and whatever the spectrum.
        let (mean, c, _) = covariance_f32(&x32, n, d).unwrap();
        let mut f = eigen_fit(c, mean, n, d).unwrap();
        flip_signs(&mut f.components, d);
        let (ev, v) = reference(&back, n, d);
        let k = d.min(n - 1);
        for (a, b) in f.explained_variance.iter().zip(&ev).take(k) {
            assert!((a - b).abs() <= tol * ev[0], "n={n}: variance {a} vs {b}");
        }
        let total: f64 = ev.iter().sum();
        assert!((f.total_variance - total).abs() <= tol * total, "total");
        let spread = total.sqrt();
        for j in 0..d {
            let m = (0..n).map(|i| back[i * d + j]).sum::<f64>() / n as f64;
            assert!((f.mean[j] - m).abs() <= 1e-12 * (m.abs() + spread), "mean");
        }
        // Components: the residual `‖C v − λ v‖` of each, with `C` the reference covariance,
        // within `tol · λ₁` (a backward error: the angle to the reference vector is that over
        // the eigenvalue gap), and the sign rule.
        for c in 0..k {
            let row = &f.components[c * d..(c + 1) * d];
            let coef: Vec<f64> = (0..ev.len())
                .map(|t| ev[t] * (0..d).map(|j| v[(j, t)] * row[j]).sum::<f64>())
                .collect();
            let res = (0..d)
                .map(|j| {
                    let cv: f64 = (0..ev.len()).map(|t| v[(j, t)] * coef[t]).sum();
                    (cv - f.explained_variance[c] * row[j]).powi(2)
                })
                .sum::<f64>()
                .sqrt();
            assert!(res <= tol * ev[0], "n={n}: residual {res} vs {}", ev[0]);
            let big = row
                .iter()
                .fold(0.0f64, |m, v| if v.abs() > m.abs() { *v } else { m });
            assert!(big > 0.0, "sign rule");
        }
    }

    /// Full-rank data with a well separated spectrum, a little noise and an offset per column.
    fn noisy_low_rank(n: usize, d: usize, seed: u64, offset: f64) -> Vec<f64> {
        let x = low_rank(n, d, d, seed);
        let noise = data(n, d, seed + 7);
        x.iter()
            .zip(&noise)
            .enumerate()
            .map(|(t, (v, e))| v + 0.1 * e + offset * (1 + t % d) as f64)
            .collect()
    }

    #[test]
    fn float32_kernel_matches_the_f64_reference() {
        // One block, n not a multiple of the block, several chunks, and the smallest n.
        for n in [2, 3, 17, 100, 256, 257, 4099, 70_001] {
            check_f32(&noisy_low_rank(n, 8, n as u64, 0.0), n, 8, 1e-6);
        }
        check_f32(&noisy_low_rank(5000, 40, 3, 0.0), 5000, 40, 1e-6);
    }

    #[test]
    fn float32_input_with_few_rows_is_read_in_f64() {
        let (n, d) = (F32_MIN_ROWS - 1, 6);
        let (x32, back) = as_f32(&data(n, d, 2));
        let a = fit(&x32, n, d, 0, Solver::Covariance).unwrap();
        let b = fit(&back, n, d, 0, Solver::Covariance).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn float32_kernel_is_accurate_with_a_large_offset() {
        // Offsets of 1e3 and 1e4 times the spread: the shift removes them before rounding.
        for offset in [1e3, 3e4] {
            check_f32(&noisy_low_rank(20_000, 12, 5, offset), 20_000, 12, 1e-6);
        }
    }

    #[test]
    fn float32_kernel_takes_a_second_pass_when_the_sample_misleads() {
        // Every sampled row (every `stride`-th) is far from the others: the shift is off by
        // much more than the spread, so the sums are redone around the exact mean.
        let (n, d) = (50_000, 6);
        let stride = n / SHIFT_SAMPLE;
        let mut x = noisy_low_rank(n, d, 8, 0.0);
        for i in (0..n).step_by(stride) {
            x[i * d..(i + 1) * d].iter_mut().for_each(|v| *v += 1e4);
        }
        let (x32, _) = as_f32(&x);
        assert_eq!(covariance_f32(&x32, n, d).unwrap().2, 2);
        check_f32(&x, n, d, 1e-6);
        // Shuffled-like data needs one pass.
        let y = as_f32(&noisy_low_rank(n, d, 8, 100.0)).0;
        assert_eq!(covariance_f32(&y, n, d).unwrap().2, 1);
    }

    #[test]
    fn float32_input_with_a_wide_spectrum_falls_back_to_f64() {
        // Variances from 1 down to 1e-6: the f32 kernel is kept for the leading components
        // only; asking for all of them gives the f64 kernel's result, to the last bit.
        let (n, d) = (8192, 8);
        let mut x = data(n, d, 12);
        for (t, v) in x.iter_mut().enumerate() {
            *v = *v * 10f64.powi(-((t % d) as i32) / 2) + 5.0;
        }
        let (x32, back) = as_f32(&x);
        let exact = fit(&back, n, d, 0, Solver::Covariance).unwrap();
        assert_eq!(fit(&x32, n, d, 0, Solver::Covariance).unwrap(), exact);
        assert_eq!(fit(&x32, n, d, 6, Solver::Covariance).unwrap(), exact);
        let leading = fit(&x32, n, d, 2, Solver::Covariance).unwrap();
        assert_ne!(leading, exact);
        for (a, b) in leading
            .explained_variance
            .iter()
            .zip(&exact.explained_variance)
            .take(2)
        {
            assert_close(*a, *b, 1e-6, "leading variance");
        }
    }

    #[test]
    fn float32_blocks_and_chunks_cover_all_rows() {
        for n in [2, 15, 16, 300, 65_537, 100_000, 1_000_000] {
            let b = block_rows_f32(n);
            assert!((16..=256).contains(&b) && b % 8 == 0);
            let c = block_chunks(n, 64, b);
            assert!(c.len() <= MAX_CHUNKS);
            assert_eq!(c.first().unwrap().start, 0);
            assert_eq!(c.last().unwrap().end, n);
            assert!(c
                .windows(2)
                .all(|w| w[0].end == w[1].start && w[0].len() % b == 0));
        }
    }

    #[test]
    fn float32_non_finite_values_are_an_error() {
        let (n, d) = (5000, 4);
        let x = as_f32(&data(n, d, 4)).0;
        // Row 0 is in the shift sample, row 1 is not.
        for at in [0, d + 1] {
            for bad in [f32::NAN, f32::INFINITY] {
                let mut y = x.clone();
                y[at] = bad;
                let e = fit(&y, n, d, 0, Solver::Covariance).unwrap_err();
                assert!(e.to_string().contains("NaN"), "{e}");
                assert!(covariance_f32(&y, n, d).is_err());
            }
        }
        // Values whose f32 squares overflow: the f64 kernel computes them.
        let big: Vec<f32> = x.iter().map(|v| v * 1e25).collect();
        assert!(covariance_f32(&big, n, d).is_err());
        let f = fit(&big, n, d, 0, Solver::Covariance).unwrap();
        let back: Vec<f64> = big.iter().map(|v| *v as f64).collect();
        assert_eq!(f, fit(&back, n, d, 0, Solver::Covariance).unwrap());
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let (n, d) = (40_000, 12);
        let x = data(n, d, 9);
        let run = |threads: usize, solver: Solver| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| fit(&x, n, d, 5, solver).unwrap())
        };
        let rnd = Solver::Randomized {
            oversamples: 10,
            n_iter: 3,
            seed: 1,
        };
        for solver in [Solver::Covariance, rnd] {
            let one = run(1, solver);
            assert_eq!(one, run(3, solver));
            assert_eq!(one, run(4, solver));
        }
        // The f32 kernel: also for a chunk count that does not divide evenly.
        let (x32, _) = as_f32(&x);
        for n32 in [n, 12_345] {
            let run32 = |threads: usize| {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                pool.install(|| fit(&x32[..n32 * d], n32, d, 0, Solver::Covariance).unwrap())
            };
            let one = run32(1);
            assert_eq!(one, run32(2));
            assert_eq!(one, run32(3));
        }
    }

    #[test]
    fn chunks_cover_all_rows_in_order() {
        for n in [1, 2, 511, 512, 513, 100_000, 1_000_003] {
            let c = chunks(n, 64);
            assert!(c.len() <= MAX_CHUNKS);
            assert_eq!(c.first().unwrap().start, 0);
            assert_eq!(c.last().unwrap().end, n);
            assert!(c.windows(2).all(|w| w[0].end == w[1].start));
        }
        // Large partials reduce the number of chunks.
        assert_eq!(chunks(1_000_000, PARTIALS_BUDGET).len(), 1);
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut x = data(10, 3, 1);
        assert!(fit(&x, 10, 4, 0, Solver::Covariance).is_err());
        assert!(fit(&x[..3], 1, 3, 0, Solver::Covariance).is_err());
        let rnd = Solver::Randomized {
            oversamples: 2,
            n_iter: 1,
            seed: 0,
        };
        assert!(fit(&x, 10, 3, 0, rnd).is_err());
        assert!(fit(&x, 10, 3, 4, rnd).is_err());
        x[7] = f64::NAN;
        let e = fit(&x, 10, 3, 0, Solver::Covariance).unwrap_err();
        assert!(e.to_string().contains("NaN"));
        x[7] = f64::INFINITY;
        assert!(fit(&x, 10, 3, 0, Solver::Covariance).is_err());
        assert!(Solver::parse("arpack", 10, 4, 0).is_err());
        assert_eq!(Solver::parse("full", 10, 4, 0).unwrap(), Solver::Covariance);
    }

    #[test]
    fn values_near_the_float64_limit_are_an_error_not_nan() {
        let (n, d) = (100, 3);
        let base = data(n, d, 3);
        let rnd = |n_iter| Solver::Randomized {
            oversamples: 2,
            n_iter,
            seed: 0,
        };
        // Tall data: every solver forms the covariance; wide data (d > n): the thin SVD of
        // the exact solver and the row passes of the randomized one.
        for scale in [1e155, 1e200, 1e300] {
            let x: Vec<f64> = base.iter().map(|v| v * scale).collect();
            for solver in [Solver::Covariance, rnd(0), rnd(4)] {
                let e = fit(&x, n, d, 2, solver).unwrap_err().to_string();
                assert!(e.contains("too large") && e.contains("Rescale"), "{e}");
            }
            let wide: Vec<f64> = data(4, 3000, 5).iter().map(|v| v * scale).collect();
            for solver in [Solver::Covariance, rnd(1)] {
                let e = fit(&wide, 4, 3000, 2, solver).unwrap_err().to_string();
                assert!(e.contains("too large"), "{e}");
            }
        }
        // Column sums that overflow although every value is finite.
        let x = vec![1.5e308; 20 * 2];
        let e = fit(&x, 20, 2, 0, Solver::Covariance)
            .unwrap_err()
            .to_string();
        assert!(e.contains("column sums") && e.contains("1.500e308"), "{e}");
        // Large but representable: exact results, scaled.
        let x: Vec<f64> = base.iter().map(|v| v * 1e150).collect();
        let f = fit(&x, n, d, 0, Solver::Covariance).unwrap();
        let g = fit(&base, n, d, 0, Solver::Covariance).unwrap();
        for (a, b) in f.explained_variance.iter().zip(&g.explained_variance) {
            assert_close(*a, b * 1e300, 1e-9, "scaled variance");
        }
    }

    #[test]
    fn oversamples_whose_sum_overflows_are_an_error() {
        let x = data(50, 5, 2);
        for oversamples in [usize::MAX, usize::MAX - 1] {
            let solver = Solver::Randomized {
                oversamples,
                n_iter: 2,
                seed: 0,
            };
            let e = fit(&x, 50, 5, 2, solver).unwrap_err().to_string();
            assert!(e.contains("overflows"), "{e}");
        }
        // A large sum that fits: the subspace is all 5 directions.
        let solver = Solver::Randomized {
            oversamples: usize::MAX - 2,
            n_iter: 2,
            seed: 0,
        };
        let f = fit(&x, 50, 5, 2, solver).unwrap();
        assert_eq!(f.n_components(), 2);
        assert!(f.components.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn rng_is_reproducible_and_roughly_normal() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let xs: Vec<f64> = (0..20_000).map(|_| a.normal()).collect();
        assert!(xs.iter().all(|v| *v == b.normal()));
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }
}
