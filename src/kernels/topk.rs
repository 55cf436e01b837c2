//! Exact top-n by dot product for many query rows at once (all-users recommendation).
//!
//! For every query row `q_u` the kernel returns the `n` items with the highest `q_u · v_i`, best
//! first, ties broken by the lower item index, skipping the items listed in an optional CSR
//! "exclude" matrix whose rows are aligned with the query rows. The output has
//! `min(n, n_items)` columns (no row can have more results, so memory follows the number of
//! items, never `n`); rows with fewer candidates than that (excluded items) are padded with
//! index `-1` and score NaN.
//!
//! How it is computed (the scores dominate: `2 · m · n_items · f` flops). The query rows are cut
//! into blocks handed to Rayon; memory is bounded by the block, never `m x n_items`. Two scoring
//! loops feed the same selection:
//! * fused (CPUs with AVX2+FMA, detected at run time): the items are packed once into panels of
//!   16; a 6-users x 16-items register-blocked FMA micro-kernel computes the scores and compares
//!   them with the six users' thresholds while still in registers (`vcmpps` + `vmovmskps`), so a
//!   score is never stored unless it is a candidate. Each block sweeps the packed items in tiles
//!   that stay in L2 while all its users pass over them;
//! * tiled (portable fallback): per block of `BLOCK_USERS` rows and tile of `TILE_ITEMS` items,
//!   faer's sequential GEMM computes the score tile `S = V_tile · Q_blockᵀ` (user-major), then a
//!   vectorised scan finds the scores strictly above each user's threshold.
//!
//! Selection: each user keeps a small unsorted candidate buffer and a threshold, the n-th best
//! score seen so far; only scores strictly above it are looked at, checked against the user's
//! sorted exclude row with a merge pointer, and appended. When the buffer is full,
//! `select_nth_unstable` keeps the `n` best and raises the threshold. Items arrive in increasing
//! index order, so a later item that only ties the threshold would lose the tie anyway: strict
//! `>` is exact.
//!
//! Every score of the fused loop is the same sequential FMA chain over the factors wherever its
//! user and item sit, and the tiled loop uses a fixed block layout; each user's selection runs
//! sequentially over the items, so the result does not depend on the number of threads.

use std::cmp::Ordering;

use faer::linalg::matmul::matmul;
use faer::{Accum, MatMut, MatRef, Par};
use rayon::prelude::*;

use crate::error::{shape_err, CoreError, CoreResult};
use crate::kernels::csr::CsrView;
use crate::kernels::vecops::has_avx2_fma;

/// Query rows per parallel task (the GEMM's `n` dimension inside a tile).
const BLOCK_USERS: usize = 256;
/// Items per score tile; `BLOCK_USERS x TILE_ITEMS` f32 scores = 256 KiB, inside a core's L2.
/// (Measured on a 2-core AMD EPYC: 256 x 256 ran ~10-30% faster than 64 x 1024 or 128 x 768,
/// mostly because faer packs the item tile once per 256 users instead of per 64.)
const TILE_ITEMS: usize = 256;
/// Scores are scanned in chunks of this many lanes (four AVX2 vectors) per threshold test.
const SCAN_CHUNK: usize = 32;
/// The largest `|q| · |v|` accepted: beyond it a float32 dot product could overflow to inf/NaN.
const MAX_SCORE_BOUND: f64 = f32::MAX as f64 / 4.0;

/// The result: row-major `m x width` item indices (`-1` = padding) and scores (NaN = padding),
/// `width = min(n, n_items)`.
#[derive(Debug, Clone, PartialEq)]
pub struct TopK {
    pub indices: Vec<i32>,
    pub scores: Vec<f32>,
    pub width: usize,
}

/// Best first: higher score, then lower index. Scores are never NaN here (inputs are checked so
/// that no dot product can overflow), so `partial_cmp` is total; `-0.0` and `0.0` tie.
#[inline]
fn better(a: &(f32, u32), b: &(f32, u32)) -> Ordering {
    b.0.partial_cmp(&a.0)
        .unwrap_or(Ordering::Equal)
        .then(a.1.cmp(&b.1))
}

/// Index of the first value strictly greater than `t`, or `x.len()` when there is none.
/// Portable version; LLVM does not vectorise the early exit well, hence the AVX2 one below.
#[inline(always)]
fn first_above_portable(x: &[f32], t: f32) -> usize {
    x.iter().position(|&v| v > t).unwrap_or(x.len())
}

/// AVX2 scan: 32 scores per step, four `vcmpps` OR-ed together and one `vmovmskps` test; the
/// rare hit is located inside its 32-lane chunk by the scalar loop.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn first_above_avx2(x: &[f32], t: f32) -> usize {
    use std::arch::x86_64::*;
    let tv = _mm256_set1_ps(t);
    let mut off = 0;
    while off + SCAN_CHUNK <= x.len() {
        // SAFETY: off + 32 <= x.len(), so the four unaligned 8-lane loads stay inside `x`.
        let p = x.as_ptr().add(off);
        let a = _mm256_cmp_ps::<_CMP_GT_OQ>(_mm256_loadu_ps(p), tv);
        let b = _mm256_cmp_ps::<_CMP_GT_OQ>(_mm256_loadu_ps(p.add(8)), tv);
        let c = _mm256_cmp_ps::<_CMP_GT_OQ>(_mm256_loadu_ps(p.add(16)), tv);
        let d = _mm256_cmp_ps::<_CMP_GT_OQ>(_mm256_loadu_ps(p.add(24)), tv);
        let any = _mm256_or_ps(_mm256_or_ps(a, b), _mm256_or_ps(c, d));
        if _mm256_movemask_ps(any) != 0 {
            break;
        }
        off += SCAN_CHUNK;
    }
    off + first_above_portable(&x[off..], t)
}

/// Index of the first value strictly greater than `t`, or `x.len()` when there is none.
#[inline]
fn first_above(x: &[f32], t: f32) -> usize {
    #[cfg(target_arch = "x86_64")]
    {
        if has_avx2_fma() {
            // SAFETY: the CPU supports AVX2 (checked at run time, cached by std).
            return unsafe { first_above_avx2(x, t) };
        }
    }
    first_above_portable(x, t)
}

/// Sorts and deduplicates one user's excluded items into `out`.
fn sorted_excludes(row: &[i32], out: &mut Vec<u32>) {
    out.clear();
    // CsrView guarantees 0 <= c < n_cols, so the cast is lossless.
    out.extend(row.iter().map(|&c| c as u32));
    out.sort_unstable();
    out.dedup();
}

/// One user's running selection.
struct Selection {
    /// Candidates `(score, item)`, unsorted, at most `cap` long.
    buf: Vec<(f32, u32)>,
    /// Only scores strictly above this can still enter the top `n`.
    thr: f32,
    /// The user's excluded items, sorted and unique, and the merge pointer into them.
    excl: Vec<u32>,
    ep: usize,
}

impl Selection {
    fn new(cap: usize) -> Self {
        // The buffer grows on demand up to `cap`: a large `n` does not reserve its whole room for
        // every user of every block up front.
        Self {
            buf: Vec::with_capacity(cap.min(1024)),
            thr: f32::NEG_INFINITY,
            excl: Vec::new(),
            ep: 0,
        }
    }

    fn reset(&mut self) {
        self.buf.clear();
        self.thr = f32::NEG_INFINITY;
        self.excl.clear();
        self.ep = 0;
    }

    /// True when `item` is excluded; items must be asked in increasing order.
    #[inline]
    fn excluded(&mut self, item: u32) -> bool {
        while self.ep < self.excl.len() && self.excl[self.ep] < item {
            self.ep += 1;
        }
        self.ep < self.excl.len() && self.excl[self.ep] == item
    }

    /// Scans one tile row: `scores[j]` belongs to item `base + j`.
    #[inline]
    fn scan(&mut self, scores: &[f32], base: u32, n: usize, cap: usize) {
        let mut pos = 0;
        while pos < scores.len() {
            pos += first_above(&scores[pos..], self.thr);
            if pos >= scores.len() {
                break;
            }
            let item = base + pos as u32;
            if !self.excluded(item) {
                self.buf.push((scores[pos], item));
                if self.buf.len() >= cap {
                    self.compact(n);
                }
            }
            pos += 1;
        }
    }

    /// Offers the lanes set in `mask` of a group of scores for items `base + lane`, in lane order.
    #[inline]
    fn offer(&mut self, scores: &[f32], base: u32, mut mask: u32, n: usize, cap: usize) {
        while mask != 0 {
            let lane = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            let Some(&sc) = scores.get(lane) else { break };
            // The threshold may have risen since the mask was computed.
            if sc > self.thr {
                let item = base + lane as u32;
                if !self.excluded(item) {
                    self.buf.push((sc, item));
                    if self.buf.len() >= cap {
                        self.compact(n);
                    }
                }
            }
        }
    }

    /// Keeps the `n` best candidates and raises the threshold to the n-th best score.
    fn compact(&mut self, n: usize) {
        if self.buf.len() > n {
            self.buf.select_nth_unstable_by(n - 1, better);
            self.buf.truncate(n);
            // After the selection, buf[n - 1] is the n-th best and everything before it is better.
            self.thr = self.buf[n - 1].0;
        }
    }

    /// Writes the best `out_idx.len()` candidates, best first, padding with -1 / NaN.
    fn finish(&mut self, out_idx: &mut [i32], out_sc: &mut [f32]) {
        let n = out_idx.len();
        if self.buf.len() > n {
            self.buf.select_nth_unstable_by(n - 1, better);
            self.buf.truncate(n);
        }
        self.buf.sort_unstable_by(better);
        for (k, (oi, os)) in out_idx.iter_mut().zip(out_sc.iter_mut()).enumerate() {
            match self.buf.get(k) {
                Some(&(s, i)) => {
                    *oi = i as i32;
                    *os = s;
                }
                None => {
                    *oi = -1;
                    *os = f32::NAN;
                }
            }
        }
    }
}

fn check_finite(name: &str, x: &[f32], f: usize) -> CoreResult<f64> {
    if let Some(p) = x.iter().position(|v| !v.is_finite()) {
        let (r, c) = (p.checked_div(f).unwrap_or(0), p.checked_rem(f).unwrap_or(0));
        return Err(CoreError::Value(format!(
            "{name} has a non-finite value ({}) at row {r}, column {c}; top-k needs finite factors",
            x[p]
        )));
    }
    // The largest squared row norm, for the overflow bound.
    let max_sq = if f == 0 {
        0.0
    } else {
        x.par_chunks(f)
            .map(|r| r.iter().map(|&v| v as f64 * v as f64).sum::<f64>())
            .reduce(|| 0.0, f64::max)
    };
    Ok(max_sq)
}

/// Exact top-`n` items for every query row; runs on the current Rayon pool. The result has
/// `min(n, n_items)` columns, so any `n >= 1` is accepted and costs no more than `n_items`.
///
/// * `query`: row-major `m x f`; `items`: row-major `n_items x f`;
/// * `exclude`: optional CSR with `m` rows over `n_items` columns (data may be empty); the listed
///   items of row `u` never appear in row `u` of the result (indices may be unsorted or repeated).
pub fn topk(
    query: &[f32],
    m: usize,
    items: &[f32],
    n_items: usize,
    f: usize,
    n: usize,
    exclude: Option<&CsrView<'_>>,
) -> CoreResult<TopK> {
    topk_with(query, m, items, n_items, f, n, exclude, Path::Auto)
}

/// Which scoring loop runs: the fused AVX2+FMA micro-kernel when the CPU has it, else faer tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    Auto,
    /// faer GEMM into a score tile, then the vectorised threshold scan (portable).
    Tiled,
    /// Hand-written AVX2+FMA micro-kernel with the threshold test on the registers.
    Fused,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn topk_with(
    query: &[f32],
    m: usize,
    items: &[f32],
    n_items: usize,
    f: usize,
    n: usize,
    exclude: Option<&CsrView<'_>>,
    path: Path,
) -> CoreResult<TopK> {
    if path == Path::Fused && !fused::available() {
        return Err(CoreError::Value(
            "the fused top-k path needs AVX2 and FMA".into(),
        ));
    }
    if n == 0 {
        return Err(CoreError::Value("n must be >= 1, got 0".into()));
    }
    if m.checked_mul(f) != Some(query.len()) {
        return shape_err(format!(
            "query has {} values, expected {m} rows x {f} factors",
            query.len()
        ));
    }
    if n_items.checked_mul(f) != Some(items.len()) {
        return shape_err(format!(
            "items has {} values, expected {n_items} rows x {f} factors",
            items.len()
        ));
    }
    if n_items > i32::MAX as usize {
        return shape_err(format!("{n_items} items do not fit int32 indices"));
    }
    if let Some(ex) = exclude {
        if ex.n_rows() != m {
            return shape_err(format!(
                "exclude has {} rows but query has {m}: one exclude row per query row",
                ex.n_rows()
            ));
        }
        if ex.n_cols != n_items {
            return shape_err(format!(
                "exclude has {} columns but there are {n_items} items",
                ex.n_cols
            ));
        }
    }
    let qmax = check_finite("query", query, f)?;
    let vmax = check_finite("items", items, f)?;
    let bound = (qmax * vmax).sqrt();
    if bound > MAX_SCORE_BOUND {
        return Err(CoreError::Value(format!(
            "factors too large: a dot product could reach {bound:.3e} and overflow float32; \
             rescale the query or item factors"
        )));
    }
    // No row can hold more than n_items results: the output (and every buffer below) is sized
    // by min(n, n_items), so a huge n costs nothing.
    let n = n.min(n_items);
    let total = m
        .checked_mul(n)
        .ok_or_else(|| CoreError::Value(format!("an output of {m} x {n} is too large")))?;
    let mut indices: Vec<i32> = Vec::new();
    let mut scores: Vec<f32> = Vec::new();
    if indices.try_reserve_exact(total).is_err() || scores.try_reserve_exact(total).is_err() {
        return Err(CoreError::Value(format!(
            "cannot allocate an output of {m} x {n}; score fewer query rows per call"
        )));
    }
    indices.resize(total, -1);
    scores.resize(total, f32::NAN);
    if m == 0 || n == 0 {
        return Ok(TopK {
            indices,
            scores,
            width: n,
        });
    }

    // Candidate buffer: room for n more before a compaction, so compaction costs O(1)
    // amortised per candidate.
    let cap = n + n.max(64);
    let path = if path == Path::Auto && fused::available() {
        Path::Fused
    } else if path == Path::Auto {
        Path::Tiled
    } else {
        path
    };
    let packed = if path == Path::Fused {
        fused::pack_items(items, n_items, f)
    } else {
        vec![]
    };
    // The fused path computes each score the same way wherever its user sits, so its block
    // size may follow the thread count (smaller blocks for few users, to keep every thread
    // busy); the faer path keeps a fixed layout so its rounding never depends on threads.
    let block_users = if path == Path::Fused {
        let per_task = m.div_ceil(4 * rayon::current_num_threads().max(1));
        per_task
            .next_multiple_of(fused::MR)
            .clamp(fused::MR, fused::BLOCK_USERS)
    } else {
        BLOCK_USERS
    };
    let block_out = block_users * n;
    indices
        .par_chunks_mut(block_out)
        .zip(scores.par_chunks_mut(block_out))
        .enumerate()
        .for_each_init(
            || {
                let tile_len = if path == Path::Fused {
                    0
                } else {
                    TILE_ITEMS.min(n_items)
                };
                let tile = vec![0.0f32; block_users * tile_len];
                let sel: Vec<Selection> = (0..block_users).map(|_| Selection::new(cap)).collect();
                (tile, sel)
            },
            |(tile, sel), (b, (out_idx, out_sc))| {
                let u0 = b * block_users;
                let bu = out_idx.len() / n;
                let qblock = &query[u0 * f..(u0 + bu) * f];
                let sel = &mut sel[..bu];
                for (j, s) in sel.iter_mut().enumerate() {
                    s.reset();
                    if let Some(ex) = exclude {
                        sorted_excludes(ex.row(u0 + j).0, &mut s.excl);
                    }
                }
                if path == Path::Fused {
                    fused::block(qblock, &packed, n_items, f, sel, n, cap);
                } else {
                    let mut i0 = 0;
                    while i0 < n_items {
                        let bi = TILE_ITEMS.min(n_items - i0);
                        let t = &mut tile[..bi * bu];
                        score_tile(&items[i0 * f..(i0 + bi) * f], bi, qblock, bu, f, t);
                        for (j, s) in sel.iter_mut().enumerate() {
                            s.scan(&t[j * bi..(j + 1) * bi], i0 as u32, n, cap);
                        }
                        i0 += bi;
                    }
                }
                for (j, s) in sel.iter_mut().enumerate() {
                    let r = j * n..(j + 1) * n;
                    s.finish(&mut out_idx[r.clone()], &mut out_sc[r]);
                }
            },
        );
    Ok(TopK {
        indices,
        scores,
        width: n,
    })
}

/// `out` (column-major `bi x bu`, i.e. user-major: user `j`'s scores over the tile are
/// `out[j*bi..(j+1)*bi]`) = `V_tile · Q_blockᵀ`, sequential faer GEMM.
fn score_tile(v: &[f32], bi: usize, q: &[f32], bu: usize, f: usize, out: &mut [f32]) {
    if f == 0 {
        out.fill(0.0);
        return;
    }
    let lhs = MatRef::from_row_major_slice(v, bi, f);
    let rhs = MatRef::from_column_major_slice(q, f, bu);
    let dst = MatMut::from_column_major_slice_mut(out, bi, bu);
    matmul(dst, Accum::Replace, lhs, rhs, 1.0f32, Par::Seq);
}

/// The fused path: items packed once into panels of `NR` items (`[k][NR]`, zero-padded), and a
/// `MR x NR` register-blocked AVX2+FMA micro-kernel whose scores are compared against the users'
/// thresholds while still in registers; only lanes above a threshold are stored and offered.
/// Every score is the same sequential FMA chain over `k`, whatever the block or tile position.
mod fused {
    use super::Selection;

    /// Users per micro-tile: 6 users x 16 items = 12 accumulators, 2 loads + 6 broadcasts per k.
    pub(super) const MR: usize = 6;
    /// Items per panel (two 8-lane vectors).
    pub(super) const NR: usize = 16;
    /// Most users per parallel task, a multiple of MR; each tile of item panels is reused from L2
    /// by all of them. (Measured on 2-core EPYC, 64 factors: 192 ran ~5-10% faster than 96 or 48.)
    pub(super) const BLOCK_USERS: usize = 192;
    /// Bytes of packed items per tile (kept in L2 while the block's micro-rows sweep it).
    const TILE_BYTES: usize = 192 * 1024;

    pub(super) fn available() -> bool {
        crate::kernels::vecops::has_avx2_fma()
    }

    /// Items in panels of NR: panel p, factor k, lane l holds item p*NR + l (zero past the end).
    pub(super) fn pack_items(items: &[f32], n_items: usize, f: usize) -> Vec<f32> {
        let np = n_items.div_ceil(NR);
        let mut out = vec![0.0f32; np * f * NR];
        for (i, row) in items.chunks_exact(f.max(1)).take(n_items).enumerate() {
            let (p, l) = (i / NR, i % NR);
            let panel = &mut out[p * f * NR..(p + 1) * f * NR];
            for (k, &x) in row.iter().enumerate() {
                panel[k * NR + l] = x;
            }
        }
        out
    }

    /// Scores one block of users (`q`: `sel.len() x f`, row-major) against every item and feeds
    /// each user's selection. The caller checked `available()`.
    pub(super) fn block(
        q: &[f32],
        packed: &[f32],
        n_items: usize,
        f: usize,
        sel: &mut [Selection],
        n: usize,
        cap: usize,
    ) {
        let np = n_items.div_ceil(NR);
        // Internal invariants (topk checked the user's shapes): nothing is read out of bounds.
        assert!(q.len() == sel.len() * f && packed.len() == np * f * NR && available());
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (sel, n, cap);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `available()` checked AVX2+FMA; lengths were asserted above.
        unsafe {
            block_avx2(q, packed, n_items, f, sel, n, cap)
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn block_avx2(
        q: &[f32],
        packed: &[f32],
        n_items: usize,
        f: usize,
        sel: &mut [Selection],
        n: usize,
        cap: usize,
    ) {
        let np = n_items.div_ceil(NR);
        let tile_panels = (TILE_BYTES / (f.max(1) * NR * 4)).max(1);
        let bu = sel.len();
        let mut p0 = 0;
        while p0 < np {
            let p1 = (p0 + tile_panels).min(np);
            let mut r0 = 0;
            while r0 < bu {
                let r = MR.min(bu - r0);
                let qr = &q[r0 * f..(r0 + r) * f];
                let s = &mut sel[r0..r0 + r];
                match r {
                    6 => rows::<6>(qr, packed, n_items, f, p0, p1, s, n, cap),
                    5 => rows::<5>(qr, packed, n_items, f, p0, p1, s, n, cap),
                    4 => rows::<4>(qr, packed, n_items, f, p0, p1, s, n, cap),
                    3 => rows::<3>(qr, packed, n_items, f, p0, p1, s, n, cap),
                    2 => rows::<2>(qr, packed, n_items, f, p0, p1, s, n, cap),
                    _ => rows::<1>(qr, packed, n_items, f, p0, p1, s, n, cap),
                }
                r0 += r;
            }
            p0 = p1;
        }
    }

    /// `R` users (`q`: `R x f`) against panels `p0..p1`.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    #[allow(clippy::too_many_arguments)]
    unsafe fn rows<const R: usize>(
        q: &[f32],
        packed: &[f32],
        n_items: usize,
        f: usize,
        p0: usize,
        p1: usize,
        sel: &mut [Selection],
        n: usize,
        cap: usize,
    ) {
        use std::arch::x86_64::*;
        debug_assert!(q.len() == R * f && sel.len() == R && p1 * f * NR <= packed.len());
        let qp = q.as_ptr();
        let mut lanes = [0.0f32; NR];
        for p in p0..p1 {
            let panel = packed.as_ptr().add(p * f * NR);
            let mut lo = [_mm256_setzero_ps(); R];
            let mut hi = [_mm256_setzero_ps(); R];
            for k in 0..f {
                // SAFETY: panel p spans f * NR floats inside `packed`; user rows span R * f.
                let b0 = _mm256_loadu_ps(panel.add(k * NR));
                let b1 = _mm256_loadu_ps(panel.add(k * NR + 8));
                for r in 0..R {
                    let a = _mm256_broadcast_ss(&*qp.add(r * f + k));
                    lo[r] = _mm256_fmadd_ps(a, b0, lo[r]);
                    hi[r] = _mm256_fmadd_ps(a, b1, hi[r]);
                }
            }
            let base = p * NR;
            let valid: u32 = if base + NR <= n_items {
                0xFFFF
            } else {
                (1u32 << (n_items - base)) - 1
            };
            for r in 0..R {
                let t = _mm256_set1_ps(sel[r].thr);
                let m_lo = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(lo[r], t)) as u32;
                let m_hi = _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(hi[r], t)) as u32;
                let mask = (m_lo | (m_hi << 8)) & valid;
                if mask != 0 {
                    _mm256_storeu_ps(lanes.as_mut_ptr(), lo[r]);
                    _mm256_storeu_ps(lanes.as_mut_ptr().add(8), hi[r]);
                    sel[r].offer(&lanes, base as u32, mask, n, cap);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift) so the tests need no extra crate.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn unif(&mut self) -> f32 {
            (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        }
        fn below(&mut self, k: u64) -> u64 {
            self.next() % k
        }
    }

    /// Brute force: every score in f64, then a full sort. The kernel's float32 sums differ from
    /// these in the last bits, so exact comparisons use integer-valued factors (exact sums) and
    /// real-valued ones compare up to a tolerance.
    fn brute(
        q: &[f32],
        v: &[f32],
        f: usize,
        n: usize,
        excl: Option<(&[i64], &[i32])>,
    ) -> (Vec<i32>, Vec<f32>) {
        let m = q.len().checked_div(f).unwrap_or(0);
        let n_items = v.len() / f;
        let n = n.min(n_items);
        let mut oi = vec![-1; m * n];
        let mut os = vec![f32::NAN; m * n];
        for u in 0..m {
            let skip: Vec<i32> = match excl {
                Some((p, ix)) => ix[p[u] as usize..p[u + 1] as usize].to_vec(),
                None => vec![],
            };
            let mut c: Vec<(f32, u32)> = (0..n_items)
                .filter(|i| !skip.contains(&(*i as i32)))
                .map(|i| {
                    let s: f64 = (0..f)
                        .map(|k| q[u * f + k] as f64 * v[i * f + k] as f64)
                        .sum();
                    (s as f32, i as u32)
                })
                .collect();
            c.sort_by(better);
            for (k, &(s, i)) in c.iter().take(n).enumerate() {
                oi[u * n + k] = i as i32;
                os[u * n + k] = s;
            }
        }
        (oi, os)
    }

    fn int_factors(rng: &mut Rng, rows: usize, f: usize, lo: i64, hi: i64) -> Vec<f32> {
        (0..rows * f)
            .map(|_| (lo + rng.below((hi - lo + 1) as u64) as i64) as f32)
            .collect()
    }

    fn random_excludes(rng: &mut Rng, m: usize, n_items: usize) -> (Vec<i64>, Vec<i32>) {
        let mut p = vec![0i64];
        let mut ix = vec![];
        for _ in 0..m {
            let k = rng.below(n_items as u64 / 2 + 2);
            for _ in 0..k {
                // unsorted, with possible duplicates
                ix.push(rng.below(n_items as u64) as i32);
            }
            p.push(ix.len() as i64);
        }
        (p, ix)
    }

    /// Both scoring loops this CPU can run.
    fn paths() -> Vec<Path> {
        let mut p = vec![Path::Tiled];
        if fused::available() {
            p.push(Path::Fused);
        }
        p
    }

    #[allow(clippy::too_many_arguments)]
    fn run_path(
        q: &[f32],
        m: usize,
        v: &[f32],
        n_items: usize,
        f: usize,
        n: usize,
        ex: Option<(&[i64], &[i32])>,
        path: Path,
    ) -> TopK {
        let view = ex.map(|(p, i)| CsrView::new(p, i, &[], n_items).unwrap());
        topk_with(q, m, v, n_items, f, n, view.as_ref(), path).unwrap()
    }

    /// Runs every path, checks they agree exactly, returns the result.
    fn run(
        q: &[f32],
        m: usize,
        v: &[f32],
        n_items: usize,
        f: usize,
        n: usize,
        ex: Option<(&[i64], &[i32])>,
    ) -> TopK {
        let all: Vec<TopK> = paths()
            .into_iter()
            .map(|p| run_path(q, m, v, n_items, f, n, ex, p))
            .collect();
        for other in &all[1..] {
            assert_eq!(other.indices, all[0].indices);
        }
        all.into_iter().next().unwrap()
    }

    #[test]
    fn matches_brute_force_with_exact_integer_scores_and_ties() {
        let mut rng = Rng(0x9e3779b97f4a7c15);
        // Shapes crossing the block and tile edges; small integer ranges make many exact ties.
        for &(m, n_items, f, n) in &[
            (1, 1, 1, 1),
            (3, 7, 2, 3),
            (70, 1030, 3, 5),
            (130, 2100, 4, 20),
            (260, 600, 3, 7),
            (5, 40, 1, 50),
            (65, 300, 8, 100),
            (2, 3000, 2, 2500),
        ] {
            let q = int_factors(&mut rng, m, f, -3, 3);
            let v = int_factors(&mut rng, n_items, f, -2, 2);
            for with_ex in [false, true] {
                let (p, ix) = random_excludes(&mut rng, m, n_items);
                let ex = with_ex.then_some((&p[..], &ix[..]));
                let got = run(&q, m, &v, n_items, f, n, ex);
                let (bi, bs) = brute(&q, &v, f, n, ex);
                assert_eq!(got.indices, bi, "indices m={m} items={n_items} f={f} n={n}");
                for (a, b) in got.scores.iter().zip(&bs) {
                    assert!(a == b || (a.is_nan() && b.is_nan()), "{a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn random_real_factors_match_up_to_rounding() {
        let mut rng = Rng(42);
        let (m, n_items, f, n) = (90, 2500, 16, 10);
        let q: Vec<f32> = (0..m * f).map(|_| rng.unif()).collect();
        let v: Vec<f32> = (0..n_items * f).map(|_| rng.unif()).collect();
        let (p, ix) = random_excludes(&mut rng, m, n_items);
        let (_, bs) = brute(&q, &v, f, n, Some((&p, &ix)));
        for path in paths() {
            let got = run_path(&q, m, &v, n_items, f, n, Some((&p, &ix)), path);
            for u in 0..m {
                let skip = &ix[p[u] as usize..p[u + 1] as usize];
                for k in 0..n {
                    let i = got.indices[u * n + k];
                    assert!(i >= 0 && !skip.contains(&i));
                    // Each returned score is the exact score of its item, and the k-th best score
                    // equals the reference's k-th best up to float32 rounding.
                    let exact: f64 = (0..f)
                        .map(|t| q[u * f + t] as f64 * v[i as usize * f + t] as f64)
                        .sum();
                    assert!((got.scores[u * n + k] as f64 - exact).abs() < 1e-4);
                    assert!((got.scores[u * n + k] - bs[u * n + k]).abs() < 1e-4);
                    if k > 0 {
                        assert!(got.scores[u * n + k] <= got.scores[u * n + k - 1]);
                    }
                }
            }
        }
    }

    #[test]
    fn all_excluded_rows_and_n_beyond_candidates_are_padded() {
        let v = vec![1.0, 2.0, 3.0];
        let q = vec![1.0, -1.0];
        // row 0 excludes every item (unsorted, duplicated), row 1 excludes item 2 only.
        let p = [0i64, 4, 5];
        let ix = [2, 0, 1, 0, 2];
        // n = 5 > 3 items: the rows are 3 wide.
        let got = run(&q, 2, &v, 3, 1, 5, Some((&p, &ix)));
        assert_eq!(got.width, 3);
        assert_eq!(got.indices, vec![-1, -1, -1, 0, 1, -1]);
        assert!(got.scores[..3].iter().all(|s| s.is_nan()));
        assert_eq!(&got.scores[3..5], &[-1.0, -2.0]);
        assert!(got.scores[5].is_nan());
    }

    #[test]
    fn huge_n_is_clamped_to_the_number_of_items() {
        // Without the clamp this would ask for 3 x usize::MAX / 2 slots and fail (or, for a
        // merely large n, touch gigabytes); with it the answer is the n = n_items one.
        let v: Vec<f32> = (0..30).map(|i| ((i * 7) % 11) as f32).collect();
        let q = vec![1.0f32, -1.0, 0.5];
        let p = [0i64, 2, 2, 3];
        let ix = [4, 9, 29];
        for path in paths() {
            let all = run_path(&q, 3, &v, 30, 1, 30, Some((&p, &ix)), path);
            for n in [31, 1 << 30, usize::MAX / 2, usize::MAX] {
                let got = run_path(&q, 3, &v, 30, 1, n, Some((&p, &ix)), path);
                assert_eq!(got.indices, all.indices);
                let bits = |t: &TopK| t.scores.iter().map(|s| s.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&all));
                assert_eq!(got.width, 30);
                assert_eq!(got.indices.len(), 90);
            }
        }
    }

    #[test]
    fn duplicated_items_tie_by_lower_index() {
        // Items 0..6 all the same vector: top-3 must be 0, 1, 2.
        let v = vec![0.5f32; 6 * 2];
        let q = vec![0.3f32, 0.7];
        let got = run(&q, 1, &v, 6, 2, 3, None);
        assert_eq!(got.indices, vec![0, 1, 2]);
        // One query row, one item.
        let got = run(&[2.0], 1, &[3.0], 1, 1, 2, None);
        assert_eq!(got.indices, vec![0]);
        assert_eq!(got.scores[0], 6.0);
    }

    #[test]
    fn empty_shapes() {
        let got = run(&[], 0, &[1.0], 1, 1, 4, None);
        assert!(got.indices.is_empty());
        // No items: rows of width 0.
        let got = run(&[1.0, 2.0], 2, &[], 0, 1, 2, None);
        assert!(got.indices.is_empty() && got.scores.is_empty());
        assert_eq!(got.width, 0);
        // f = 0: every score is 0, so the order is the item order.
        let got = run(&[], 2, &[], 3, 0, 2, None);
        assert_eq!(got.indices, vec![0, 1, 0, 1]);
        assert_eq!(got.scores, vec![0.0; 4]);
    }

    #[test]
    fn thread_count_does_not_change_the_result() {
        let mut rng = Rng(7);
        let (m, n_items, f, n) = (300, 3000, 12, 15);
        let q: Vec<f32> = (0..m * f).map(|_| rng.unif()).collect();
        let v: Vec<f32> = (0..n_items * f).map(|_| rng.unif()).collect();
        let (p, ix) = random_excludes(&mut rng, m, n_items);
        let view = CsrView::new(&p, &ix, &[], n_items).unwrap();
        for path in paths() {
            let go = |t| {
                crate::kernels::pool::with_threads(t, || {
                    topk_with(&q, m, &v, n_items, f, n, Some(&view), path).unwrap()
                })
                .unwrap()
            };
            let one = go(1);
            for t in [2, 3, 5] {
                let other = go(t);
                assert_eq!(one.indices, other.indices);
                assert_eq!(
                    one.scores.iter().map(|s| s.to_bits()).collect::<Vec<_>>(),
                    other.scores.iter().map(|s| s.to_bits()).collect::<Vec<_>>()
                );
            }
        }
    }

    #[test]
    fn first_above_finds_the_first_strictly_greater_value() {
        for len in 0..100 {
            let x: Vec<f32> = (0..len).map(|i| ((i * 37) % 11) as f32).collect();
            for t in [-1.0, 5.0, 9.5, 10.0, 11.0] {
                let want = x.iter().position(|&v| v > t).unwrap_or(len);
                assert_eq!(first_above(&x, t), want);
            }
        }
    }

    #[test]
    fn rejects_bad_input() {
        let q = [1.0f32, 2.0];
        let v = [1.0f32, 2.0, 3.0, 4.0];
        assert!(topk(&q, 1, &v, 2, 2, 0, None).is_err()); // n < 1
        assert!(topk(&q, 1, &v, 4, 1, 1, None).is_err()); // f mismatch (query)
        assert!(topk(&q, 1, &v, 3, 2, 1, None).is_err()); // items length
        assert!(topk(&[f32::NAN, 1.0], 1, &v, 2, 2, 1, None).is_err());
        assert!(topk(&q, 1, &[1.0, f32::INFINITY, 0.0, 0.0], 2, 2, 1, None).is_err());
        assert!(topk(&[1e30, 1e30], 1, &[1e30, 1e30], 1, 2, 1, None).is_err()); // overflow
                                                                                // exclude with the wrong number of rows / columns
        let ex = CsrView::new(&[0, 0, 0], &[], &[], 2).unwrap();
        assert!(topk(&q, 1, &v, 2, 2, 1, Some(&ex)).is_err());
        let ex = CsrView::new(&[0, 0], &[], &[], 3).unwrap();
        assert!(topk(&q, 1, &v, 2, 2, 1, Some(&ex)).is_err());
        let ex = CsrView::new(&[0, 0], &[], &[], 2).unwrap();
        assert!(topk(&q, 1, &v, 2, 2, 1, Some(&ex)).is_ok());
    }
}
