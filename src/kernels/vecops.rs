//! Small dense vector operations written so that LLVM vectorises them (independent lanes, no
//! reassociation needed), plus run-time CPU detection so that callers can compile their hot loops
//! once for AVX2+FMA and once for baseline x86-64 / other architectures.

pub const LANES: usize = 16;

/// Dot product with 16 independent accumulators.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let cb = b.chunks_exact(LANES);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..LANES {
            acc[j] += x[j] * y[j];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    // Pairwise reduction of the lanes keeps the rounding independent of the data length.
    let mut w = LANES;
    while w > 1 {
        w /= 2;
        for j in 0..w {
            acc[j] += acc[j + w];
        }
    }
    acc[0] + tail
}

/// y += a * x
#[inline(always)]
pub fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// `out[k] = rows[k·stride ..][..v.len()] · v` for every `k < out.len()`.
#[inline(always)]
pub fn dots(rows: &[f32], stride: usize, v: &[f32], out: &mut [f32]) {
    for (k, o) in out.iter_mut().enumerate() {
        *o = dot(&rows[k * stride..k * stride + v.len()], v);
    }
}

/// `y[j] += Σ_k t[k] · rows[k·stride + j]` for every `j < y.len()` (`y += Rᵀ t`).
#[inline(always)]
pub fn gemv_t(rows: &[f32], stride: usize, t: &[f32], y: &mut [f32]) {
    for (k, &tk) in t.iter().enumerate() {
        axpy(tk, &rows[k * stride..k * stride + y.len()], y);
    }
}

/// True when the CPU can run the AVX2+FMA builds of the hot loops.
#[inline]
pub fn has_avx2_fma() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The vector operations the hot loops need, implemented once portably and once with AVX2+FMA
/// intrinsics; kernels are generic over it and compiled for both (see [`multiversion!`]).
pub trait Simd {
    fn dot(a: &[f32], b: &[f32]) -> f32;
    fn axpy(a: f32, x: &[f32], y: &mut [f32]);
    /// Dot products of `v` with many rows of a row-major matrix (see [`dots`]).
    fn dots(rows: &[f32], stride: usize, v: &[f32], out: &mut [f32]);
    /// `y += Rᵀ t` for a row-major matrix `R` (see [`gemv_t`]).
    fn gemv_t(rows: &[f32], stride: usize, t: &[f32], y: &mut [f32]);
    /// Hints the CPU to start loading the cache lines of `v`.
    fn prefetch(v: &[f32]);
    /// The f64 symmetric rank-k update of [`crate::kernels::dense64::syrk_lower`].
    fn syrk_lower_f64(rows: &[f64], m: usize, stride: usize, out: &mut [f64]);
    /// The f64 Gram matrix of a few rows, [`crate::kernels::dense64::gram_lower`].
    fn gram_lower_f64(rows: &[f64], n: usize, stride: usize, out: &mut [f64], ld: usize);
}

/// Plain Rust, vectorised by LLVM for whatever the target baseline is.
pub struct Portable;

impl Simd for Portable {
    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        dot(a, b)
    }
    #[inline(always)]
    fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
        axpy(a, x, y)
    }
    #[inline(always)]
    fn dots(rows: &[f32], stride: usize, v: &[f32], out: &mut [f32]) {
        dots(rows, stride, v, out)
    }
    #[inline(always)]
    fn gemv_t(rows: &[f32], stride: usize, t: &[f32], y: &mut [f32]) {
        gemv_t(rows, stride, t, y)
    }
    #[inline(always)]
    fn prefetch(_v: &[f32]) {}
    #[inline(always)]
    fn syrk_lower_f64(rows: &[f64], m: usize, stride: usize, out: &mut [f64]) {
        crate::kernels::dense64::syrk_lower(rows, m, stride, out)
    }
    #[inline(always)]
    fn gram_lower_f64(rows: &[f64], n: usize, stride: usize, out: &mut [f64], ld: usize) {
        crate::kernels::dense64::gram_lower(rows, n, stride, out, ld)
    }
}

/// AVX2 + FMA intrinsics. Only reachable through [`multiversion!`], which checks the CPU first.
#[cfg(target_arch = "x86_64")]
pub struct Avx2(());

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps(v, 1);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }

    /// SAFETY: the CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        while i + 16 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
                acc1,
            );
            i += 16;
        }
        if i + 8 <= n {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            i += 8;
        }
        let mut s = hsum(_mm256_add_ps(acc0, acc1));
        while i < n {
            s += *pa.add(i) * *pb.add(i);
            i += 1;
        }
        s
    }

    /// SAFETY: the CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
        let n = x.len().min(y.len());
        let (px, py) = (x.as_ptr(), y.as_mut_ptr());
        let va = _mm256_set1_ps(a);
        let mut i = 0;
        while i + 8 <= n {
            let r = _mm256_fmadd_ps(va, _mm256_loadu_ps(px.add(i)), _mm256_loadu_ps(py.add(i)));
            _mm256_storeu_ps(py.add(i), r);
            i += 8;
        }
        while i < n {
            *py.add(i) += a * *px.add(i);
            i += 1;
        }
    }

    /// Checks that `m` rows of `n` values at `stride` fit in `rows` (a caller bug otherwise).
    #[inline(always)]
    fn check_rows(rows: &[f32], stride: usize, m: usize, n: usize) {
        assert!(
            m == 0 || (n <= stride && (m - 1) * stride + n <= rows.len()),
            "rows too short"
        );
    }

    /// SAFETY: the CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn dots(rows: &[f32], stride: usize, v: &[f32], out: &mut [f32]) {
        let (m, n) = (out.len(), v.len());
        check_rows(rows, stride, m, n);
        let main = n / 8 * 8;
        let (pr, pv, po) = (rows.as_ptr(), v.as_ptr(), out.as_mut_ptr());
        let mut k = 0;
        // Eight rows at a time: eight independent accumulators share each load of `v`, and one
        // transpose-and-add tree reduces all eight at once.
        while k + 8 <= m {
            let r = pr.add(k * stride);
            let mut acc = [_mm256_setzero_ps(); 8];
            let mut j = 0;
            while j < main {
                let vj = _mm256_loadu_ps(pv.add(j));
                for (q, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(_mm256_loadu_ps(r.add(q * stride + j)), vj, *a);
                }
                j += 8;
            }
            let a = _mm256_hadd_ps(
                _mm256_hadd_ps(acc[0], acc[1]),
                _mm256_hadd_ps(acc[2], acc[3]),
            );
            let b = _mm256_hadd_ps(
                _mm256_hadd_ps(acc[4], acc[5]),
                _mm256_hadd_ps(acc[6], acc[7]),
            );
            let s = _mm256_add_ps(
                _mm256_permute2f128_ps::<0x20>(a, b),
                _mm256_permute2f128_ps::<0x31>(a, b),
            );
            _mm256_storeu_ps(po.add(k), s);
            for q in 0..8 {
                for jj in main..n {
                    *po.add(k + q) += *r.add(q * stride + jj) * *pv.add(jj);
                }
            }
            k += 8;
        }
        while k < m {
            *po.add(k) = dot(std::slice::from_raw_parts(pr.add(k * stride), n), v);
            k += 1;
        }
    }

    /// `W` registers (8 lanes each) of `y` starting at `y`, updated with `Σ_k t[k] row_k`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn gemv_t_tile<const W: usize>(rows: *const f32, stride: usize, t: &[f32], y: *mut f32) {
        let mut acc = [_mm256_setzero_ps(); W];
        for (w, a) in acc.iter_mut().enumerate() {
            *a = _mm256_loadu_ps(y.add(8 * w));
        }
        for (k, &tk) in t.iter().enumerate() {
            let tk = _mm256_set1_ps(tk);
            let r = rows.add(k * stride);
            for (w, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(tk, _mm256_loadu_ps(r.add(8 * w)), *a);
            }
        }
        for (w, a) in acc.iter().enumerate() {
            _mm256_storeu_ps(y.add(8 * w), *a);
        }
    }

    /// SAFETY: the CPU must support AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub unsafe fn gemv_t(rows: &[f32], stride: usize, t: &[f32], y: &mut [f32]) {
        let (m, n) = (t.len(), y.len());
        check_rows(rows, stride, m, n);
        let (pr, py) = (rows.as_ptr(), y.as_mut_ptr());
        // Column tiles held in registers across all rows: `y` is loaded and stored once.
        let mut j = 0;
        while j + 64 <= n {
            gemv_t_tile::<8>(pr.add(j), stride, t, py.add(j));
            j += 64;
        }
        if j + 32 <= n {
            gemv_t_tile::<4>(pr.add(j), stride, t, py.add(j));
            j += 32;
        }
        if j + 16 <= n {
            gemv_t_tile::<2>(pr.add(j), stride, t, py.add(j));
            j += 16;
        }
        if j + 8 <= n {
            gemv_t_tile::<1>(pr.add(j), stride, t, py.add(j));
            j += 8;
        }
        for jj in j..n {
            let mut s = *py.add(jj);
            for (k, &tk) in t.iter().enumerate() {
                s += tk * *pr.add(k * stride + jj);
            }
            *py.add(jj) = s;
        }
    }

    #[inline(always)]
    pub fn prefetch(v: &[f32]) {
        // One hint per 64-byte line; prefetching never faults, even past the end.
        let mut k = 0;
        while k < v.len() {
            // SAFETY: SSE is part of the x86-64 baseline and prefetch has no memory effects.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(v.as_ptr().add(k) as *const i8) };
            k += 16;
        }
    }
}

#[cfg(target_arch = "x86_64")]
impl Simd for Avx2 {
    #[inline(always)]
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: `Avx2` is only used by code that `multiversion!` runs after checking the CPU.
        unsafe { avx2::dot(a, b) }
    }
    #[inline(always)]
    fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
        // SAFETY: as above.
        unsafe { avx2::axpy(a, x, y) }
    }
    #[inline(always)]
    fn dots(rows: &[f32], stride: usize, v: &[f32], out: &mut [f32]) {
        // SAFETY: as above.
        unsafe { avx2::dots(rows, stride, v, out) }
    }
    #[inline(always)]
    fn gemv_t(rows: &[f32], stride: usize, t: &[f32], y: &mut [f32]) {
        // SAFETY: as above.
        unsafe { avx2::gemv_t(rows, stride, t, y) }
    }
    #[inline(always)]
    fn prefetch(v: &[f32]) {
        avx2::prefetch(v)
    }
    #[inline(always)]
    fn syrk_lower_f64(rows: &[f64], m: usize, stride: usize, out: &mut [f64]) {
        // SAFETY: as above.
        unsafe { crate::kernels::dense64::avx2::syrk_lower(rows, m, stride, out) }
    }
    #[inline(always)]
    fn gram_lower_f64(rows: &[f64], n: usize, stride: usize, out: &mut [f64], ld: usize) {
        // SAFETY: as above.
        unsafe { crate::kernels::dense64::avx2::gram_lower(rows, n, stride, out, ld) }
    }
}

/// Defines `$name(args) -> ret` that runs `$body_fn::<Avx2>` (compiled with AVX2+FMA enabled)
/// when the CPU has them and `$body_fn::<Portable>` otherwise. `$body_fn` must be generic over
/// [`Simd`] and `#[inline(always)]` so that it is compiled inside each variant.
#[macro_export]
macro_rules! multiversion {
    ($vis:vis fn $name:ident($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)? => $body_fn:ident) => {
        #[allow(clippy::too_many_arguments)]
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn fast($($arg: $ty),*) $(-> $ret)? {
                    $body_fn::<$crate::kernels::vecops::Avx2>($($arg),*)
                }
                if $crate::kernels::vecops::has_avx2_fma() {
                    // SAFETY: the CPU supports the features `fast` was compiled for.
                    return unsafe { fast($($arg),*) };
                }
            }
            $body_fn::<$crate::kernels::vecops::Portable>($($arg),*)
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_matches_naive_for_all_tail_lengths() {
        for n in 0..70 {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            let naive: f64 = a.iter().zip(&b).map(|(x, y)| *x as f64 * *y as f64).sum();
            assert!((dot(&a, &b) as f64 - naive).abs() < 1e-4, "n={n}");
        }
    }

    #[test]
    fn simd_variants_agree_with_the_portable_ones() {
        for n in [0usize, 1, 7, 8, 9, 15, 16, 17, 31, 64, 65] {
            let a: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37).sin()).collect();
            let b: Vec<f32> = (0..n).map(|i| (i as f32 * 0.11).cos()).collect();
            #[cfg(target_arch = "x86_64")]
            if has_avx2_fma() {
                assert!((<Avx2 as Simd>::dot(&a, &b) - dot(&a, &b)).abs() < 1e-4);
                let (mut y1, mut y2) = (b.clone(), b.clone());
                <Avx2 as Simd>::axpy(0.5, &a, &mut y1);
                axpy(0.5, &a, &mut y2);
                for (p, q) in y1.iter().zip(&y2) {
                    assert!((p - q).abs() < 1e-6);
                }
                <Avx2 as Simd>::prefetch(&a);
            }
            assert_eq!(<Portable as Simd>::dot(&a, &b), dot(&a, &b));
        }
    }

    /// `dots` and `gemv_t` against naive loops, for every tail of rows and columns.
    #[test]
    fn batched_ops_match_naive_loops() {
        for n in [1usize, 7, 8, 9, 16, 24, 33, 64, 72, 100, 129] {
            for m in [0usize, 1, 3, 7, 8, 9, 17] {
                let stride = n + 3;
                let rows: Vec<f32> = (0..m * stride).map(|i| (i as f32 * 0.13).sin()).collect();
                let v: Vec<f32> = (0..n).map(|i| (i as f32 * 0.7).cos()).collect();
                let t: Vec<f32> = (0..m).map(|i| (i as f32 * 0.3).sin()).collect();
                let naive_dots: Vec<f64> = (0..m)
                    .map(|k| {
                        (0..n)
                            .map(|j| rows[k * stride + j] as f64 * v[j] as f64)
                            .sum()
                    })
                    .collect();
                let naive_gemv: Vec<f64> = (0..n)
                    .map(|j| {
                        v[j] as f64
                            + (0..m)
                                .map(|k| t[k] as f64 * rows[k * stride + j] as f64)
                                .sum::<f64>()
                    })
                    .collect();
                let mut variants: Vec<(Vec<f32>, Vec<f32>)> = Vec::new();
                let mut out = vec![0.0f32; m];
                let mut y = v.clone();
                <Portable as Simd>::dots(&rows, stride, &v, &mut out);
                <Portable as Simd>::gemv_t(&rows, stride, &t, &mut y);
                variants.push((out, y));
                #[cfg(target_arch = "x86_64")]
                if has_avx2_fma() {
                    let mut out = vec![0.0f32; m];
                    let mut y = v.clone();
                    <Avx2 as Simd>::dots(&rows, stride, &v, &mut out);
                    <Avx2 as Simd>::gemv_t(&rows, stride, &t, &mut y);
                    variants.push((out, y));
                }
                for (out, y) in variants {
                    for (a, b) in out.iter().zip(&naive_dots) {
                        assert!((*a as f64 - b).abs() < 1e-4, "dots n={n} m={m}");
                    }
                    for (a, b) in y.iter().zip(&naive_gemv) {
                        assert!((*a as f64 - b).abs() < 1e-4, "gemv_t n={n} m={m}");
                    }
                }
            }
        }
    }

    #[test]
    fn axpy_adds_a_scaled_vector() {
        let mut y = vec![1.0, 2.0];
        axpy(2.0, &[1.0, -1.0], &mut y);
        assert_eq!(y, vec![3.0, 0.0]);
    }
}
