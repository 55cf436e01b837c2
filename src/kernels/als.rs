//! Implicit-feedback ALS (Hu, Koren, Volinsky 2008) half-steps and the training loss.
//!
//! One half-step recomputes every row `x_u` of `target` with the other side's factors `Y` fixed:
//!
//!   x_u = (YᵀY + Yᵀ(C_u − I)Y + λ_u I)⁻¹ Yᵀ C_u p_u
//!
//! where the CSR row of user `u` holds the confidences `c_ui` of the observed pairs (preference
//! `p_ui = 1` there, 0 elsewhere with confidence 1), and `λ_u` is one penalty for every row or
//! one per row (`Penalty`). `YᵀY` is shared by all rows, so a row only touches its own observed
//! items. Each row's system is solved in coordinates where it is identity plus a rank-`n_u` term
//! (`Basis`: a shared Cholesky whitening, or an eigenbasis scaled per row):
//! * `Cholesky`: the exact solve there, in f64 (see `exact_row`);
//! * `Cg` / `Auto`: conjugate gradients warm-started from the current `x_u` (Takács, Pilászy,
//!   Tikk 2011), i.e. preconditioned with `YᵀY + λ_u I`, to a tolerance on the row's objective;
//!   `Auto` also has a path without per-row `f x f` work at high rank (`solve_auto`);
//! * `Reference`: the textbook dense solve in f64, the tests' oracle.
//!
//! Every row is independent, so the result does not depend on the number of threads.

use faer::linalg::matmul::matmul;
use faer::linalg::matmul::triangular::{self, BlockStructure};
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::error::{shape_err, CoreError, CoreResult};
use crate::kernels::csr::CsrView;
use crate::kernels::dense64;
use crate::kernels::vecops::Simd;
use crate::multiversion;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Solver {
    /// Preconditioned CG warm-started from the current factors, run on each row until the
    /// excess of the row's objective over its minimum is at most `tol` times the objective, for
    /// at most `steps` steps (`tol = 0`: always `steps` steps, the classic fixed-step CG).
    Cg { steps: usize, tol: f32 },
    /// The exact solve in whitened coordinates: an `n_u x n_u` system for rows with fewer items
    /// than factors (Woodbury), the `f x f` system otherwise (see `exact_row`).
    Cholesky,
    /// The textbook exact solve in the original coordinates, in f64: slow, kept as a reference.
    Reference,
    /// `Cg` to tolerance (`tol > 0`) without the per-row `f x f` work where that is cheaper:
    /// when the other side has clearly fewer rows than the target, rows with few items get
    /// the exact Woodbury solve written out through `Z = Y (YᵀY + λI)⁻¹` and only the long
    /// rows run CG (see `solve_auto`); otherwise exactly `Cg`. `solver="cg"` with a tolerance
    /// (the default) and `solver="auto"` are this; `"cg_whitened"` forces `Cg`.
    Auto { steps: usize, tol: f32 },
}

impl Solver {
    pub fn parse(name: &str, cg_steps: usize, tol: f32) -> CoreResult<Self> {
        match name {
            "cg" if cg_steps >= 1 && tol.is_finite() && tol > 0.0 => Ok(Solver::Auto {
                steps: cg_steps,
                tol,
            }),
            "cg" | "cg_whitened" if cg_steps >= 1 && tol.is_finite() && tol >= 0.0 => {
                Ok(Solver::Cg {
                    steps: cg_steps,
                    tol,
                })
            }
            "cg" | "cg_whitened" => Err(CoreError::Value(
                "solver \"cg\" needs cg_steps >= 1 and a finite tolerance >= 0".into(),
            )),
            "auto" if cg_steps >= 1 && tol.is_finite() && tol > 0.0 => Ok(Solver::Auto {
                steps: cg_steps,
                tol,
            }),
            "auto" => Err(CoreError::Value(
                "solver \"auto\" needs cg_steps >= 1 and a finite tolerance > 0".into(),
            )),
            "cholesky" => Ok(Solver::Cholesky),
            "reference" => Ok(Solver::Reference),
            other => Err(CoreError::Value(format!(
                "unknown solver {other:?}: expected \"cg\", \"auto\" or \"cholesky\""
            ))),
        }
    }
}

/// The L2 penalty of the rows of a half-step: `lambda` for every row, or, with `row_scale`,
/// `lambda · row_scale[r]` for row `r` (a penalty that grows with the row's number of pairs:
/// ALS-WR, Zhou et al. 2008, and the frequency-scaled penalty of Rendle et al. 2021).
#[derive(Clone, Copy, Debug)]
pub struct Penalty<'a> {
    pub lambda: f32,
    pub row_scale: Option<&'a [f32]>,
}

impl<'a> Penalty<'a> {
    /// The same penalty for every row.
    pub fn global(lambda: f32) -> Self {
        Self {
            lambda,
            row_scale: None,
        }
    }

    fn check(&self, n_rows: usize) -> CoreResult<()> {
        if !self.lambda.is_finite() || self.lambda < 0.0 {
            return Err(CoreError::Value(
                "regularization must be a finite number >= 0".into(),
            ));
        }
        if let Some(scale) = self.row_scale {
            if scale.len() != n_rows {
                return shape_err(format!(
                    "the per-row penalty scale has {} values, expected one per row ({n_rows})",
                    scale.len()
                ));
            }
            if let Some(bad) = scale
                .iter()
                .find(|&&w| !(w.is_finite() && w >= 0.0 && (w * self.lambda).is_finite()))
            {
                return Err(CoreError::Value(format!(
                    "the per-row penalty scales must be finite and >= 0 (and finite times the \
                     regularization), got {bad}"
                )));
            }
        }
        Ok(())
    }

    /// Row `r`'s penalty.
    #[inline]
    fn of(&self, r: usize) -> f64 {
        let w = self.row_scale.map_or(1.0, |s| s[r] as f64);
        self.lambda as f64 * w
    }
}

/// Rows per block when summing over rows; fixed so that sums do not depend on the thread count.
const BLOCK_ROWS: usize = 1024;
/// Rows per block of the whitening products: small enough that the transforms of small data
/// sets (a few thousand rows) still spread over the threads.
const TRANSFORM_ROWS: usize = 256;

fn check_factors(name: &str, m: &[f32], n_rows: usize, f: usize) -> CoreResult<()> {
    if f == 0 {
        return shape_err("factors must be >= 1");
    }
    if m.len() != n_rows * f {
        return shape_err(format!(
            "{name} has {} values, expected {n_rows} rows x {f} factors",
            m.len()
        ));
    }
    Ok(())
}

/// `YᵀY` in f64 (row-major `f x f`): an f32 product per fixed block of rows (lower triangle
/// only), the blocks summed in f64 in a fixed order, so the result does not depend on the thread
/// count, then mirrored, so it is exactly symmetric.
pub fn gramian(y: &[f32], f: usize) -> Vec<f64> {
    let partial: Vec<Vec<f32>> = y
        .par_chunks(BLOCK_ROWS * f)
        .map(|block| {
            let rows = block.len() / f;
            let mut g = vec![0.0f32; f * f];
            let yt = MatRef::from_column_major_slice(block, f, rows);
            let yb = MatRef::from_row_major_slice(block, rows, f);
            let dst = MatMut::from_row_major_slice_mut(&mut g, f, f);
            triangular::matmul(
                dst,
                BlockStructure::TriangularLower,
                Accum::Replace,
                yt,
                BlockStructure::Rectangular,
                yb,
                BlockStructure::Rectangular,
                1.0f32,
                Par::Seq,
            );
            g
        })
        .collect();
    let mut g = vec![0.0f64; f * f];
    for p in partial {
        for a in 0..f {
            for b in 0..=a {
                g[a * f + b] += p[a * f + b] as f64;
            }
        }
    }
    for a in 0..f {
        for b in 0..a {
            g[b * f + a] = g[a * f + b];
        }
    }
    g
}

/// Which triangle of an `f x f` factor holds its non-zeros (see `times_square`); `Full`: a
/// dense factor (the eigenvectors of the per-row penalty's whitening).
#[derive(Clone, Copy, PartialEq)]
enum Triangle {
    Lower,
    Upper,
    Full,
}

/// Below this width a triangular factor is multiplied as a full matrix: the half-size products
/// of the split would no longer run at the full GEMM rate.
const TRI_SPLIT_MIN: usize = 128;

/// `dst (=|+=) lhs · m` for a triangular `m`, splitting `m` in 2 x 2 blocks recursively so that
/// the zero block is skipped: one level does 3/4 of the full product's work, two levels 5/8.
fn tri_matmul(
    dst: MatMut<'_, f32>,
    accum: Accum,
    lhs: MatRef<'_, f32>,
    m: MatRef<'_, f32>,
    tri: Triangle,
) {
    let f = m.ncols();
    if f < TRI_SPLIT_MIN || tri == Triangle::Full {
        matmul(dst, accum, lhs, m, 1.0f32, Par::Seq);
        return;
    }
    let h = (f / 2).div_ceil(16) * 16;
    let (mut d1, mut d2) = dst.split_at_col_mut(h);
    let (a1, a2) = lhs.split_at_col(h);
    let (m11, m12, m21, m22) = m.split_at(h, h);
    tri_matmul(d1.as_mut(), accum, a1, m11, tri);
    match tri {
        // [d1 d2] = [a1 a2] [m11 0; m21 m22]
        Triangle::Lower => {
            matmul(d1.as_mut(), Accum::Add, a2, m21, 1.0f32, Par::Seq);
            tri_matmul(d2.as_mut(), accum, a2, m22, tri);
        }
        // [d1 d2] = [a1 a2] [m11 m12; 0 m22]
        Triangle::Upper | Triangle::Full => {
            matmul(d2.as_mut(), accum, a1, m12, 1.0f32, Par::Seq);
            tri_matmul(d2.as_mut(), Accum::Add, a2, m22, tri);
        }
    }
}

/// `out = a · m` for row-major `a` (`n x f`) and a row-major triangular `f x f` matrix `m`, in
/// parallel over fixed blocks of rows. `out` and `a` have the same shape; `a == None` means
/// `out` itself (each block is copied aside first, so no second `n x f` buffer is needed).
fn times_square(a: Option<&[f32]>, m: &[f32], tri: Triangle, f: usize, out: &mut [f32]) {
    let rhs = MatRef::from_row_major_slice(m, f, f);
    let product = |o: &mut [f32], blk: &[f32]| {
        let rows = blk.len() / f;
        let lhs = MatRef::from_row_major_slice(blk, rows, f);
        let dst = MatMut::from_row_major_slice_mut(o, rows, f);
        tri_matmul(dst, Accum::Replace, lhs, rhs, tri);
    };
    match a {
        Some(a) => out
            .par_chunks_mut(TRANSFORM_ROWS * f)
            .zip(a.par_chunks(TRANSFORM_ROWS * f))
            .for_each(|(o, blk)| product(o, blk)),
        None => out.par_chunks_mut(TRANSFORM_ROWS * f).for_each_init(
            Vec::new,
            |copy: &mut Vec<f32>, o| {
                copy.clear();
                copy.extend_from_slice(o);
                product(o, copy)
            },
        ),
    }
}

/// The rows `rows` of `target` (`f` values each), gathered in that order and multiplied by the
/// `f x f` matrix `m` (see `times_square`).
fn gather_times(
    target: &[f32],
    rows: &[usize],
    m: &[f32],
    tri: Triangle,
    f: usize,
    ws: &mut Workspace,
) -> Vec<f32> {
    let mut out = ws.take(rows.len() * f);
    out.par_chunks_mut(f)
        .zip(rows.par_iter())
        .for_each(|(g, &u)| g.copy_from_slice(&target[u * f..(u + 1) * f]));
    times_square(None, m, tri, f, &mut out);
    out
}

/// Buffers kept from one half-step to the next of a fit.
///
/// A half-step needs a few `n x f` buffers (the other side's factors in the basis, the gathered
/// rows). Allocated afresh, those above glibc's largest mapping threshold (32 MiB: 100k rows of
/// 128 factors) come from the kernel on every call, and each of their pages costs a fault and a
/// clearing: 5-8% of a fit at 128-256 factors with 2 threads. A fit hands one `Workspace` to
/// all its half-steps instead. A taken buffer holds stale values: every caller overwrites it
/// whole before reading it.
#[derive(Default)]
pub struct Workspace {
    free: Vec<Vec<f32>>,
}

impl Workspace {
    /// A buffer of `len` values (contents unspecified): the smallest kept one that is large
    /// enough, else a new one (the largest kept one is dropped, so at most as many buffers are
    /// kept as one half-step uses at once).
    fn take(&mut self, len: usize) -> Vec<f32> {
        let fits = (0..self.free.len())
            .filter(|&k| self.free[k].capacity() >= len)
            .min_by_key(|&k| self.free[k].capacity());
        match fits {
            Some(k) => {
                let mut buf = self.free.swap_remove(k);
                // Shorter: truncates; longer within the capacity: zeroes only the new tail.
                buf.resize(len, 0.0);
                buf
            }
            None => {
                if let Some(k) = (0..self.free.len()).max_by_key(|&k| self.free[k].capacity()) {
                    self.free.swap_remove(k);
                }
                vec![0.0; len]
            }
        }
    }

    /// Returns a buffer for later half-steps.
    fn give(&mut self, buf: Vec<f32>) {
        self.free.push(buf);
    }
}

/// Recomputes every row of `target` (`n_rows x f`) from `fixed` (`n_cols x f`), with buffers
/// of its own (see `solve_side_in`).
pub fn solve_side(
    csr: &CsrView<'_>,
    fixed: &[f32],
    target: &mut [f32],
    f: usize,
    penalty: Penalty<'_>,
    solver: Solver,
) -> CoreResult<()> {
    solve_side_in(
        csr,
        fixed,
        target,
        f,
        penalty,
        solver,
        &mut Workspace::default(),
    )
}

/// Recomputes every row of `target` (`n_rows x f`) from `fixed` (`n_cols x f`), taking its
/// large buffers from `ws` and returning them there.
pub fn solve_side_in(
    csr: &CsrView<'_>,
    fixed: &[f32],
    target: &mut [f32],
    f: usize,
    penalty: Penalty<'_>,
    solver: Solver,
    ws: &mut Workspace,
) -> CoreResult<()> {
    solve_side_impl(csr, Fixed::Keep(fixed), target, f, penalty, solver, ws)
}

/// `solve_side_in` that may also rotate the model: with a per-row penalty (and a solver other
/// than `Reference`) it replaces `fixed` by `fixed · Q`, `Q` the eigenvectors of its Gram matrix
/// (orthogonal), and writes `target` in that frame, i.e. `target · Q` of the unrotated answer.
/// Scores `x · yᵀ` and the objective (its penalties are squared norms) do not change, and a
/// fit that alternates sides need not take the rows back out of the eigenbasis: that bulk
/// `f x f` product per target row is what the per-row penalty costs over one penalty. Otherwise
/// `fixed` is left as it is. On an error `target` is unspecified and `fixed` may be rotated.
pub fn solve_side_rotating(
    csr: &CsrView<'_>,
    fixed: &mut [f32],
    target: &mut [f32],
    f: usize,
    penalty: Penalty<'_>,
    solver: Solver,
    ws: &mut Workspace,
) -> CoreResult<()> {
    solve_side_impl(csr, Fixed::Rotate(fixed), target, f, penalty, solver, ws)
}

/// The fixed side of a half-step: read only, or rotated into the eigenbasis of the per-row
/// penalty (`solve_side_rotating`).
enum Fixed<'a> {
    Keep(&'a [f32]),
    Rotate(&'a mut [f32]),
}

impl Fixed<'_> {
    fn get(&self) -> &[f32] {
        match self {
            Fixed::Keep(y) => y,
            Fixed::Rotate(y) => y,
        }
    }
}

fn solve_side_impl(
    csr: &CsrView<'_>,
    mut fixed_side: Fixed<'_>,
    target: &mut [f32],
    f: usize,
    penalty: Penalty<'_>,
    solver: Solver,
    ws: &mut Workspace,
) -> CoreResult<()> {
    let fixed = fixed_side.get();
    check_factors("fixed factors", fixed, csr.n_cols, f)?;
    check_factors("target factors", target, csr.n_rows(), f)?;
    if csr.data.len() != csr.indices.len() {
        return shape_err("the interaction matrix needs one confidence per stored entry");
    }
    penalty.check(csr.n_rows())?;
    if solver == Solver::Cholesky {
        check_confidences(csr.data)?;
    }
    let regularization = penalty.lambda;
    let g64 = gramian(fixed, f);
    let failures = std::sync::atomic::AtomicUsize::new(0);
    match solver {
        Solver::Reference => {
            target.par_chunks_mut(f).enumerate().for_each_init(
                || vec![0.0f64; f * f + f],
                |scratch, (u, x)| {
                    let (idx, conf) = csr.row(u);
                    if !cholesky_row(&g64, fixed, idx, conf, x, penalty.of(u), scratch) {
                        failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                },
            );
        }
        _ if penalty.row_scale.is_some() => {
            let eig = Eigenbasis::new(&g64, f)?;
            let basis = Basis::PerRow(&eig, penalty);
            match &mut fixed_side {
                Fixed::Keep(y) => {
                    solve_whitened(csr, y, target, f, &basis, solver, &failures, ws);
                }
                Fixed::Rotate(y) => {
                    // V = Y Q in place: `y` becomes the fixed side in the basis, and the rows
                    // stay in it (no transform back).
                    times_square(None, &eig.q, Triangle::Full, f, y);
                    solve_in_basis(csr, y, target, f, &basis, solver, &failures, ws);
                }
            }
        }
        Solver::Auto { steps, tol } if use_z(csr, f) => {
            let pre = Preconditioner::new(&g64, regularization as f64, f)?;
            solve_auto(
                csr,
                fixed,
                target,
                f,
                &pre,
                Stop { steps, tol },
                &failures,
                ws,
            );
        }
        Solver::Cg { .. } | Solver::Auto { .. } | Solver::Cholesky => {
            let pre = Preconditioner::new(&g64, regularization as f64, f)?;
            solve_whitened(
                csr,
                fixed,
                target,
                f,
                &Basis::Shared(&pre),
                solver,
                &failures,
                ws,
            );
        }
    }
    let failed = failures.into_inner();
    if failed > 0 {
        return Err(CoreError::Value(match solver {
            Solver::Cholesky | Solver::Cg { .. } | Solver::Auto { .. } => format!(
                "the system of {failed} row(s) overflowed (non-finite values): the confidences \
                 or factors are too large; scale the ratings down or use confidence=\"log\""
            ),
            _ => format!(
                "the Cholesky system of {failed} row(s) is singular; use regularization > 0"
            ),
        }));
    }
    Ok(())
}

/// Whether a row with a tolerance-driven CG gets the exact solve instead: it has a confidence
/// beyond `EXACT_ABOVE` (a system spanning more orders of magnitude than a few f32 CG steps
/// resolve; rare: linear confidence on raw amounts) and all its confidences suit the exact solve.
fn needs_exact(conf: &[f32]) -> bool {
    conf.iter().any(|&c| c > EXACT_ABOVE) && conf.iter().all(|&c| c.is_finite() && c >= 1.0)
}

/// The change of variables of a half-step, in which every row's system is identity plus a
/// rank-`n_u` term.
///
/// * `Shared`: one penalty `λ` for every row, `M = YᵀY + λI = L Lᵀ`, `ỹ = L⁻¹y`, `x̃ = Lᵀx`
///   (see `Preconditioner`).
/// * `PerRow`: row `r`'s penalty `λ_r`. Its system matrix `YᵀY + λ_r I + Σ_i (c_i − 1) y_i y_iᵀ`
///   cannot share one Cholesky whitening with other rows, an eigendecomposition can: with
///   `YᵀY = Q D Qᵀ` and `s_r = (D + λ_r)^-½` (a vector), `x̃ = s_r⁻¹ ∘ Qᵀx` and
///   `ỹ_i = s_r ∘ Qᵀy_i` give the same `I + Σ_i (c_i − 1) ỹ_i ỹ_iᵀ`. The products by `Q` run in
///   bulk (`V = Y Q` once, the targets there and back; in a fit not back, the model is turned
///   instead: `solve_side_rotating`); per row only the gathered vectors are scaled by `s_r`
///   (O(f) each).
enum Basis<'a> {
    Shared(&'a Preconditioner),
    PerRow(&'a Eigenbasis, Penalty<'a>),
}

impl Basis<'_> {
    /// The factor of the fixed side: `V = Y · m`.
    fn fixed(&self) -> (&[f32], Triangle) {
        match self {
            Basis::Shared(pre) => (&pre.inv_lower_t, Triangle::Upper),
            Basis::PerRow(eig, _) => (&eig.q, Triangle::Full),
        }
    }

    /// The factor taking a target row to the basis: `t = x · m`.
    fn into(&self) -> (&[f32], Triangle) {
        match self {
            Basis::Shared(pre) => (&pre.lower, Triangle::Lower),
            Basis::PerRow(eig, _) => (&eig.q, Triangle::Full),
        }
    }

    /// The factor taking it back: `x = t · m`.
    fn back(&self) -> (&[f32], Triangle) {
        match self {
            Basis::Shared(pre) => (&pre.inv_lower_t_t, Triangle::Lower),
            Basis::PerRow(eig, _) => (&eig.q_t, Triangle::Full),
        }
    }
}

/// The half-step of `Cg`, `Cholesky`, and `Auto` off its `Z` path, in the coordinates of
/// `basis`: the fixed side is transformed once (`V`), every row solved there, the targets
/// transformed back in bulk.
///
/// Under `Auto`, rows with at most `cold_row_limit(f)` items (and fewer than the step cap) run
/// their CG from zero: it converges in at most `n + 1` steps from any start, a few O(n f)
/// steps, while a warm start costs an `f x f` product per row. Only the other CG rows are
/// transformed for their warm start. `Cg` (and `tol = 0`, the classic fixed-step CG) warm-starts
/// every row; `Cholesky` needs no start. Rows with confidences beyond `EXACT_ABOVE` get the exact
/// solve under a tolerance.
#[allow(clippy::too_many_arguments)]
fn solve_whitened(
    csr: &CsrView<'_>,
    fixed: &[f32],
    target: &mut [f32],
    f: usize,
    basis: &Basis<'_>,
    solver: Solver,
    failures: &std::sync::atomic::AtomicUsize,
    ws: &mut Workspace,
) {
    let (m, tri) = basis.fixed();
    let mut v = ws.take(fixed.len());
    times_square(Some(fixed), m, tri, f, &mut v);
    solve_in_basis(csr, &v, target, f, basis, solver, failures, ws);
    ws.give(v);
    let (m, tri) = basis.back();
    times_square(None, m, tri, f, target);
}

/// `solve_whitened` once the fixed side is in the basis (`v`): every row solved there, left
/// there (as rows of the basis: `s_r ∘ x̃` with a per-row penalty).
#[allow(clippy::too_many_arguments)]
fn solve_in_basis(
    csr: &CsrView<'_>,
    v: &[f32],
    target: &mut [f32],
    f: usize,
    basis: &Basis<'_>,
    solver: Solver,
    failures: &std::sync::atomic::AtomicUsize,
    ws: &mut Workspace,
) {
    let stop = match solver {
        Solver::Cg { steps, tol } | Solver::Auto { steps, tol } => Stop { steps, tol },
        _ => Stop { steps: 0, tol: 0.0 },
    };
    let short_max = match solver {
        Solver::Auto { steps, .. } => cold_row_limit(f).min(steps.saturating_sub(1)),
        _ => 0,
    };
    let kind = |conf: &[f32]| match solver {
        Solver::Cholesky => RowKind::Exact,
        _ if conf.is_empty() => RowKind::Empty,
        _ if stop.tol > 0.0 && needs_exact(conf) => RowKind::Exact,
        _ if conf.len() <= short_max => RowKind::ColdCg,
        _ => RowKind::Cg,
    };
    // The warm starts of the CG rows, in the basis.
    let warm: Vec<usize> = (0..csr.n_rows())
        .filter(|&u| kind(csr.row(u).1) == RowKind::Cg)
        .collect();
    let mut slot = vec![usize::MAX; csr.n_rows()];
    for (k, &u) in warm.iter().enumerate() {
        slot[u] = k;
    }
    let (m, tri) = basis.into();
    let starts = gather_times(target, &warm, m, tri, f, ws);
    target.par_chunks_mut(f).enumerate().for_each_init(
        || (CgScratch::new(f), ExactScratch::new(f), vec![0.0f32; f]),
        |(cg, exact, buf), (u, t)| {
            let (idx, conf) = csr.row(u);
            let scale: Option<&[f32]> = match basis {
                Basis::Shared(_) => None,
                Basis::PerRow(eig, penalty) => {
                    eig.scale(penalty.of(u), buf);
                    Some(buf)
                }
            };
            match kind(conf) {
                RowKind::Empty => t.iter_mut().for_each(|v| *v = 0.0),
                RowKind::Exact => {
                    if !exact_row(v, scale, idx, conf, t, exact) {
                        failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                RowKind::Cg | RowKind::ColdCg => {
                    if slot[u] == usize::MAX {
                        t.iter_mut().for_each(|v| *v = 0.0);
                    } else {
                        // The warm start: x̃₀ = (its row in the basis) / s_r.
                        t.copy_from_slice(&starts[slot[u] * f..(slot[u] + 1) * f]);
                        if let Some(s) = scale {
                            t.iter_mut().zip(s).for_each(|(ti, &si)| *ti /= si);
                        }
                    }
                    let ahead = csr.following(u, PREFETCH_AHEAD);
                    cg_row(v, scale, idx, conf, ahead, t, stop, cg);
                }
            }
            // Per row: the basis' row is s_r ∘ x̃.
            if let Some(s) = scale {
                t.iter_mut().zip(s).for_each(|(ti, &si)| *ti *= si);
            }
        },
    );
    ws.give(starts);
}

/// `YᵀY = Q D Qᵀ` for the per-row penalty's whitening (see `Basis::PerRow`).
struct Eigenbasis {
    /// `Q` and `Qᵀ` (row-major f32): the eigenvectors as columns / rows.
    q: Vec<f32>,
    q_t: Vec<f32>,
    /// The eigenvalues (rounding below zero clipped).
    d: Vec<f64>,
    /// The smallest `d_k + λ_r` used: with `λ_r = 0` and a rank-deficient `YᵀY`, a relative
    /// 1e-7 of the trace (the jitter of `Preconditioner`).
    floor: f64,
}

impl Eigenbasis {
    fn new(g64: &[f64], f: usize) -> CoreResult<Self> {
        let degenerate = || {
            CoreError::Value(
                "the factors are degenerate (YᵀY is not finite); use regularization > 0 and \
                 finite ratings"
                    .into(),
            )
        };
        if !g64.iter().all(|v| v.is_finite()) {
            return Err(degenerate());
        }
        let (vecs, vals) = dense64::eigh(MatRef::from_row_major_slice(g64, f, f))?;
        let d: Vec<f64> = vals.iter().map(|&v| v.max(0.0)).collect();
        let trace: f64 = d.iter().sum();
        let mut q = vec![0.0f32; f * f];
        let mut q_t = vec![0.0f32; f * f];
        for r in 0..f {
            for c in 0..f {
                let v = vecs[(r, c)];
                if !v.is_finite() {
                    return Err(degenerate());
                }
                q[r * f + c] = v as f32;
                q_t[c * f + r] = v as f32;
            }
        }
        Ok(Self {
            q,
            q_t,
            d,
            floor: 1e-7 * trace.max(1e-30) / f as f64,
        })
    }

    /// `s = (D + λ)^-½`.
    fn scale(&self, lambda: f64, s: &mut [f32]) {
        for (sk, &dk) in s.iter_mut().zip(&self.d) {
            *sk = (1.0 / (dk + lambda).max(self.floor).sqrt()) as f32;
        }
    }
}

/// The exact solves take the square roots of `c − 1`: confidences must be finite and >= 1.
fn check_confidences(data: &[f32]) -> CoreResult<()> {
    match data.iter().find(|c| !(c.is_finite() && **c >= 1.0)) {
        Some(bad) => Err(CoreError::Value(format!(
            "confidences must be finite and >= 1 (c = 1 + alpha * r), got {bad}"
        ))),
        None => Ok(()),
    }
}

/// The shared part of every row's system, `M = YᵀY + λI = L Lᵀ`, used as a change of
/// variables. With `ỹ_i = L⁻¹ y_i` and `x̃ = Lᵀ x`, the row system
/// `(M + Σ_i (c_i − 1) y_i y_iᵀ) x = Σ_i c_i y_i` becomes
///
///   (I + Σ_i (c_i − 1) ỹ_i ỹ_iᵀ) x̃ = Σ_i c_i ỹ_i,
///
/// an identity plus a rank-`n_u` term: conjugate gradients on it converge in at most `n_u + 1`
/// steps, each step costs O(f n_u) (no `f x f` product), and the per-row transforms cost O(f²).
/// This is CG preconditioned with `M`, which the huge confidences of sales amounts (thousands)
/// make far better conditioned than plain CG on the original system.
struct Preconditioner {
    /// `L` (lower triangular, row-major).
    lower: Vec<f32>,
    /// `L⁻ᵀ` (upper triangular, row-major).
    inv_lower_t: Vec<f32>,
    /// `L⁻¹` (lower triangular, row-major).
    inv_lower_t_t: Vec<f32>,
}

impl Preconditioner {
    fn new(gramian: &[f64], reg: f64, f: usize) -> CoreResult<Self> {
        let trace: f64 = (0..f).map(|d| gramian[d * f + d]).sum();
        // With λ = 0 and a rank-deficient YᵀY the factorisation needs a jitter; it only changes
        // the preconditioner by a relative 1e-7 of the trace, and is added only when needed.
        let mut jitter = 0.0f64;
        for _ in 0..8 {
            let mut a = gramian.to_vec();
            for d in 0..f {
                a[d * f + d] += reg + jitter;
            }
            if dense64::cholesky(&mut a, f, f) {
                // Zero the strict upper triangle (it still holds the input).
                for r in 0..f {
                    for c in r + 1..f {
                        a[r * f + c] = 0.0;
                    }
                }
                // L⁻¹ column by column: solve L z = e_c (z_k = 0 above the diagonal).
                let mut inv = vec![0.0f64; f * f];
                let mut z = vec![0.0f64; f];
                for c in 0..f {
                    for k in c..f {
                        let e = if k == c { 1.0 } else { 0.0 };
                        let s = dense64::dot(&a[k * f + c..k * f + k], &z[c..k]);
                        z[k] = (e - s) / a[k * f + k];
                    }
                    for k in c..f {
                        inv[k * f + c] = z[k];
                    }
                }
                let lower = a.iter().map(|v| *v as f32).collect();
                let inv_lower_t_t: Vec<f32> = inv.iter().map(|v| *v as f32).collect();
                let mut inv_lower_t = vec![0.0f32; f * f];
                for r in 0..f {
                    for c in 0..f {
                        inv_lower_t[r * f + c] = inv[c * f + r] as f32;
                    }
                }
                return Ok(Self {
                    lower,
                    inv_lower_t,
                    inv_lower_t_t,
                });
            }
            jitter = if jitter == 0.0 {
                1e-7 * trace.max(1e-30) / f as f64
            } else {
                jitter * 100.0
            };
        }
        Err(CoreError::Value(
            "the factors are degenerate (YᵀY + regularization is singular); use regularization > 0"
                .into(),
        ))
    }
}

/// How many rows of the fixed side to prefetch ahead of the one being read: the random reads of
/// item (or user) vectors are what bounds a half-step, not the arithmetic.
const PREFETCH_AHEAD: usize = 8;

/// Rows whose largest confidence exceeds this are solved in a rescaled form (see `cg_row_body`).
const LARGE_CONFIDENCE: f32 = 1e6;
/// With a tolerance, rows with a confidence above this get the exact solve instead of CG: their
/// systems span more orders of magnitude than a few f32 CG steps resolve.
const EXACT_ABOVE: f32 = 1e5;

/// When a row's CG stops: after `steps` steps, or (`tol > 0`) once the excess of the row's
/// objective over its minimum is provably at most `tol` times the objective (see `cg_row_body`).
#[derive(Clone, Copy)]
struct Stop {
    steps: usize,
    tol: f32,
}

multiversion!(fn cg_row(
    yw: &[f32], scale: Option<&[f32]>, idx: &[i32], conf: &[f32], ahead: &[i32], xt: &mut [f32],
    stop: Stop, scratch: &mut CgScratch,
) => cg_row_body);

/// Per-thread work space of the CG rows. Vectors are padded with zeros to `stride` values (a
/// multiple of 8) so that the batched operations run on whole SIMD registers.
struct CgScratch {
    stride: usize,
    /// `x̃`, `r`, `p` and `Ãp`, `stride` values each.
    vectors: Vec<f32>,
    /// The row's whitened vectors, copied contiguously (`stride` values per item, zero-padded)
    /// in the first pass, so that every later pass streams them instead of gathering again.
    gathered: Vec<f32>,
    /// One coefficient per item of the row: dot products, then their weights.
    coef: Vec<f32>,
}

impl CgScratch {
    fn new(f: usize) -> Self {
        let stride = f.div_ceil(8) * 8;
        Self {
            stride,
            vectors: vec![0.0; 4 * stride],
            gathered: Vec::new(),
            coef: Vec::new(),
        }
    }
}

/// A few CG steps on the whitened system of one row, warm-started from the current `x̃`. The
/// row's whitened vectors are the rows `i` of `yw`, times `scale` elementwise when given (the
/// per-row penalty's `s_r`, see `Basis::PerRow`).
///
/// Every pass over the row's items is two batched operations on the gathered vectors: the dot
/// products `s = Ỹ_u v` (eight items at a time) and the update `Ỹ_uᵀ (w ∘ s)` (the result held
/// in registers across all items), instead of a dot and an axpy per item.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn cg_row_body<S: Simd>(
    yw: &[f32],
    scale: Option<&[f32]>,
    idx: &[i32],
    conf: &[f32],
    ahead: &[i32],
    xt: &mut [f32],
    stop: Stop,
    scratch: &mut CgScratch,
) {
    let Stop { steps, tol } = stop;
    let f = xt.len();
    let n = idx.len();
    if n == 0 {
        // No observed item: the exact solution of the system is 0.
        xt.iter_mut().for_each(|v| *v = 0.0);
        return;
    }
    let CgScratch {
        stride,
        vectors,
        gathered,
        coef,
    } = scratch;
    let stride = *stride;
    let (x, rest) = vectors.split_at_mut(stride);
    let (r, rest) = rest.split_at_mut(stride);
    let (p, ap) = rest.split_at_mut(stride);
    x[..f].copy_from_slice(xt);
    // First pass: gather the row's vectors from memory, prefetching ahead, also into the next
    // rows (`ahead` holds the indices that follow this row in the CSR arrays). The padding of
    // each gathered row stays zero: `stride` is fixed for the scratch's lifetime.
    let row_of = |i: i32| &yw[i as usize * f..(i as usize + 1) * f];
    if gathered.len() < n * stride {
        gathered.resize(n * stride, 0.0);
    }
    for (&i, _) in idx.iter().zip(0..PREFETCH_AHEAD) {
        S::prefetch(row_of(i));
    }
    for (k, &i) in idx.iter().enumerate() {
        match idx.get(k + PREFETCH_AHEAD) {
            Some(&next) => S::prefetch(row_of(next)),
            None => {
                if let Some(&next) = ahead.get(k + PREFETCH_AHEAD - n) {
                    S::prefetch(row_of(next));
                }
            }
        }
        copy_scaled(&mut gathered[k * stride..k * stride + f], row_of(i), scale);
    }
    let rows = &gathered[..n * stride];
    coef.resize(n, 0.0);
    // Confidences beyond LARGE_CONFIDENCE (linear confidence on raw amounts with a large alpha)
    // would overflow f32 in the products below (|r|² ~ c², pᵀÃp ~ c³): the row's system is then
    // divided by its largest confidence, `eye · I + Σ_i (c_i − 1)·eye ỹ_i ỹ_iᵀ` with
    // `eye = 1 / c_max`, which has the same solution. Otherwise `eye = 1` (exact no-op).
    let c_max = conf.iter().fold(1.0f32, |m, &c| m.max(c));
    let eye = if c_max > LARGE_CONFIDENCE {
        1.0 / c_max
    } else {
        1.0
    };
    // r = b̃ − Ã x̃ = −x̃ + Σ_i (c_i − (c_i − 1) ỹ_i·x̃) ỹ_i
    S::dots(rows, stride, x, coef);
    // x̃ᵀ(Ã − I)x̃ = Σ_i (c_i − 1)(ỹ_i·x̃)², for the row objective below.
    let mut quad = 0.0f64;
    for (w, &c) in coef.iter_mut().zip(conf) {
        let (cs, ws) = (c * eye, (c - 1.0) * eye);
        quad += ws as f64 * (*w as f64) * (*w as f64);
        *w = cs - ws * *w;
    }
    for (ri, xi) in r.iter_mut().zip(x.iter()) {
        *ri = -*xi * eye;
    }
    S::gemv_t(rows, stride, coef, r);
    p.copy_from_slice(r);
    let mut rs = S::dot(r, r);
    // The stopping rule. The row's objective φ(x̃) = ½ x̃ᵀÃx̃ − b̃ᵀx̃ is minimised by the solve;
    // its excess over the minimum is ½ rᵀÃ⁻¹r ≤ ½ |r|² / eye (Ã ≥ eye·I), and every CG step
    // lowers φ by ½ α |r|². So `½ |r|² / eye ≤ tol · (−φ)` bounds the row's relative excess by
    // `tol` (−φ ≤ −φ*), whatever the scale of the confidences, at no extra pass over the row:
    // φ(x̃₀) = −½ (eye |x̃₀|² + x̃₀ᵀ(Ã − eye·I)x̃₀) − x̃₀ᵀr₀.
    let xx = S::dot(x, x) as f64;
    let mut phi = -0.5 * (eye as f64 * xx + quad) - S::dot(x, r) as f64;
    let (tol, eye64) = (tol as f64, eye as f64);
    for _ in 0..steps {
        if rs <= 1e-30 || (tol > 0.0 && 0.5 * rs as f64 / eye64 <= tol * -phi) {
            break;
        }
        // Ãp = p + Σ_i (c_i − 1)(ỹ_i·p) ỹ_i
        S::dots(rows, stride, p, coef);
        for (w, &c) in coef.iter_mut().zip(conf) {
            *w *= (c - 1.0) * eye;
        }
        for (a, pi) in ap.iter_mut().zip(p.iter()) {
            *a = *pi * eye;
        }
        S::gemv_t(rows, stride, coef, ap);
        let pap = S::dot(p, ap);
        if pap.is_nan() || pap <= 0.0 {
            break;
        }
        let a = rs / pap;
        phi -= 0.5 * a as f64 * rs as f64;
        S::axpy(a, p, x);
        S::axpy(-a, ap, r);
        let rs_new = S::dot(r, r);
        let beta = rs_new / rs;
        for (pi, ri) in p.iter_mut().zip(r.iter()) {
            *pi = ri + beta * *pi;
        }
        rs = rs_new;
    }
    xt.copy_from_slice(&x[..f]);
}

/// Row `i` of `yw` (rows of `buf.len()` values), times `scale` elementwise (into `buf`) when given.
#[inline(always)]
fn whitened_vector<'a>(
    yw: &'a [f32],
    scale: Option<&[f32]>,
    i: i32,
    buf: &'a mut [f32],
) -> &'a [f32] {
    let f = buf.len();
    let y = &yw[i as usize * f..(i as usize + 1) * f];
    match scale {
        None => y,
        Some(_) => {
            copy_scaled(buf, y, scale);
            buf
        }
    }
}

/// `dst = src`, times `scale` elementwise when given.
#[inline(always)]
fn copy_scaled(dst: &mut [f32], src: &[f32], scale: Option<&[f32]>) {
    match scale {
        None => dst.copy_from_slice(src),
        Some(s) => {
            for ((d, &v), &sk) in dst.iter_mut().zip(src).zip(s) {
                *d = v * sk;
            }
        }
    }
}

/// Per-thread work space of the exact whitened solves (f64).
struct ExactScratch {
    /// The row's scaled whitened vectors `u_i = sqrt(c_i − 1) ỹ_i`: `n` rows of `f` values when
    /// `n ≥ f`, else transposed (`f` rows of `n` values); rows zero-padded to a multiple of 8.
    u: Vec<f64>,
    /// `b̃ = Σ c_i ỹ_i`, then the solution.
    b: Vec<f64>,
    /// The `n x n` or `f x f` system (padded row stride), factorised in place.
    system: Vec<f64>,
    /// `U b̃`, then the Woodbury correction's coefficients.
    t: Vec<f64>,
    /// One scaled whitened vector (per-row penalty).
    scaled: Vec<f32>,
}

impl ExactScratch {
    fn new(f: usize) -> Self {
        Self {
            u: Vec::new(),
            b: vec![0.0; f],
            system: Vec::new(),
            t: Vec::new(),
            scaled: Vec::new(),
        }
    }
}

multiversion!(fn exact_row(
    yw: &[f32], scale: Option<&[f32]>, idx: &[i32], conf: &[f32], xt: &mut [f32],
    scratch: &mut ExactScratch,
) -> bool => exact_row_body);

/// The exact solution of one row's whitened system
///
///   (I + Uᵀ U) x̃ = b̃,   U = diag(sqrt(c − 1)) Ỹ_u,   b̃ = Ỹ_uᵀ c,
///
/// in f64 (`Ỹ_u`: the rows `idx` of `yw`, times `scale` elementwise when given). With `n` items
/// and `f` factors it factorises whichever system is smaller:
/// * `n < f`: by Woodbury, `(I + UᵀU)⁻¹ = I − Uᵀ (I + U Uᵀ)⁻¹ U`, so
///   `x̃ = b̃ − Uᵀ z` with `(I + U Uᵀ) z = U b̃`: O(n² f + n³);
/// * `n ≥ f`: the `f x f` system itself: O(f² n + f³).
///
/// The products are register-tiled rank-k updates. Both systems are identity plus a positive
/// semi-definite term (`c ≥ 1`), so their eigenvalues are ≥ 1 whatever the confidences: no
/// accuracy is lost to the scale of the ratings. Returns false only if the factorisation meets a
/// non-finite value (confidences or factors beyond f64's range).
#[inline(always)]
fn exact_row_body<S: Simd>(
    yw: &[f32],
    scale: Option<&[f32]>,
    idx: &[i32],
    conf: &[f32],
    xt: &mut [f32],
    scratch: &mut ExactScratch,
) -> bool {
    let f = xt.len();
    let n = idx.len();
    if n == 0 {
        xt.iter_mut().for_each(|v| *v = 0.0);
        return true;
    }
    let ExactScratch {
        u,
        b,
        system,
        t,
        scaled,
    } = scratch;
    b.iter_mut().for_each(|v| *v = 0.0);
    scaled.resize(f, 0.0);
    let weights = conf.iter().map(|&c| {
        let c = c as f64;
        (c, (c - 1.0).max(0.0).sqrt())
    });
    if n < f {
        // Uᵀ: f rows of n values (stride s), K = I + U Uᵀ = I + Σ_d col_d col_dᵀ, t = U b̃.
        let s = n.div_ceil(8) * 8;
        u.clear();
        u.resize(f * s, 0.0);
        for (k, (&i, (c, w))) in idx.iter().zip(weights).enumerate() {
            let y = whitened_vector(yw, scale, i, scaled);
            for (d, &yd) in y.iter().enumerate() {
                let yd = yd as f64;
                u[d * s + k] = w * yd;
                b[d] += c * yd;
            }
        }
        system.clear();
        system.resize(s * s, 0.0);
        S::syrk_lower_f64(u, f, s, system);
        for a in 0..n {
            system[a * s + a] += 1.0;
        }
        t.clear();
        t.resize(s, 0.0);
        for (d, &bd) in b.iter().enumerate() {
            for (tk, &ud) in t.iter_mut().zip(&u[d * s..(d + 1) * s]) {
                *tk += bd * ud;
            }
        }
        if !dense64::cholesky(system, n, s) {
            return false;
        }
        dense64::cholesky_solve(system, n, s, &mut t[..n]);
        for (d, bd) in b.iter_mut().enumerate() {
            *bd -= dense64::dot(&u[d * s..d * s + n], &t[..n]);
        }
    } else {
        // U: n rows of f values (stride s), A = I + UᵀU.
        let s = f.div_ceil(8) * 8;
        u.clear();
        u.resize(n * s, 0.0);
        for (k, (&i, (c, w))) in idx.iter().zip(weights).enumerate() {
            let y = whitened_vector(yw, scale, i, scaled);
            for ((ud, bd), &yd) in u[k * s..k * s + f].iter_mut().zip(b.iter_mut()).zip(y) {
                let yd = yd as f64;
                *ud = w * yd;
                *bd += c * yd;
            }
        }
        system.clear();
        system.resize(s * s, 0.0);
        S::syrk_lower_f64(u, n, s, system);
        for d in 0..f {
            system[d * s + d] += 1.0;
        }
        if !dense64::cholesky(system, f, s) {
            return false;
        }
        dense64::cholesky_solve(system, f, s, b);
    }
    for (x, &v) in xt.iter_mut().zip(b.iter()) {
        *x = v as f32;
    }
    true
}

/// The longest row (items) that `Solver::Auto` solves exactly by Woodbury at rank `f`: about
/// `sqrt(f)` (at most `f − 1`). The Woodbury solve costs about `f n² / 2` f64 multiply-adds, a
/// warm-started CG row a few steps of `2 n f` f32 ones plus its two per-row `f x f` products;
/// measured on the 100k x 20k synthetic set (1 thread, f = 32, 128, 256), limits of
/// `sqrt(f)`, `4 + sqrt(16 + f)`, `8 + sqrt(64 + f)` and `16 + sqrt(256 + f)` items were
/// fastest to slowest in that order.
fn short_row_limit(f: usize) -> usize {
    let n = (f as f64).sqrt().round() as usize;
    n.min(f.saturating_sub(1))
}

/// The longest row (items) whose CG starts from zero in `solve_whitened`: a cold CG takes up to
/// `n + 1` steps of about `4 n f` flops, the warm start's transform about `2 f²`, so rows with
/// `n² <= f / 2` are cheaper cold.
fn cold_row_limit(f: usize) -> usize {
    ((f as f64 / 2.0).sqrt().round() as usize).min(f.saturating_sub(1))
}

/// What `Solver::Auto` does with one row.
#[derive(Clone, Copy, PartialEq)]
enum RowKind {
    Empty,
    /// Exact: Woodbury (`n < f`) or the `f x f` whitened system.
    Exact,
    Cg,
    /// CG from zero instead of the warm start (short rows in `solve_whitened`).
    ColdCg,
}

fn row_kind(conf: &[f32], short_max: usize) -> RowKind {
    let n = conf.len();
    if n == 0 {
        return RowKind::Empty;
    }
    if n > short_max && !conf.iter().any(|&c| c > EXACT_ABOVE) {
        return RowKind::Cg;
    }
    // The exact solves take square roots of c − 1: other confidences stay with CG, which
    // handles them as before.
    if conf.iter().all(|&c| c.is_finite() && c >= 1.0) {
        RowKind::Exact
    } else {
        RowKind::Cg
    }
}

/// The shared, read-only inputs of one `Solver::Auto` half-step.
struct AutoCtx<'a> {
    csr: &'a CsrView<'a>,
    /// The other side's whitened factors `W = Y L⁻ᵀ`.
    whitened: &'a [f32],
    /// `Z = Y (YᵀY + λI)⁻¹ = W L⁻¹`: the rows are written in the original coordinates.
    z: &'a [f32],
    short_max: usize,
    stop: Stop,
}

/// Per-thread work space of `Solver::Auto`.
struct AutoScratch {
    cg: CgScratch,
    exact: ExactScratch,
    /// A short row's whitened vectors in f64 (`n` rows of `f` values, padded to a multiple of 8),
    /// its `n x n` system and coefficients, and an f64 accumulator for the result.
    rows64: Vec<f64>,
    system: Vec<f64>,
    coef: Vec<f64>,
    acc: Vec<f64>,
}

impl AutoScratch {
    fn new(f: usize) -> Self {
        Self {
            cg: CgScratch::new(f),
            exact: ExactScratch::new(f),
            rows64: Vec::new(),
            system: Vec::new(),
            coef: Vec::new(),
            acc: vec![0.0; f],
        }
    }
}

/// `Solver::Auto`'s half-step. Every row's system is solved in whitened coordinates (see
/// `Preconditioner`) but, unlike `Cg`, the target is not transformed there and back in bulk:
/// * rows with at most `short_row_limit(f)` items (most rows at high rank) get the exact
///   Woodbury solve, `x̃ = W_uᵀ w` with `n_u` coefficients `w` in f64, written out as
///   `x = Z_uᵀ w` (no `f x f` work per row);
/// * the other rows ("long": CG to tolerance from the warm start `x̃₀ = Lᵀ x₀`, or the exact
///   solve for huge confidences) are gathered, transformed to whitened coordinates and back
///   with two products over those rows only, at the GEMM rate.
#[allow(clippy::too_many_arguments)]
fn solve_auto(
    csr: &CsrView<'_>,
    fixed: &[f32],
    target: &mut [f32],
    f: usize,
    pre: &Preconditioner,
    stop: Stop,
    failures: &std::sync::atomic::AtomicUsize,
    ws: &mut Workspace,
) {
    let mut whitened = ws.take(fixed.len());
    times_square(
        Some(fixed),
        &pre.inv_lower_t,
        Triangle::Upper,
        f,
        &mut whitened,
    );
    let mut z = ws.take(fixed.len());
    times_square(
        Some(&whitened),
        &pre.inv_lower_t_t,
        Triangle::Lower,
        f,
        &mut z,
    );
    let ctx = AutoCtx {
        csr,
        whitened: &whitened,
        z: &z,
        short_max: short_row_limit(f),
        stop,
    };
    // The rows solved in whitened coordinates (see `long_row_body`), in increasing order.
    let long: Vec<usize> = (0..csr.n_rows())
        .filter(|&u| {
            let (idx, conf) = csr.row(u);
            match row_kind(conf, ctx.short_max) {
                RowKind::Cg | RowKind::ColdCg => true,
                RowKind::Exact => idx.len() >= f,
                RowKind::Empty => false,
            }
        })
        .collect();
    // The long rows' warm starts, whitened: x̃₀ = Lᵀ x₀ (as rows: x̃₀ᵀ = x₀ᵀ L).
    let mut gathered = gather_times(target, &long, &pre.lower, Triangle::Lower, f, ws);
    // Short and empty rows, in place in the original coordinates.
    target.par_chunks_mut(f).enumerate().for_each_init(
        || AutoScratch::new(f),
        |scratch, (u, x)| {
            if !short_row(&ctx, u, x, scratch) {
                failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        },
    );
    // Long rows in whitened coordinates, then back: xᵀ = x̃ᵀ L⁻¹.
    gathered
        .par_chunks_mut(f)
        .zip(long.par_iter())
        .for_each_init(
            || AutoScratch::new(f),
            |scratch, (xt, &u)| {
                if !long_row(&ctx, u, xt, scratch) {
                    failures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            },
        );
    times_square(None, &pre.inv_lower_t_t, Triangle::Lower, f, &mut gathered);
    for (&u, g) in long.iter().zip(gathered.chunks_exact(f)) {
        target[u * f..(u + 1) * f].copy_from_slice(g);
    }
    ws.give(whitened);
    ws.give(z);
    ws.give(gathered);
}

/// Below this rank `Solver::Auto` is the whitened `Cg`: the `f x f` products are cheap there
/// and reading both `W` and `Z` rows costs more than it saves once they outgrow the cache.
/// Measured per sweep (1 thread): on 100k x 20k x 1M (rows of ~8 items, 20k articles) the `Z`
/// path was 1.09x / 1.11x / 1.06x / 1.14x faster at 32 / 64 / 128 / 256 factors, on 200k x 50k
/// x 5M (rows of ~25 items, 50k articles) 0.94x / 0.92x at 32 / 64 and equal at 128.
const Z_MIN_RANK: usize = 96;

/// Whether `Solver::Auto` takes the `Z` path: from rank `Z_MIN_RANK` on, when one `f x f`
/// product over the other side (`Z`) plus the two products over the long rows cost less than
/// the two products over the whole target (the whitened `Cg`).
fn use_z(csr: &CsrView<'_>, f: usize) -> bool {
    if f < Z_MIN_RANK {
        return false;
    }
    let short_max = short_row_limit(f);
    let n_target = csr.n_rows();
    let long = (0..n_target)
        .filter(|&u| (csr.indptr[u + 1] - csr.indptr[u]) as usize > short_max)
        .count();
    csr.n_cols + 2 * long < 2 * n_target
}

multiversion!(fn short_row(
    ctx: &AutoCtx<'_>, u: usize, x: &mut [f32], scratch: &mut AutoScratch,
) -> bool => short_row_body);

/// One short or empty row of `solve_auto`, in the original coordinates (long rows are left as
/// they are); false when the exact solve met non-finite values.
#[inline(always)]
fn short_row_body<S: Simd>(
    ctx: &AutoCtx<'_>,
    u: usize,
    x: &mut [f32],
    scratch: &mut AutoScratch,
) -> bool {
    let f = x.len();
    let (idx, conf) = ctx.csr.row(u);
    match row_kind(conf, ctx.short_max) {
        RowKind::Empty => {
            x.iter_mut().for_each(|v| *v = 0.0);
            true
        }
        RowKind::Exact if idx.len() < f => {
            let ahead = ctx.csr.following(u, PREFETCH_AHEAD);
            woodbury_row::<S>(ctx, idx, conf, ahead, x, scratch)
        }
        _ => true,
    }
}

multiversion!(fn long_row(
    ctx: &AutoCtx<'_>, u: usize, xt: &mut [f32], scratch: &mut AutoScratch,
) -> bool => long_row_body);

/// One long row of `solve_auto` in whitened coordinates: `xt` holds `x̃₀ = Lᵀ x₀` and gets `x̃`.
#[inline(always)]
fn long_row_body<S: Simd>(
    ctx: &AutoCtx<'_>,
    u: usize,
    xt: &mut [f32],
    scratch: &mut AutoScratch,
) -> bool {
    let (idx, conf) = ctx.csr.row(u);
    match row_kind(conf, ctx.short_max) {
        RowKind::Exact => {
            exact_row_body::<S>(ctx.whitened, None, idx, conf, xt, &mut scratch.exact)
        }
        _ => {
            let ahead = ctx.csr.following(u, PREFETCH_AHEAD);
            cg_row_body::<S>(
                ctx.whitened,
                None,
                idx,
                conf,
                ahead,
                xt,
                ctx.stop,
                &mut scratch.cg,
            );
            true
        }
    }
}

/// The exact solve of one row with `n < f` items, by Woodbury on its whitened system
/// `(I + UᵀU) x̃ = b̃` (see `exact_row_body`): with `K = W_u W_uᵀ` (`n x n`, the Gram matrix of
/// the row's whitened vectors), `s = sqrt(c − 1)` and `M = I + diag(s) K diag(s)`,
///
///   x̃ = W_uᵀ w,   w = c − s ∘ z,   M z = s ∘ (K c),
///
/// and in the original coordinates `x = L⁻ᵀ x̃ = Z_uᵀ w`. Everything after the gather is in f64;
/// `K` is a Gram matrix of the gathered vectors, so `M ≥ I` whatever the confidences.
/// O(n² f + n³), no `f x f` work. False on non-finite values.
#[inline(always)]
fn woodbury_row<S: Simd>(
    ctx: &AutoCtx<'_>,
    idx: &[i32],
    conf: &[f32],
    ahead: &[i32],
    x: &mut [f32],
    scratch: &mut AutoScratch,
) -> bool {
    let f = x.len();
    let n = idx.len();
    let sf = f.div_ceil(8) * 8;
    let AutoScratch {
        acc,
        rows64,
        system,
        coef,
        ..
    } = scratch;
    let w_of = |i: i32| &ctx.whitened[i as usize * f..(i as usize + 1) * f];
    let z_of = |i: i32| &ctx.z[i as usize * f..(i as usize + 1) * f];
    let prefetch = |i: i32| {
        S::prefetch(w_of(i));
        S::prefetch(z_of(i));
    };
    for &i in idx.iter().take(PREFETCH_AHEAD) {
        prefetch(i);
    }
    // The row's whitened vectors in f64, one per row of `sf` values (zero-padded).
    rows64.resize(n * sf, 0.0);
    for (k, &i) in idx.iter().enumerate() {
        match idx.get(k + PREFETCH_AHEAD) {
            Some(&next) => prefetch(next),
            None => {
                if let Some(&next) = ahead.get(k + PREFETCH_AHEAD - n) {
                    prefetch(next);
                }
            }
        }
        let dst = &mut rows64[k * sf..(k + 1) * sf];
        for (d, &v) in dst.iter_mut().zip(w_of(i)) {
            *d = v as f64;
        }
        dst[f..].iter_mut().for_each(|v| *v = 0.0);
    }
    // K (lower triangle), then K c from it.
    system.resize(n * n, 0.0);
    S::gram_lower_f64(rows64, n, sf, system, n);
    coef.clear();
    coef.resize(n, 0.0);
    for a in 0..n {
        for b in 0..=a {
            let kab = system[a * n + b];
            coef[a] += kab * conf[b] as f64;
            if b < a {
                coef[b] += kab * conf[a] as f64;
            }
        }
    }
    // M = I + S K S, right-hand side s ∘ (K c).
    let sq = |c: f32| (c as f64 - 1.0).max(0.0).sqrt();
    for a in 0..n {
        let sa = sq(conf[a]);
        coef[a] *= sa;
        for b in 0..=a {
            system[a * n + b] *= sa * sq(conf[b]);
        }
        system[a * n + a] += 1.0;
    }
    if !dense64::cholesky(system, n, n) {
        return false;
    }
    dense64::cholesky_solve(system, n, n, coef);
    acc.iter_mut().for_each(|v| *v = 0.0);
    for (k, (&i, &c)) in idx.iter().zip(conf).enumerate() {
        // w_k = c_k − s_k z_k.
        let w = c as f64 - sq(c) * coef[k];
        for (a, &v) in acc.iter_mut().zip(z_of(i)) {
            *a += w * v as f64;
        }
    }
    for (xv, &a) in x.iter_mut().zip(acc.iter()) {
        *xv = a as f32;
    }
    acc.iter().all(|v| v.is_finite())
}

/// Exact solve of one row in f64. Returns false when the system is not positive definite.
#[inline]
fn cholesky_row(
    g: &[f64],
    y: &[f32],
    idx: &[i32],
    conf: &[f32],
    x: &mut [f32],
    reg: f64,
    scratch: &mut [f64],
) -> bool {
    let f = x.len();
    if idx.is_empty() {
        x.iter_mut().for_each(|v| *v = 0.0);
        return true;
    }
    let (a, b) = scratch.split_at_mut(f * f);
    a.copy_from_slice(g);
    for d in 0..f {
        a[d * f + d] += reg;
    }
    b.iter_mut().for_each(|v| *v = 0.0);
    for (&i, &c) in idx.iter().zip(conf) {
        let yi = &y[i as usize * f..(i as usize + 1) * f];
        let (c, w) = (c as f64, c as f64 - 1.0);
        for r in 0..f {
            let wr = w * yi[r] as f64;
            b[r] += c * yi[r] as f64;
            // Lower triangle only; the factorisation reads nothing else.
            for (arc, yc) in a[r * f..r * f + r + 1].iter_mut().zip(&yi[..=r]) {
                *arc += wr * *yc as f64;
            }
        }
    }
    if !dense64::cholesky(a, f, f) {
        return false;
    }
    dense64::cholesky_solve(a, f, f, b);
    for (xi, bi) in x.iter_mut().zip(b.iter()) {
        *xi = *bi as f32;
    }
    true
}

/// The training objective
/// Σ_u,i c_ui (p_ui − x_u·y_i)² + Σ_u λ_u |x_u|² + Σ_i λ_i |y_i|²
/// (`λ_u`, `λ_i` from the users' and the items' penalties), computed without touching unobserved
/// pairs: Σ_u x_uᵀ(YᵀY)x_u + Σ_observed (c(1−s)² − s²). The quadratic terms run as f64 matrix
/// products over fixed blocks of users (summed in a fixed order: the result does not depend on
/// the thread count).
pub fn loss(
    csr: &CsrView<'_>,
    users: &[f32],
    items: &[f32],
    f: usize,
    user_penalty: Penalty<'_>,
    item_penalty: Penalty<'_>,
) -> CoreResult<f64> {
    check_factors("user factors", users, csr.n_rows(), f)?;
    check_factors("item factors", items, csr.n_cols, f)?;
    if csr.data.len() != csr.indices.len() {
        return shape_err("the interaction matrix needs one confidence per stored entry");
    }
    user_penalty.check(csr.n_rows())?;
    item_penalty.check(csr.n_cols)?;
    let g = gramian(items, f);
    let g_ref = MatRef::from_row_major_slice(&g, f, f);
    let blocks: Vec<f64> = users
        .par_chunks(BLOCK_ROWS * f)
        .enumerate()
        .map(|(blk, rows)| {
            let n = rows.len() / f;
            let x64: Vec<f64> = rows.iter().map(|&v| v as f64).collect();
            let mut xg = vec![0.0f64; rows.len()];
            matmul(
                MatMut::from_row_major_slice_mut(&mut xg, n, f),
                Accum::Replace,
                MatRef::from_row_major_slice(&x64, n, f),
                g_ref,
                1.0f64,
                Par::Seq,
            );
            let mut total = 0.0f64;
            for (k, (x, xgk)) in x64.chunks_exact(f).zip(xg.chunks_exact(f)).enumerate() {
                let u = blk * BLOCK_ROWS + k;
                total += dense64::dot(x, xgk) + user_penalty.of(u) * dense64::dot(x, x);
                let (idx, conf) = csr.row(u);
                for (&i, &c) in idx.iter().zip(conf) {
                    let yi = &items[i as usize * f..(i as usize + 1) * f];
                    let s: f64 = yi.iter().zip(x).map(|(a, b)| *a as f64 * *b).sum();
                    total += c as f64 * (1.0 - s) * (1.0 - s) - s * s;
                }
            }
            total
        })
        .collect();
    let item_terms: f64 = items
        .chunks_exact(f)
        .enumerate()
        .map(|(i, y)| {
            let sq: f64 = y.iter().map(|v| (*v as f64) * (*v as f64)).sum();
            item_penalty.of(i) * sq
        })
        .sum();
    Ok(blocks.iter().sum::<f64>() + item_terms)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 33) as f32 / (1u64 << 31) as f32) - 0.5
    }

    /// A dense, obvious reference for one row: build A and b, solve with Gaussian elimination.
    fn dense_row(y: &[f32], f: usize, idx: &[i32], conf: &[f32], reg: f64) -> Vec<f64> {
        let n_items = y.len() / f;
        let mut a = vec![0.0f64; f * f];
        let mut b = vec![0.0f64; f];
        for i in 0..n_items {
            let pos = idx.iter().position(|&c| c as usize == i);
            let (c, p) = pos.map_or((1.0, 0.0), |k| (conf[k] as f64, 1.0));
            for r in 0..f {
                b[r] += c * p * y[i * f + r] as f64;
                for s in 0..f {
                    a[r * f + s] += c * y[i * f + r] as f64 * y[i * f + s] as f64;
                }
            }
        }
        for d in 0..f {
            a[d * f + d] += reg;
        }
        // Gaussian elimination with partial pivoting.
        for col in 0..f {
            let piv = (col..f)
                .max_by(|&p, &q| a[p * f + col].abs().total_cmp(&a[q * f + col].abs()))
                .unwrap();
            for k in 0..f {
                a.swap(col * f + k, piv * f + k);
            }
            b.swap(col, piv);
            for r in col + 1..f {
                let m = a[r * f + col] / a[col * f + col];
                for k in col..f {
                    a[r * f + k] -= m * a[col * f + k];
                }
                b[r] -= m * b[col];
            }
        }
        for r in (0..f).rev() {
            let mut s = b[r];
            for k in r + 1..f {
                s -= a[r * f + k] * b[k];
            }
            b[r] = s / a[r * f + r];
        }
        b
    }

    #[test]
    fn cholesky_and_many_cg_steps_match_the_dense_solution() {
        let (n_users, n_items, f) = (4, 7, 5);
        let mut seed = 7u64;
        let y: Vec<f32> = (0..n_items * f).map(|_| lcg(&mut seed)).collect();
        // Rows of 3 and 1 items (fewer than f: the Woodbury form of the exact solve), an empty
        // row, and a row of 6 items (the f x f form).
        let indptr = [0i64, 3, 3, 4, 10];
        let indices = [0i32, 2, 6, 1, 0, 1, 3, 4, 5, 6];
        let data = [3.0f32, 1.0, 10.0, 2.0, 41.0, 1.5, 1.0, 7.0, 1e4, 2.5];
        let csr = CsrView::new(&indptr, &indices, &data, n_items).unwrap();
        let mut chol = vec![0.1f32; n_users * f];
        solve_side(
            &csr,
            &y,
            &mut chol,
            f,
            Penalty::global(0.1),
            Solver::Cholesky,
        )
        .unwrap();
        let mut reference = vec![0.1f32; n_users * f];
        solve_side(
            &csr,
            &y,
            &mut reference,
            f,
            Penalty::global(0.1),
            Solver::Reference,
        )
        .unwrap();
        let mut auto = vec![0.1f32; n_users * f];
        solve_side(
            &csr,
            &y,
            &mut auto,
            f,
            Penalty::global(0.1),
            Solver::Cg {
                steps: 50,
                tol: 1e-6,
            },
        )
        .unwrap();
        let mut cg: Vec<f32> = (0..n_users * f).map(|_| lcg(&mut seed)).collect();
        for _ in 0..5 {
            solve_side(
                &csr,
                &y,
                &mut cg,
                f,
                Penalty::global(0.1),
                Solver::Cg { steps: f, tol: 0.0 },
            )
            .unwrap();
        }
        for u in 0..n_users {
            let (idx, conf) = csr.row(u);
            let want = dense_row(&y, f, idx, conf, 0.1);
            for k in 0..f {
                assert!(
                    (chol[u * f + k] as f64 - want[k]).abs() < 1e-4,
                    "chol u={u} k={k}"
                );
                assert!(
                    (cg[u * f + k] as f64 - want[k]).abs() < 1e-3,
                    "cg u={u} k={k}"
                );
                assert!(
                    (reference[u * f + k] as f64 - want[k]).abs() < 1e-4,
                    "reference u={u} k={k}"
                );
                assert!(
                    (auto[u * f + k] as f64 - want[k]).abs() < 1e-3,
                    "auto u={u} k={k}"
                );
            }
        }
        // The empty row is exactly zero.
        assert!(chol[f..2 * f].iter().all(|v| *v == 0.0));
    }

    #[test]
    fn per_row_penalties_match_the_dense_solution() {
        let (n_users, n_items, f) = (7, 9, 5);
        let mut seed = 11u64;
        let y: Vec<f32> = (0..n_items * f).map(|_| lcg(&mut seed)).collect();
        // Rows of 3 items, none, 1, 7 (>= f: the f x f exact form), 2 with a confidence beyond
        // EXACT_ABOVE (the CG solvers' exact rows), all 9, and 4.
        let indptr = [0i64, 3, 3, 4, 11, 13, 22, 26];
        let indices = [
            0i32, 2, 6, 1, 0, 1, 2, 3, 4, 5, 6, 3, 8, 0, 1, 2, 3, 4, 5, 6, 7, 8, 1, 4, 7, 8,
        ];
        let data = [
            3.0f32, 1.0, 10.0, 2.0, 41.0, 1.5, 1.0, 7.0, 1e4, 2.5, 1.0, 2e5, 3.0, 1.0, 2.0, 3.0,
            4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 1.0, 1.0, 1.0, 60.0,
        ];
        let csr = CsrView::new(&indptr, &indices, &data, n_items).unwrap();
        // Row 2's penalty is 0 (YᵀY alone is positive definite here); row 6's is 40x row 0's.
        let scale = [0.5f32, 2.0, 0.0, 3.7, 1.0, 10.0, 20.0];
        let penalty = Penalty {
            lambda: 0.3,
            row_scale: Some(&scale),
        };
        let solve = |solver: Solver, start: f32, sweeps: usize| {
            let mut x = vec![start; n_users * f];
            for _ in 0..sweeps {
                solve_side(&csr, &y, &mut x, f, penalty, solver).unwrap();
            }
            x
        };
        // To a tolerance that only the step cap ends (the stopping rule is tested elsewhere).
        let tolerance = |steps| Solver::Cg { steps, tol: 1e-10 };
        let auto = Solver::Auto {
            steps: 50,
            tol: 1e-10,
        };
        let runs = [
            ("reference", solve(Solver::Reference, 0.1, 1), 1e-4),
            ("cholesky", solve(Solver::Cholesky, 0.1, 1), 1e-4),
            ("cg to tolerance", solve(tolerance(50), 0.1, 1), 1e-3),
            ("auto", solve(auto, -0.2, 1), 1e-3),
            (
                "fixed-step cg",
                solve(Solver::Cg { steps: f, tol: 0.0 }, 0.3, 4),
                1e-3,
            ),
        ];
        for u in 0..n_users {
            let (idx, conf) = csr.row(u);
            let want = dense_row(&y, f, idx, conf, 0.3 * scale[u] as f64);
            let size = want.iter().fold(1.0f64, |m, v| m.max(v.abs()));
            for (name, x, tol) in &runs {
                for k in 0..f {
                    let err = (x[u * f + k] as f64 - want[k]).abs();
                    assert!(err < tol * size, "{name} u={u} k={k}: {err}");
                }
            }
        }
        // A scale of ones is the global penalty (through the eigenbasis instead of Cholesky).
        let ones = [1.0f32; 7];
        let mut per_row = vec![0.1f32; n_users * f];
        let mut global = per_row.clone();
        let ones_penalty = Penalty {
            lambda: 0.3,
            row_scale: Some(&ones),
        };
        solve_side(&csr, &y, &mut per_row, f, ones_penalty, Solver::Cholesky).unwrap();
        let global_penalty = Penalty::global(0.3);
        solve_side(&csr, &y, &mut global, f, global_penalty, Solver::Cholesky).unwrap();
        for (a, b) in per_row.iter().zip(&global) {
            assert!((a - b).abs() < 1e-4, "{a} vs {b}");
        }
        // Bad scales are errors, not garbage.
        let mut x = vec![0.0f32; n_users * f];
        let negative = [1.0f32, 1.0, 1.0, -1.0, 1.0, 1.0, 1.0];
        for bad in [&[1.0f32; 6][..], &negative, &[f32::NAN; 7], &[f32::MAX; 7]] {
            let bad = Penalty {
                lambda: 3.0,
                row_scale: Some(bad),
            };
            assert!(solve_side(&csr, &y, &mut x, f, bad, Solver::Cholesky).is_err());
        }
    }

    #[test]
    fn the_z_path_matches_the_reference_solve() {
        // Many users, a smaller catalogue: `Auto` takes the Z path (short rows by Woodbury, the
        // rows of f - 1, f and f + 1 items by CG, the row with a huge confidence exactly).
        let (n_items, f) = (100, Z_MIN_RANK);
        let mut seed = 5u64;
        let y: Vec<f32> = (0..n_items * f).map(|_| lcg(&mut seed)).collect();
        let mut indptr = vec![0i64];
        let mut indices = vec![];
        let mut data = vec![];
        for u in 0..300usize {
            let n = match u {
                0 => f - 1,
                1 => f,
                2 => 3,
                3 => f + 1,
                _ => u % 5,
            };
            for k in 0..n {
                indices.push(((u + 2 * k) % n_items) as i32);
                data.push(if u == 2 && k == 1 {
                    5e7
                } else {
                    1.0 + (u % 7) as f32 * 3.0
                });
            }
            indptr.push(indices.len() as i64);
        }
        let csr = CsrView::new(&indptr, &indices, &data, n_items).unwrap();
        assert!(use_z(&csr, f));
        let mut reference = vec![0.0f32; 300 * f];
        solve_side(
            &csr,
            &y,
            &mut reference,
            f,
            Penalty::global(0.2),
            Solver::Reference,
        )
        .unwrap();
        let mut auto: Vec<f32> = (0..300 * f).map(|_| lcg(&mut seed)).collect();
        let solver = Solver::parse("cg", 40, 1e-9).unwrap();
        assert_eq!(
            solver,
            Solver::Auto {
                steps: 40,
                tol: 1e-9
            }
        );
        solve_side(&csr, &y, &mut auto, f, Penalty::global(0.2), solver).unwrap();
        for (k, (a, r)) in auto.iter().zip(&reference).enumerate() {
            assert!((a - r).abs() < 1e-3 * (1.0 + r.abs()), "{k}: {a} vs {r}");
        }
    }

    /// CSR arrays of `n_rows` rows, row `u` holding the columns `cols(u)`.
    fn rows_of(n_rows: usize, cols: impl Fn(usize) -> Vec<i32>) -> (Vec<i64>, Vec<i32>) {
        let mut indptr = vec![0i64];
        let mut indices = vec![];
        for u in 0..n_rows {
            indices.extend(cols(u));
            indptr.push(indices.len() as i64);
        }
        (indptr, indices)
    }

    #[test]
    fn a_shared_workspace_changes_no_result() {
        // The Z path (rank >= Z_MIN_RANK, many users), the whitened CG, the per-row penalty and
        // the exact solve, each run with its own buffers and with a workspace whose kept buffers
        // are stale (NaN, of other sizes): the results must be bit for bit the same.
        let (n_users, n_items, f) = (300, 100, Z_MIN_RANK);
        let mut seed = 13u64;
        let y: Vec<f32> = (0..n_items * f).map(|_| lcg(&mut seed)).collect();
        let (indptr, indices) = rows_of(n_users, |u| {
            (0..u % 23)
                .map(|k| ((u * 3 + 7 * k) % n_items) as i32)
                .collect()
        });
        let data: Vec<f32> = (0..indices.len()).map(|k| 1.0 + (k % 9) as f32).collect();
        let csr = CsrView::new(&indptr, &indices, &data, n_items).unwrap();
        assert!(use_z(&csr, f));
        let scale: Vec<f32> = (0..n_users).map(|u| 0.5 + (u % 4) as f32).collect();
        let init: Vec<f32> = (0..n_users * f).map(|_| lcg(&mut seed)).collect();
        let mut ws = Workspace::default();
        for (k, len) in [7usize, n_users * f + 5, n_items * f, 1]
            .into_iter()
            .enumerate()
        {
            ws.give(vec![f32::NAN; len + k]);
        }
        for solver in [
            Solver::parse("cg", 16, 1e-5).unwrap(),
            Solver::parse("cg", 3, 0.0).unwrap(),
            Solver::Cholesky,
        ] {
            for row_scale in [None, Some(&scale[..])] {
                let penalty = Penalty {
                    lambda: 0.3,
                    row_scale,
                };
                let mut own = init.clone();
                solve_side(&csr, &y, &mut own, f, penalty, solver).unwrap();
                for _ in 0..2 {
                    let mut shared = init.clone();
                    solve_side_in(&csr, &y, &mut shared, f, penalty, solver, &mut ws).unwrap();
                    assert!(own
                        .iter()
                        .zip(&shared)
                        .all(|(a, b)| a.to_bits() == b.to_bits()));
                }
            }
        }
        // Kept: never more buffers than were given or than one half-step holds at once.
        assert!(ws.free.len() <= 4, "{} buffers kept", ws.free.len());
    }

    #[test]
    fn a_rotating_half_step_turns_the_model_and_keeps_its_scores() {
        // Rows of 0 to 9 items (cold and warm CG, an empty row), a per-row penalty: the rotated
        // half-step must give `fixed · Q` (orthogonal: the same Gram matrix up to the basis,
        // diagonal there) and rows whose scores against it are those of the plain half-step.
        let (n_users, n_items, f) = (40, 15, 6);
        let mut seed = 17u64;
        let y: Vec<f32> = (0..n_items * f).map(|_| lcg(&mut seed)).collect();
        let (indptr, indices) = rows_of(n_users, |u| {
            (0..u % 10)
                .map(|k| ((u + 4 * k) % n_items) as i32)
                .collect()
        });
        let data: Vec<f32> = (0..indices.len())
            .map(|k| 1.0 + (k % 7) as f32 * 5.0)
            .collect();
        let csr = CsrView::new(&indptr, &indices, &data, n_items).unwrap();
        let scale: Vec<f32> = (0..n_users)
            .map(|u| ((u % 10).max(1) as f32).sqrt())
            .collect();
        let init: Vec<f32> = (0..n_users * f).map(|_| lcg(&mut seed)).collect();
        let scores = |x: &[f32], y: &[f32]| -> Vec<f64> {
            let mut out = vec![];
            for u in 0..n_users {
                for i in 0..n_items {
                    out.push(
                        (0..f)
                            .map(|k| x[u * f + k] as f64 * y[i * f + k] as f64)
                            .sum(),
                    );
                }
            }
            out
        };
        let gram = |y: &[f32]| -> Vec<f64> {
            let mut g = vec![0.0; f * f];
            for row in y.chunks(f) {
                for a in 0..f {
                    for b in 0..f {
                        g[a * f + b] += row[a] as f64 * row[b] as f64;
                    }
                }
            }
            g
        };
        for solver in [
            Solver::parse("cg", 16, 1e-7).unwrap(),
            Solver::parse("cg", 3, 0.0).unwrap(),
            Solver::Cholesky,
        ] {
            let penalty = Penalty {
                lambda: 0.4,
                row_scale: Some(&scale),
            };
            let mut plain = init.clone();
            solve_side(&csr, &y, &mut plain, f, penalty, solver).unwrap();
            let (mut rotated, mut turned) = (init.clone(), y.clone());
            let mut ws = Workspace::default();
            solve_side_rotating(&csr, &mut turned, &mut rotated, f, penalty, solver, &mut ws)
                .unwrap();
            let (want, got) = (scores(&plain, &y), scores(&rotated, &turned));
            let top = want.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for (w, g) in want.iter().zip(&got) {
                assert!((w - g).abs() < 1e-4 * top, "{w} vs {g}");
            }
            assert_ne!(turned, y, "the fixed side was not rotated");
            let (g0, g1) = (gram(&y), gram(&turned));
            let trace = |g: &[f64]| (0..f).map(|k| g[k * f + k]).sum::<f64>();
            assert!((trace(&g0) - trace(&g1)).abs() < 1e-4 * trace(&g0));
            for a in 0..f {
                for b in 0..f {
                    if a != b {
                        assert!(g1[a * f + b].abs() < 1e-4 * trace(&g0), "not diagonal");
                    }
                }
            }
            // One penalty: no basis to stay in; nothing is rotated, the rows are the plain ones.
            let mut kept = y.clone();
            let mut one = init.clone();
            let one_penalty = Penalty::global(0.4);
            solve_side_rotating(&csr, &mut kept, &mut one, f, one_penalty, solver, &mut ws)
                .unwrap();
            let mut plain_one = init.clone();
            solve_side(&csr, &y, &mut plain_one, f, one_penalty, solver).unwrap();
            assert_eq!(kept, y);
            assert_eq!(one, plain_one);
        }
    }

    #[test]
    fn triangular_products_match_the_full_product() {
        let mut seed = 11u64;
        for f in [5usize, 127, 128, 160, 300] {
            let rows = 37;
            let a: Vec<f32> = (0..rows * f).map(|_| lcg(&mut seed)).collect();
            for tri in [Triangle::Lower, Triangle::Upper, Triangle::Full] {
                let m: Vec<f32> = (0..f * f)
                    .map(|k| {
                        let (r, c) = (k / f, k % f);
                        let inside = match tri {
                            Triangle::Lower => c <= r,
                            Triangle::Upper => c >= r,
                            Triangle::Full => true,
                        };
                        if inside {
                            lcg(&mut seed)
                        } else {
                            0.0
                        }
                    })
                    .collect();
                let mut out = vec![f32::NAN; rows * f];
                times_square(Some(&a), &m, tri, f, &mut out);
                let mut in_place = a.clone();
                times_square(None, &m, tri, f, &mut in_place);
                for r in 0..rows {
                    for c in 0..f {
                        let want: f64 = (0..f)
                            .map(|k| a[r * f + k] as f64 * m[k * f + c] as f64)
                            .sum();
                        for got in [out[r * f + c], in_place[r * f + c]] {
                            assert!((got as f64 - want).abs() < 1e-4 * (1.0 + want.abs()));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_thread_count() {
        let (n_users, n_items, f) = (300, 50, 8);
        let mut seed = 11u64;
        let y: Vec<f32> = (0..n_items * f).map(|_| lcg(&mut seed)).collect();
        let (indptr, indices) = rows_of(n_users, |u| {
            (0..n_items)
                .filter(|i| (u * 7 + i * 3) % 11 == 0)
                .map(|i| i as i32)
                .collect()
        });
        let data = vec![5.0f32; indices.len()];
        let csr = CsrView::new(&indptr, &indices, &data, n_items).unwrap();
        let init: Vec<f32> = (0..n_users * f).map(|_| lcg(&mut seed)).collect();
        let run = |threads: usize| {
            let mut x = init.clone();
            crate::kernels::pool::with_threads(threads, || {
                solve_side(
                    &csr,
                    &y,
                    &mut x,
                    f,
                    Penalty::global(0.05),
                    Solver::Cg { steps: 3, tol: 0.0 },
                )
                .unwrap()
            })
            .unwrap();
            x
        };
        assert_eq!(run(1), run(2));
    }

    #[test]
    fn singular_systems_and_bad_shapes_are_errors() {
        let y = vec![1.0f32, 0.0, 1.0, 0.0]; // rank-1 item matrix, f = 2
        let csr = CsrView::new(&[0, 1], &[0], &[2.0], 2).unwrap();
        let mut x = vec![0.0f32; 2];
        assert!(solve_side(&csr, &y, &mut x, 2, Penalty::global(0.0), Solver::Reference).is_err());
        let mut short = vec![0.0f32; 1];
        assert!(solve_side(
            &csr,
            &y,
            &mut short,
            2,
            Penalty::global(0.1),
            Solver::Cholesky
        )
        .is_err());
        assert!(solve_side(
            &csr,
            &y,
            &mut x,
            2,
            Penalty::global(f32::NAN),
            Solver::Cholesky
        )
        .is_err());
        assert!(Solver::parse("lu", 3, 1e-4).is_err());
        assert!(Solver::parse("cg", 0, 1e-4).is_err());
        assert!(Solver::parse("cg", 3, -1.0).is_err());
        assert!(Solver::parse("cg", 3, f32::NAN).is_err());
        // Confidences below 1 have no square root of c - 1: an error, not a NaN.
        let low = CsrView::new(&[0, 1], &[0], &[0.5], 2).unwrap();
        assert!(solve_side(&low, &y, &mut x, 2, Penalty::global(0.1), Solver::Cholesky).is_err());
    }

    #[test]
    fn loss_matches_the_dense_definition() {
        let (n_users, n_items, f) = (3, 4, 2);
        let mut seed = 3u64;
        let x: Vec<f32> = (0..n_users * f).map(|_| lcg(&mut seed)).collect();
        let y: Vec<f32> = (0..n_items * f).map(|_| lcg(&mut seed)).collect();
        let indptr = [0i64, 2, 2, 3];
        let indices = [1i32, 3, 0];
        let data = [4.0f32, 2.0, 9.0];
        let csr = CsrView::new(&indptr, &indices, &data, n_items).unwrap();
        let mut want = 0.0f64;
        for u in 0..n_users {
            let (idx, conf) = csr.row(u);
            for i in 0..n_items {
                let s: f64 = (0..f)
                    .map(|k| x[u * f + k] as f64 * y[i * f + k] as f64)
                    .sum();
                let (c, p) = idx
                    .iter()
                    .position(|&c| c as usize == i)
                    .map_or((1.0, 0.0), |k| (conf[k] as f64, 1.0));
                want += c * (p - s) * (p - s);
            }
        }
        let reg = 0.3f64;
        want += reg * x.iter().chain(&y).map(|v| (*v as f64).powi(2)).sum::<f64>();
        let got = loss(
            &csr,
            &x,
            &y,
            f,
            Penalty::global(reg as f32),
            Penalty::global(reg as f32),
        )
        .unwrap();
        assert!(
            (got - want).abs() < 1e-5 * want.abs().max(1.0),
            "{got} vs {want}"
        );
        // Per-row penalties: lambda * scale_r on each user's and item's squared norm.
        let sq = |v: &[f32]| v.iter().map(|a| (*a as f64).powi(2)).sum::<f64>();
        let user_scale: Vec<f32> = (0..x.len() / f).map(|u| 0.5 + u as f32).collect();
        let item_scale: Vec<f32> = (0..y.len() / f).map(|i| 2.0 / (1.0 + i as f32)).collect();
        let mut want_rows = want - reg * (sq(&x) + sq(&y));
        for (u, xu) in x.chunks_exact(f).enumerate() {
            want_rows += reg * user_scale[u] as f64 * sq(xu);
        }
        for (i, yi) in y.chunks_exact(f).enumerate() {
            want_rows += reg * item_scale[i] as f64 * sq(yi);
        }
        let pen = |row_scale| Penalty {
            lambda: reg as f32,
            row_scale,
        };
        let got = loss(
            &csr,
            &x,
            &y,
            f,
            pen(Some(&user_scale)),
            pen(Some(&item_scale)),
        )
        .unwrap();
        assert!(
            (got - want_rows).abs() < 1e-5 * want_rows.abs().max(1.0),
            "{got} vs {want_rows}"
        );
        assert!(loss(&csr, &x, &y, f, pen(Some(&item_scale)), pen(None)).is_err());
    }
}
