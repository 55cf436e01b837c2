//! Small dense f64 kernels for the exact ALS row solves: a symmetric rank-k update (`Σ r rᵀ`
//! over the rows of a matrix) with an AVX2 register-tiled version, for matrices of a few dozen
//! to a few hundred columns, and the symmetric eigendecomposition both the ALS per-row penalty
//! and PCA use.

use faer::diag::Diag;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::evd;
use faer::{Mat, MatRef, Par};

use crate::error::{CoreError, CoreResult};

/// Rows handled per pass of the tiled kernel, so that a block of rows stays in cache while every
/// output tile streams it.
const K_BLOCK: usize = 32;

/// `out[a·stride + b] += Σ_k r_k[a] · r_k[b]` for every `b <= a < stride`, where
/// `r_k = rows[k·stride ..][..stride]`, `k < m`. `stride` must be a multiple of 8 and `out` hold
/// `stride x stride` values (row-major). Entries above the diagonal may be written too (the
/// tiled version updates whole 4 x 8 tiles); callers read only the lower triangle.
#[inline(always)]
pub fn syrk_lower(rows: &[f64], m: usize, stride: usize, out: &mut [f64]) {
    assert!(
        stride % 8 == 0 && rows.len() >= m * stride && out.len() >= stride * stride,
        "syrk_lower: inconsistent shapes"
    );
    for r in rows[..m * stride].chunks_exact(stride) {
        for (a, &ra) in r.iter().enumerate() {
            for (o, &rb) in out[a * stride..a * stride + a + 1].iter_mut().zip(r) {
                *o += ra * rb;
            }
        }
    }
}

/// `out[a·ld + b] = r_a · r_b` for `b <= a < n`: the lower triangle of the Gram matrix of the
/// rows `r_a = rows[a·stride ..][..stride]` (for a few short rows of many values, where the
/// rank-k update of [`syrk_lower`] would need them transposed).
#[inline(always)]
pub fn gram_lower(rows: &[f64], n: usize, stride: usize, out: &mut [f64], ld: usize) {
    assert!(
        rows.len() >= n * stride && ld >= n && out.len() >= n * ld,
        "gram_lower: inconsistent shapes"
    );
    for a in 0..n {
        let ra = &rows[a * stride..(a + 1) * stride];
        for b in 0..=a {
            out[a * ld + b] = dot(ra, &rows[b * stride..(b + 1) * stride]);
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub mod avx2 {
    use super::K_BLOCK;
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn hsum(v: __m256d) -> f64 {
        let s = _mm_add_pd(_mm256_castpd256_pd128(v), _mm256_extractf128_pd::<1>(v));
        _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)))
    }

    /// [`super::gram_lower`] with two rows `b` per pass over row `a` (three loads per two FMAs)
    /// and two accumulators per pair. `stride` must be a multiple of 8.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn gram_lower(rows: &[f64], n: usize, stride: usize, out: &mut [f64], ld: usize) {
        assert!(
            stride % 8 == 0 && rows.len() >= n * stride && ld >= n && out.len() >= n * ld,
            "gram_lower: inconsistent shapes"
        );
        let p = rows.as_ptr();
        for a in 0..n {
            let pa = p.add(a * stride);
            let mut b = 0;
            while b < a {
                let (p0, p1) = (p.add(b * stride), p.add((b + 1) * stride));
                let mut acc = [_mm256_setzero_pd(); 4];
                let mut d = 0;
                while d < stride {
                    let x0 = _mm256_loadu_pd(pa.add(d));
                    let x1 = _mm256_loadu_pd(pa.add(d + 4));
                    acc[0] = _mm256_fmadd_pd(x0, _mm256_loadu_pd(p0.add(d)), acc[0]);
                    acc[1] = _mm256_fmadd_pd(x1, _mm256_loadu_pd(p0.add(d + 4)), acc[1]);
                    acc[2] = _mm256_fmadd_pd(x0, _mm256_loadu_pd(p1.add(d)), acc[2]);
                    acc[3] = _mm256_fmadd_pd(x1, _mm256_loadu_pd(p1.add(d + 4)), acc[3]);
                    d += 8;
                }
                out[a * ld + b] = hsum(_mm256_add_pd(acc[0], acc[1]));
                out[a * ld + b + 1] = hsum(_mm256_add_pd(acc[2], acc[3]));
                b += 2;
            }
            if b == a {
                let mut acc = [_mm256_setzero_pd(); 2];
                let mut d = 0;
                while d < stride {
                    let x0 = _mm256_loadu_pd(pa.add(d));
                    let x1 = _mm256_loadu_pd(pa.add(d + 4));
                    acc[0] = _mm256_fmadd_pd(x0, x0, acc[0]);
                    acc[1] = _mm256_fmadd_pd(x1, x1, acc[1]);
                    d += 8;
                }
                out[a * ld + a] = hsum(_mm256_add_pd(acc[0], acc[1]));
            }
        }
    }

    /// [`super::syrk_lower`] with 4 x 8 register tiles (eight accumulators, two loads and four
    /// broadcasts per row and tile).
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn syrk_lower(rows: &[f64], m: usize, stride: usize, out: &mut [f64]) {
        assert!(
            stride % 8 == 0 && rows.len() >= m * stride && out.len() >= stride * stride,
            "syrk_lower: inconsistent shapes"
        );
        let (pr, po) = (rows.as_ptr(), out.as_mut_ptr());
        let mut k0 = 0;
        while k0 < m {
            let k1 = (k0 + K_BLOCK).min(m);
            let mut i = 0;
            while i < stride {
                // Tiles with columns j..j+8 that reach the lower triangle of rows i..i+4.
                let mut j = 0;
                while j < i + 4 {
                    let mut acc = [[_mm256_setzero_pd(); 2]; 4];
                    for k in k0..k1 {
                        let p = pr.add(k * stride);
                        let b0 = _mm256_loadu_pd(p.add(j));
                        let b1 = _mm256_loadu_pd(p.add(j + 4));
                        for (a, acc_a) in acc.iter_mut().enumerate() {
                            let s = _mm256_broadcast_sd(&*p.add(i + a));
                            acc_a[0] = _mm256_fmadd_pd(s, b0, acc_a[0]);
                            acc_a[1] = _mm256_fmadd_pd(s, b1, acc_a[1]);
                        }
                    }
                    for (a, acc_a) in acc.iter().enumerate() {
                        let o = po.add((i + a) * stride + j);
                        _mm256_storeu_pd(o, _mm256_add_pd(_mm256_loadu_pd(o), acc_a[0]));
                        _mm256_storeu_pd(
                            o.add(4),
                            _mm256_add_pd(_mm256_loadu_pd(o.add(4)), acc_a[1]),
                        );
                    }
                    j += 8;
                }
                i += 4;
            }
            k0 = k1;
        }
    }
}

/// f64 dot product with eight independent accumulators.
#[inline(always)]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f64 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// Lower Cholesky factor `L` (`A = L Lᵀ`) of the `n x n` matrix stored with row stride `ld`,
/// written over its lower triangle (nothing else is read). False when `A` is not positive
/// definite or holds non-finite values.
#[inline(always)]
pub fn cholesky(a: &mut [f64], n: usize, ld: usize) -> bool {
    for j in 0..n {
        let (done, rest) = a.split_at_mut(j * ld + j);
        let row_j = &done[j * ld..j * ld + j];
        let d = rest[0] - dot(row_j, row_j);
        if !d.is_finite() || d <= 0.0 {
            return false;
        }
        let d = d.sqrt();
        rest[0] = d;
        let inv = 1.0 / d;
        for i in j + 1..n {
            let at = (i - j) * ld;
            let s = rest[at] - dot(&rest[at - j..at], row_j);
            rest[at] = s * inv;
        }
    }
    true
}

/// Solves `L Lᵀ x = b` in place with the factor from [`cholesky`].
#[inline(always)]
pub fn cholesky_solve(l: &[f64], n: usize, ld: usize, b: &mut [f64]) {
    for i in 0..n {
        let s = b[i] - dot(&l[i * ld..i * ld + i], &b[..i]);
        b[i] = s / l[i * ld + i];
    }
    // Lᵀ x = y, by columns of L: subtract each solved x_i from the entries above it.
    for i in (0..n).rev() {
        b[i] /= l[i * ld + i];
        let xi = b[i];
        for (bk, lk) in b[..i].iter_mut().zip(&l[i * ld..i * ld + i]) {
            *bk -= lk * xi;
        }
    }
}

/// Eigenvalues (increasing) and eigenvectors of the symmetric matrix `a` (lower half read).
pub fn eigh(a: MatRef<'_, f64>) -> CoreResult<(Mat<f64>, Vec<f64>)> {
    let n = a.nrows();
    let mut u = Mat::zeros(n, n);
    let mut s = Diag::zeros(n);
    let req = evd::self_adjoint_evd_scratch::<f64>(
        n,
        evd::ComputeEigenvectors::Yes,
        Par::Seq,
        Default::default(),
    );
    let mut mem = MemBuffer::new(req);
    evd::self_adjoint_evd(
        a,
        s.as_mut(),
        Some(u.as_mut()),
        Par::Seq,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map_err(|e| CoreError::Value(format!("eigendecomposition did not converge: {e:?}")))?;
    let s = (0..n).map(|i| s.column_vector()[i]).collect();
    Ok((u, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(len: usize, seed: f64) -> Vec<f64> {
        (0..len)
            .map(|i| ((i as f64 + seed) * 0.731).sin())
            .collect()
    }

    #[test]
    fn syrk_variants_match_the_naive_sum() {
        for stride in [8usize, 16, 24, 64, 72] {
            for m in [0usize, 1, 3, 129, 300] {
                let rows = sample(m * stride, stride as f64);
                let mut naive = vec![0.0f64; stride * stride];
                for k in 0..m {
                    for a in 0..stride {
                        for b in 0..=a {
                            naive[a * stride + b] += rows[k * stride + a] * rows[k * stride + b];
                        }
                    }
                }
                let mut out = vec![0.5f64; stride * stride];
                syrk_lower(&rows, m, stride, &mut out);
                let mut outs = vec![out];
                #[cfg(target_arch = "x86_64")]
                if crate::kernels::vecops::has_avx2_fma() {
                    let mut out = vec![0.5f64; stride * stride];
                    // SAFETY: the CPU has AVX2 and FMA (checked above).
                    unsafe { avx2::syrk_lower(&rows, m, stride, &mut out) };
                    outs.push(out);
                }
                for out in outs {
                    for a in 0..stride {
                        for b in 0..=a {
                            let (got, want) = (out[a * stride + b], naive[a * stride + b] + 0.5);
                            assert!((got - want).abs() < 1e-9 * want.abs().max(1.0));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn gram_variants_match_the_naive_dots() {
        for stride in [8usize, 16, 520] {
            for n in [0usize, 1, 2, 3, 7, 23] {
                let rows = sample(n * stride, n as f64);
                let ld = n + 2;
                let naive = |a: usize, b: usize| -> f64 {
                    (0..stride)
                        .map(|d| rows[a * stride + d] * rows[b * stride + d])
                        .sum()
                };
                let mut out = vec![f64::NAN; n * ld];
                gram_lower(&rows, n, stride, &mut out, ld);
                let mut outs = vec![out];
                #[cfg(target_arch = "x86_64")]
                if crate::kernels::vecops::has_avx2_fma() {
                    let mut out = vec![f64::NAN; n * ld];
                    // SAFETY: the CPU has AVX2 and FMA (checked above).
                    unsafe { avx2::gram_lower(&rows, n, stride, &mut out, ld) };
                    outs.push(out);
                }
                for out in outs {
                    for a in 0..n {
                        for b in 0..=a {
                            let (got, want) = (out[a * ld + b], naive(a, b));
                            assert!((got - want).abs() < 1e-9 * want.abs().max(1.0));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn cholesky_solves_a_padded_system() {
        let (n, ld) = (5, 8);
        let g = sample(n * n, 1.0);
        let mut a = vec![f64::NAN; n * ld]; // the padding and the upper triangle are never read
        for i in 0..n {
            for j in 0..=i {
                let s: f64 = (0..n).map(|k| g[i * n + k] * g[j * n + k]).sum();
                a[i * ld + j] = s + if i == j { 1.0 } else { 0.0 };
            }
        }
        let full = a.clone();
        let want = sample(n, 3.0);
        let mut b: Vec<f64> = (0..n)
            .map(|i| {
                (0..n)
                    .map(|j| {
                        let (r, c) = if j <= i { (i, j) } else { (j, i) };
                        full[r * ld + c] * want[j]
                    })
                    .sum()
            })
            .collect();
        assert!(cholesky(&mut a, n, ld));
        cholesky_solve(&a, n, ld, &mut b);
        for (x, w) in b.iter().zip(&want) {
            assert!((x - w).abs() < 1e-10);
        }
        let mut not_pd = vec![1.0, 0.0, 2.0, 1.0];
        assert!(!cholesky(&mut not_pd, 2, 2));
    }
}
