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
    fn scan(&mut self, scores: &[f32], base: u32, n: usize, cap: usize, flt: Items<'_>) {
        let mut pos = 0;
        while pos < scores.len() {
            pos += first_above(&scores[pos..], self.thr);
            if pos >= scores.len() {
                break;
            }
            if let Some(item) = flt.admit(base + pos as u32).filter(|&i| !self.excluded(i)) {
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
    #[allow(clippy::too_many_arguments)]
    fn offer(
        &mut self,
        scores: &[f32],
        base: u32,
        mut mask: u32,
        n: usize,
        cap: usize,
        flt: Items<'_>,
    ) {
        while mask != 0 {
            let lane = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            let Some(&sc) = scores.get(lane) else { break };
            // The threshold may have risen since the mask was computed.
            if sc > self.thr {
                if let Some(item) = flt.admit(base + lane as u32).filter(|&i| !self.excluded(i)) {
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
    } else if x.len() <= SMALL_CALL {
        // A few query rows: no hand-off to the thread pool.
        x.chunks(f)
            .map(|r| r.iter().map(|&v| v as f64 * v as f64).sum::<f64>())
            .fold(0.0, f64::max)
    } else {
        x.par_chunks(f)
            .map(|r| r.iter().map(|&v| v as f64 * v as f64).sum::<f64>())
            .reduce(|| 0.0, f64::max)
    };
    Ok(max_sq)
}

/// Which items a query may get, by position in the scored item array.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Items<'a> {
    /// Every item; position = item index.
    All,
    /// Position = item index; only items with `mask[i]` may be returned.
    Mask(&'a [bool]),
    /// The scored array is a subset: position `p` is item `ids[p]` (strictly increasing).
    Subset(&'a [u32]),
}

impl Items<'_> {
    /// The item index at position `pos`, or `None` when it may not be returned.
    #[inline(always)]
    fn admit(self, pos: u32) -> Option<u32> {
        match self {
            Items::All => Some(pos),
            Items::Mask(m) => m.get(pos as usize).copied().unwrap_or(false).then_some(pos),
            Items::Subset(ids) => ids.get(pos as usize).copied(),
        }
    }
}

/// Which scoring loop runs: the fused AVX2+FMA micro-kernel when the CPU has it, else faer tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Path {
    Auto,
    /// faer GEMM into a score tile, then the vectorised threshold scan (portable).
    Tiled,
    /// Hand-written AVX2+FMA micro-kernel with the threshold test on the registers.
    Fused,
    /// The fused scores, found through an int8 screen of every item followed by the exact
    /// float32 re-score of the candidates (AVX2+FMA; `Auto` picks it for a few query rows).
    #[cfg_attr(not(test), allow(dead_code))]
    Screened,
}

/// Values up to which the checks of an input run on the calling thread (no pool hand-off).
const SMALL_CALL: usize = 1 << 14;

/// Query rows up to which `Path::Auto` answers through the int8 screen: one query row reads
/// every item once, so the scan streams memory and a quarter of the bytes is much less time;
/// from about six rows on the fused kernel reuses each item panel for six rows and is compute
/// bound.
const SCREEN_MAX_ROWS: usize = 4;

/// Item factors prepared once for many top-k calls: checked (finite, largest norm), packed into
/// the fused kernel's panels (or kept row-major for the portable loop), and, where the CPU has
/// AVX2, an int8 copy (one scale per item) with a rigorous bound of its error for the screen.
/// Immutable, so it is shared by concurrent calls.
#[derive(Debug)]
pub struct Prepared {
    n_items: usize,
    f: usize,
    max_sq: f64,
    fused: bool,
    /// Row-major items (portable path only).
    items: Vec<f32>,
    /// Fused panels (fused path only).
    packed: Vec<f32>,
    half: Option<fused::Quant>,
}

impl Prepared {
    /// Prepares `items` (row-major `n_items x f`) for the loop this CPU runs fastest; with
    /// `screen`, also the int8 copy that answers one to four query rows per call faster
    /// (worth it when the preparation serves many calls).
    pub fn new(items: &[f32], n_items: usize, f: usize, screen: bool) -> CoreResult<Self> {
        let mut prep = Self::with_path(items, n_items, f, Path::Fused)
            .or_else(|_| Self::with_path(items, n_items, f, Path::Tiled))?;
        if screen && prep.fused {
            prep.half = fused::Quant::new(items, n_items, f);
        }
        Ok(prep)
    }

    pub(crate) fn with_path(
        items: &[f32],
        n_items: usize,
        f: usize,
        path: Path,
    ) -> CoreResult<Self> {
        if path != Path::Auto && path != Path::Tiled && !fused::available() {
            return Err(CoreError::Value(
                "the fused top-k path needs AVX2 and FMA".into(),
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
        let max_sq = check_finite("items", items, f)?;
        let fused = path != Path::Tiled && fused::available();
        let (rows, packed) = if fused {
            (Vec::new(), fused::pack_items(items, n_items, f))
        } else {
            (items.to_vec(), Vec::new())
        };
        let half = if fused && path == Path::Screened {
            fused::Quant::new(items, n_items, f)
        } else {
            None
        };
        Ok(Self {
            n_items,
            f,
            max_sq,
            fused,
            items: rows,
            packed,
            half,
        })
    }

    pub fn n_items(&self) -> usize {
        self.n_items
    }

    pub fn factors(&self) -> usize {
        self.f
    }

    /// True when single queries go through the int8 screen.
    pub fn screens(&self) -> bool {
        self.half.is_some()
    }

    /// The item rows at `ids`, row-major (from whichever copy this holds).
    fn gather(&self, ids: &[u32]) -> Vec<f32> {
        let f = self.f;
        let mut out = Vec::with_capacity(ids.len() * f);
        for &i in ids {
            let i = i as usize;
            if self.fused {
                out.extend(fused::unpack_row(&self.packed, f, i));
            } else {
                out.extend_from_slice(&self.items[i * f..(i + 1) * f]);
            }
        }
        out
    }
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
    let prep = Prepared::with_path(items, n_items, f, path)?;
    topk_prepared_with(&prep, query, m, n, exclude, None, path)
}

/// [`topk`] over prepared items, with an optional item filter: `allowed[i] == false` keeps item
/// `i` out of every row (the rows still hold `min(n, n_items)` slots, padded with -1 / NaN).
pub fn topk_prepared(
    prep: &Prepared,
    query: &[f32],
    m: usize,
    n: usize,
    exclude: Option<&CsrView<'_>>,
    allowed: Option<&[bool]>,
) -> CoreResult<TopK> {
    topk_prepared_with(prep, query, m, n, exclude, allowed, Path::Auto)
}

/// A prepared item set seen by the scoring loops, with the filter to apply.
struct View<'a> {
    n_items: usize,
    fused: bool,
    items: &'a [f32],
    packed: &'a [f32],
    half: Option<&'a fused::Quant>,
    flt: Items<'a>,
}

pub(crate) fn topk_prepared_with(
    prep: &Prepared,
    query: &[f32],
    m: usize,
    n: usize,
    exclude: Option<&CsrView<'_>>,
    allowed: Option<&[bool]>,
    path: Path,
) -> CoreResult<TopK> {
    let (n_items, f) = (prep.n_items, prep.f);
    if n == 0 {
        return Err(CoreError::Value("n must be >= 1, got 0".into()));
    }
    if path == Path::Tiled && prep.fused || path != Path::Tiled && path != Path::Auto && !prep.fused
    {
        return Err(CoreError::Value(format!(
            "items prepared for another path than {path:?}"
        )));
    }
    if m.checked_mul(f) != Some(query.len()) {
        return shape_err(format!(
            "query has {} values, expected {m} rows x {f} factors",
            query.len()
        ));
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
    if let Some(a) = allowed {
        if a.len() != n_items {
            return shape_err(format!(
                "allowed has {} entries but there are {n_items} items",
                a.len()
            ));
        }
    }
    let qmax = check_finite("query", query, f)?;
    let bound = (qmax * prep.max_sq).sqrt();
    if bound > MAX_SCORE_BOUND {
        return Err(CoreError::Value(format!(
            "factors too large: a dot product could reach {bound:.3e} and overflow float32; \
             rescale the query or item factors"
        )));
    }
    // No row can hold more than n_items results: the output (and every buffer below) is sized
    // by min(n, n_items), so a huge n costs nothing.
    let width = n.min(n_items);
    let total = m
        .checked_mul(width)
        .ok_or_else(|| CoreError::Value(format!("an output of {m} x {width} is too large")))?;
    let mut indices: Vec<i32> = Vec::new();
    let mut scores: Vec<f32> = Vec::new();
    if indices.try_reserve_exact(total).is_err() || scores.try_reserve_exact(total).is_err() {
        return Err(CoreError::Value(format!(
            "cannot allocate an output of {m} x {width}; score fewer query rows per call"
        )));
    }
    indices.resize(total, -1);
    scores.resize(total, f32::NAN);
    let mut out = TopK {
        indices,
        scores,
        width,
    };
    if m == 0 || width == 0 {
        return Ok(out);
    }
    let screen = match path {
        Path::Screened => true,
        Path::Auto => m <= SCREEN_MAX_ROWS,
        _ => false,
    };
    let full = View {
        n_items,
        fused: prep.fused,
        items: &prep.items,
        packed: &prep.packed,
        half: prep.half.as_ref().filter(|_| screen),
        flt: Items::All,
    };
    match allowed {
        None => run(&full, query, m, f, exclude, &mut out),
        Some(mask) => {
            let k = mask.iter().filter(|&&a| a).count();
            if k == 0 {
                return Ok(out);
            }
            if k.saturating_mul(4) > n_items {
                // Most items allowed: score them all, skip the others at selection.
                let view = View {
                    flt: Items::Mask(mask),
                    ..full
                };
                run(&view, query, m, f, exclude, &mut out);
            } else {
                // Few allowed: score only those (gathered and packed for this call).
                let ids: Vec<u32> = (0..n_items as u32).filter(|&i| mask[i as usize]).collect();
                let rows = prep.gather(&ids);
                let (sub_items, sub_packed) = if prep.fused {
                    (Vec::new(), fused::pack_items(&rows, k, f))
                } else {
                    (rows, Vec::new())
                };
                let view = View {
                    n_items: k,
                    fused: prep.fused,
                    items: &sub_items,
                    packed: &sub_packed,
                    half: None,
                    flt: Items::Subset(&ids),
                };
                run(&view, query, m, f, exclude, &mut out);
            }
        }
    }
    Ok(out)
}

/// Fills `out` (already padded) with every query row's best `out.width` items of `view`.
fn run(
    view: &View<'_>,
    query: &[f32],
    m: usize,
    f: usize,
    exclude: Option<&CsrView<'_>>,
    out: &mut TopK,
) {
    let width = out.width;
    // At most `view.n_items` candidates exist per row; slots past them stay padding.
    let n = width.min(view.n_items);
    if n == 0 {
        return;
    }
    // Candidate buffer: room for n more before a compaction, so compaction costs O(1)
    // amortised per candidate.
    let cap = n + n.max(64);
    let flt = view.flt;
    // The fused path computes each score the same way wherever its user sits, so its block
    // size may follow the thread count (smaller blocks for few users, to keep every thread
    // busy); the faer path keeps a fixed layout so its rounding never depends on threads.
    let block_users = if view.half.is_some() {
        1
    } else if view.fused {
        let per_task = m.div_ceil(4 * rayon::current_num_threads().max(1));
        per_task
            .next_multiple_of(fused::MR)
            .clamp(fused::MR, fused::BLOCK_USERS)
    } else {
        BLOCK_USERS
    };
    let block_out = block_users * width;
    let init = || {
        let tile_len = if view.fused {
            0
        } else {
            TILE_ITEMS.min(view.n_items)
        };
        let tile = vec![0.0f32; block_users * tile_len];
        let sel: Vec<Selection> = (0..block_users).map(|_| Selection::new(cap)).collect();
        (tile, sel)
    };
    let work = |(tile, sel): &mut (Vec<f32>, Vec<Selection>),
                (b, (out_idx, out_sc)): (usize, (&mut [i32], &mut [f32]))| {
        let u0 = b * block_users;
        let bu = out_idx.len() / width;
        let qblock = &query[u0 * f..(u0 + bu) * f];
        let sel = &mut sel[..bu];
        for (j, s) in sel.iter_mut().enumerate() {
            s.reset();
            if let Some(ex) = exclude {
                sorted_excludes(ex.row(u0 + j).0, &mut s.excl);
            }
        }
        if let Some(half) = view.half {
            // One row: the int8 screen, then the exact re-score of its candidates
            // (the whole exact scan when the screen cannot narrow the row down).
            let s = &mut sel[0];
            if !fused::screen(qblock, half, view.packed, view.n_items, f, s, n, flt) {
                s.reset();
                if let Some(ex) = exclude {
                    sorted_excludes(ex.row(u0).0, &mut s.excl);
                }
                fused::block(qblock, view.packed, view.n_items, f, sel, n, cap, flt);
            }
        } else if view.fused {
            fused::block(qblock, view.packed, view.n_items, f, sel, n, cap, flt);
        } else {
            let mut i0 = 0;
            while i0 < view.n_items {
                let bi = TILE_ITEMS.min(view.n_items - i0);
                let t = &mut tile[..bi * bu];
                score_tile(&view.items[i0 * f..(i0 + bi) * f], bi, qblock, bu, f, t);
                for (j, s) in sel.iter_mut().enumerate() {
                    s.scan(&t[j * bi..(j + 1) * bi], i0 as u32, n, cap, flt);
                }
                i0 += bi;
            }
        }
        for (j, s) in sel.iter_mut().enumerate() {
            let r = j * width..(j + 1) * width;
            s.finish(&mut out_idx[r.clone()], &mut out_sc[r]);
        }
    };
    if m <= block_users.max(SCREEN_MAX_ROWS) {
        // A few rows: on the calling thread, no pool hand-off.
        let mut state = init();
        let blocks = out
            .indices
            .chunks_mut(block_out)
            .zip(out.scores.chunks_mut(block_out));
        for b in blocks.enumerate() {
            work(&mut state, b);
        }
    } else {
        out.indices
            .par_chunks_mut(block_out)
            .zip(out.scores.par_chunks_mut(block_out))
            .enumerate()
            .for_each_init(init, work);
    }
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
    use super::{better, Items, Selection};

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
    #[allow(clippy::too_many_arguments)]
    pub(super) fn block(
        q: &[f32],
        packed: &[f32],
        n_items: usize,
        f: usize,
        sel: &mut [Selection],
        n: usize,
        cap: usize,
        flt: Items<'_>,
    ) {
        let np = n_items.div_ceil(NR);
        // Internal invariants (topk checked the user's shapes): nothing is read out of bounds.
        assert!(q.len() == sel.len() * f && packed.len() == np * f * NR && available());
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (sel, n, cap, flt);
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `available()` checked AVX2+FMA; lengths were asserted above.
        unsafe {
            block_avx2(q, packed, n_items, f, sel, n, cap, flt)
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn block_avx2(
        q: &[f32],
        packed: &[f32],
        n_items: usize,
        f: usize,
        sel: &mut [Selection],
        n: usize,
        cap: usize,
        flt: Items<'_>,
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
                    6 => rows::<6>(qr, packed, n_items, f, p0, p1, s, n, cap, flt),
                    5 => rows::<5>(qr, packed, n_items, f, p0, p1, s, n, cap, flt),
                    4 => rows::<4>(qr, packed, n_items, f, p0, p1, s, n, cap, flt),
                    3 => rows::<3>(qr, packed, n_items, f, p0, p1, s, n, cap, flt),
                    2 => rows::<2>(qr, packed, n_items, f, p0, p1, s, n, cap, flt),
                    _ => rows::<1>(qr, packed, n_items, f, p0, p1, s, n, cap, flt),
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
        flt: Items<'_>,
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
                    sel[r].offer(&lanes, base as u32, mask, n, cap, flt);
                }
            }
        }
    }

    /// Item `i`'s factors read back from the panels.
    pub(super) fn unpack_row(packed: &[f32], f: usize, i: usize) -> impl Iterator<Item = f32> + '_ {
        let (p, l) = (i / NR, i % NR);
        (0..f).map(move |k| packed[p * f * NR + k * NR + l])
    }

    /// Items per panel of the int8 copy (one 8-lane int32 accumulator).
    const NQ: usize = 8;

    /// The int8 copy of the items for the screen (3.2 MB for 50k x 64 instead of 12.8 MB, so
    /// it stays in cache between calls): item `i` is stored as `round(v_i · s_i)` with its own
    /// scale `s_i = 127 / max_k |v_ik|`, in panels of `NQ` items whose factor pairs sit next to
    /// each other (`vpmaddwd` multiplies and adds one pair per lane); `inv[i]` is `1 / s_i`
    /// rounded to float32. `d_max` is the largest `|v_i − inv_i · round(v_i s_i)|` and `n_max`
    /// the largest `|v_i|` (float64), for the error bound of [`screen`].
    #[derive(Debug)]
    pub(crate) struct Quant {
        panels: Vec<i8>,
        inv: Vec<f32>,
        /// Factors rounded up to even (a zero pads odd ranks).
        fp: usize,
        d_max: f64,
        n_max: f64,
    }

    /// The CPU has what the screen needs (AVX2 and FMA).
    pub(super) fn screen_available() -> bool {
        available()
    }

    impl Quant {
        /// `None` where the screen cannot run (no AVX2, nothing to score, more than 512
        /// factors: the int32 sums could overflow).
        pub(super) fn new(items: &[f32], n_items: usize, f: usize) -> Option<Self> {
            if !screen_available() || n_items == 0 || f == 0 || f > 512 {
                return None;
            }
            if items.len() != n_items * f {
                return None;
            }
            let fp = f + f % 2;
            let np = n_items.div_ceil(NQ);
            let mut panels = vec![0i8; np * fp * NQ];
            let mut inv = vec![0.0f32; np * NQ];
            let (mut d_max, mut n_max) = (0.0f64, 0.0f64);
            let mut row = vec![0i8; fp];
            for (i, v) in items.chunks_exact(f).enumerate() {
                let m = v.iter().fold(0.0f32, |a, &x| a.max(x.abs())) as f64;
                let (s, iv) = if m > 0.0 {
                    let s = 127.0 / m;
                    (s, (1.0 / s) as f32)
                } else {
                    (0.0, 0.0)
                };
                let (mut d2, mut n2) = (0.0f64, 0.0f64);
                for (k, &x) in v.iter().enumerate() {
                    let qv = (x as f64 * s).round().clamp(-127.0, 127.0);
                    row[k] = qv as i8;
                    let e = x as f64 - qv * iv as f64;
                    d2 += e * e;
                    n2 += x as f64 * x as f64;
                }
                d_max = d_max.max(d2.sqrt());
                n_max = n_max.max(n2.sqrt());
                inv[i] = iv;
                // Panel p = i / NQ, lane l: pair kk of item i at ((p·fp/2 + kk)·NQ + l)·2.
                let (p, l) = (i / NQ, i % NQ);
                for kk in 0..fp / 2 {
                    let at = ((p * (fp / 2) + kk) * NQ + l) * 2;
                    panels[at] = row[2 * kk];
                    panels[at + 1] = row[2 * kk + 1];
                }
            }
            // A margin for the float64 rounding of these sums (relative 1e-12 at most).
            let (d_max, n_max) = (d_max * (1.0 + 1e-9), n_max * (1.0 + 1e-9));
            (d_max.is_finite() && n_max.is_finite()).then_some(Self {
                panels,
                inv,
                fp,
                d_max,
                n_max,
            })
        }
    }

    /// The largest float32 strictly below `x` (finite `x`).
    fn below(x: f32) -> f32 {
        if x > 0.0 {
            f32::from_bits(x.to_bits() - 1)
        } else if x == 0.0 {
            -f32::from_bits(1)
        } else {
            f32::from_bits(x.to_bits() + 1)
        }
    }

    /// The candidates of one query row `q` (`1 x f`) found through the int8 screen, with their
    /// exact scores, put in `sel.buf`: the row's top `n` is the top `n` of them, exactly the
    /// fused kernel's answer (same scores, same ties). Returns false when the screen could not
    /// narrow the row down (then `sel` holds garbage and the caller runs the exact scan).
    ///
    /// The query is rounded to int16, `q' = round(t q)` with `t = 32767 / max|q_k|`; the screen
    /// value of item `i` is `a_i = fl(fl(q'·v'_i) · inv_i)` (the int32 dot product is exact),
    /// an estimate of `t · s_i` where `s_i` is the fused kernel's float32 score. With
    /// `e = |q − q'/t|`, `|q'/t| <= |q| + e` and Cauchy-Schwarz,
    /// `|t s_i − a_i| <= t E`, `E = e N + (|q| + e) D + γ_f |q| N + 2^-21 (|q| + e)(N + D)`
    /// (`N`, `D`: the largest item norm and quantisation error, `γ_f = f u / (1 − f u)` the
    /// float32 kernel's rounding, the last term the two float32 roundings of `a_i`). If `a_n` is
    /// the n-th best screen value among the admitted items, an item of the exact top n has
    /// `a_i >= a_n − 2 t E`: the screen keeps every admitted item above that limit (`a_n` only
    /// rises during the scan, so the running limit is conservative) and re-scores exactly those.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn screen(
        q: &[f32],
        quant: &Quant,
        packed: &[f32],
        n_items: usize,
        f: usize,
        sel: &mut Selection,
        n: usize,
        flt: Items<'_>,
    ) -> bool {
        let np = n_items.div_ceil(NQ);
        let fp = quant.fp;
        if !screen_available()
            || q.len() != f
            || fp != f + f % 2
            || quant.panels.len() != np * fp * NQ
            || quant.inv.len() != np * NQ
            || packed.len() != n_items.div_ceil(NR) * f * NR
            || n == 0
        {
            return false;
        }
        let qmax = q.iter().fold(0.0f32, |a, &x| a.max(x.abs())) as f64;
        if qmax == 0.0 {
            return false;
        }
        let t = 32767.0 / qmax;
        let mut pairs = vec![0i32; fp / 2];
        let (mut e2, mut q2) = (0.0f64, 0.0f64);
        for (k, &x) in q.iter().enumerate() {
            let r = (x as f64 * t).round().clamp(-32767.0, 32767.0);
            let e = x as f64 - r / t;
            e2 += e * e;
            q2 += x as f64 * x as f64;
            let half = (r as i16 as u16 as i32) << (16 * (k % 2));
            pairs[k / 2] |= half;
        }
        let (e, qn) = (e2.sqrt() * (1.0 + 1e-9), q2.sqrt() * (1.0 + 1e-9));
        let u = 2.0f64.powi(-24);
        let fu = f as f64 * u;
        let gamma = fu / (1.0 - fu);
        let (nn, dd) = (quant.n_max, quant.d_max);
        let err =
            e * nn + (qn + e) * dd + gamma * qn * nn + 2.0f64.powi(-21) * (qn + e) * (nn + dd);
        let band = 2.0 * t * err * (1.0 + 1e-6);
        if !band.is_finite() || band > f32::MAX as f64 / 4.0 {
            return false;
        }
        // Give up (the exact scan is then cheaper than the bookkeeping) past this many
        // candidates: scores packed so closely that the screen cannot separate them.
        let limit = (64 * n).max(4096).min(n_items);
        #[cfg(target_arch = "x86_64")]
        {
            // SAFETY: screen_available() checked AVX2 and FMA; lengths were checked above.
            unsafe {
                screen_avx2(
                    q, &pairs, quant, packed, n_items, f, sel, n, flt, band, limit,
                )
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (sel, flt, band, limit, pairs);
            false
        }
    }

    /// Keeps every candidate with a screen value `>= a_n − band` (`a_n` the n-th best) and
    /// returns the new entry limit, strictly below `a_n − band`.
    fn prune(buf: &mut Vec<(f32, u32)>, n: usize, band: f64) -> f32 {
        if buf.len() < n {
            return f32::NEG_INFINITY;
        }
        buf.select_nth_unstable_by(n - 1, better);
        let lim64 = buf[n - 1].0 as f64 - band;
        let mut lim = lim64 as f32;
        if lim as f64 >= lim64 {
            lim = below(lim);
        }
        buf.retain(|&(a, _)| a > lim);
        lim
    }

    /// Exact int32 dot products of the query pairs with panels `p0..p0 + P`: one 8-lane
    /// accumulator per panel.
    ///
    /// # Safety
    /// AVX2; panels `p0..p0 + P` lie inside the int8 panels at `base` (`fp / 2` pairs each).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn screen_panels<const P: usize>(
        pairs: &[i32],
        base: *const i8,
        p0: usize,
    ) -> [std::arch::x86_64::__m256i; 4] {
        use std::arch::x86_64::*;
        let kp = pairs.len();
        let mut acc = [_mm256_setzero_si256(); 4];
        for (kk, &pr) in pairs.iter().enumerate() {
            let qv = _mm256_set1_epi32(pr);
            for (j, a) in acc.iter_mut().enumerate().take(P) {
                let src = base.add(((p0 + j) * kp + kk) * NQ * 2);
                let x = _mm256_cvtepi8_epi16(_mm_loadu_si128(src as *const __m128i));
                *a = _mm256_add_epi32(*a, _mm256_madd_epi16(x, qv));
            }
        }
        acc
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn screen_avx2(
        q: &[f32],
        pairs: &[i32],
        quant: &Quant,
        packed: &[f32],
        n_items: usize,
        f: usize,
        sel: &mut Selection,
        n: usize,
        flt: Items<'_>,
        band: f64,
        limit: usize,
    ) -> bool {
        use std::arch::x86_64::*;
        /// Panels scored at once (independent accumulators, overlapping loads).
        const G: usize = 4;
        let np = n_items.div_ceil(NQ);
        let base = quant.panels.as_ptr();
        let mut cap = (2 * n).max(256);
        let mut buf: Vec<(f32, u32)> = Vec::with_capacity(cap);
        let mut thr = f32::NEG_INFINITY;
        let mut lanes = [0.0f32; NQ];
        let mut p0 = 0;
        while p0 < np {
            let g = G.min(np - p0);
            let acc = match g {
                4 => screen_panels::<4>(pairs, base, p0),
                3 => screen_panels::<3>(pairs, base, p0),
                2 => screen_panels::<2>(pairs, base, p0),
                _ => screen_panels::<1>(pairs, base, p0),
            };
            let t = _mm256_set1_ps(thr);
            for (j, a) in acc.iter().enumerate().take(g) {
                let first = (p0 + j) * NQ;
                // SAFETY: inv holds np * NQ values.
                let inv = _mm256_loadu_ps(quant.inv.as_ptr().add(first));
                let v = _mm256_mul_ps(_mm256_cvtepi32_ps(*a), inv);
                let valid: u32 = if first + NQ <= n_items {
                    0xFF
                } else {
                    (1u32 << (n_items - first)) - 1
                };
                let mut mask =
                    (_mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(v, t)) as u32) & valid;
                if mask == 0 {
                    continue;
                }
                _mm256_storeu_ps(lanes.as_mut_ptr(), v);
                while mask != 0 {
                    let lane = mask.trailing_zeros() as usize;
                    mask &= mask - 1;
                    let a = lanes[lane];
                    if a <= thr {
                        continue;
                    }
                    let pos = (first + lane) as u32;
                    if flt.admit(pos).is_some_and(|i| !sel.excluded(i)) {
                        buf.push((a, pos));
                        if buf.len() >= cap {
                            thr = prune(&mut buf, n, band);
                            if buf.len() > limit {
                                return false;
                            }
                            if 2 * buf.len() > cap {
                                cap *= 2;
                            }
                        }
                    }
                }
            }
            p0 += g;
        }
        prune(&mut buf, n, band);
        // Exact re-score: the fused kernel's chain, fma(q_k, v_k, acc) for k = 0..f from 0.
        let qp = q.as_ptr();
        sel.buf.clear();
        for &(_, pos) in &buf {
            let pos = pos as usize;
            let (p, l) = (pos / NR, pos % NR);
            let mut s = 0.0f32;
            for k in 0..f {
                s = (*qp.add(k)).mul_add(packed[(p * f + k) * NR + l], s);
            }
            if let Some(item) = flt.admit(pos as u32) {
                sel.buf.push((s, item));
            }
        }
        true
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

    /// Every scoring loop this CPU can run.
    fn paths() -> Vec<Path> {
        let mut p = vec![Path::Tiled];
        if fused::available() {
            p.push(Path::Fused);
        }
        if fused::screen_available() {
            p.push(Path::Screened);
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

    /// Brute force with an item filter: only `allowed` items, best first, ties by index.
    fn brute_allowed(
        q: &[f32],
        v: &[f32],
        f: usize,
        n: usize,
        excl: Option<(&[i64], &[i32])>,
        allowed: &[bool],
    ) -> Vec<i32> {
        let (bi, _) = brute(q, v, f, v.len() / f, excl);
        let m = q.len() / f;
        let n_items = v.len() / f;
        let w = n.min(n_items);
        let mut out = vec![-1; m * w];
        for u in 0..m {
            let row: Vec<i32> = bi[u * n_items..(u + 1) * n_items]
                .iter()
                .copied()
                .filter(|&i| i >= 0 && allowed[i as usize])
                .take(w)
                .collect();
            out[u * w..u * w + row.len()].copy_from_slice(&row);
        }
        out
    }

    #[test]
    fn item_filters_match_brute_force_on_every_path() {
        let mut rng = Rng(0x51ed);
        for &(m, n_items, f, n) in &[
            (1, 1, 1, 1),
            (3, 50, 2, 5),
            (2, 3000, 4, 10),
            (9, 700, 3, 40),
        ] {
            let q = int_factors(&mut rng, m, f, -3, 3);
            let v = int_factors(&mut rng, n_items, f, -2, 2);
            let (p, ix) = random_excludes(&mut rng, m, n_items);
            // none, one, few (gathered subset), most (mask), every item allowed
            for density in [0u64, 1, 5, 60, 100] {
                let allowed: Vec<bool> = (0..n_items)
                    .map(|i| {
                        if density == 1 {
                            i == n_items / 2
                        } else {
                            rng.below(100) < density
                        }
                    })
                    .collect();
                for with_ex in [false, true] {
                    let ex = with_ex.then_some((&p[..], &ix[..]));
                    let want = brute_allowed(&q, &v, f, n, ex, &allowed);
                    for path in paths() {
                        let prep = Prepared::with_path(&v, n_items, f, path).unwrap();
                        let view = ex.map(|(p, i)| CsrView::new(p, i, &[], n_items).unwrap());
                        let got = topk_prepared_with(
                            &prep,
                            &q,
                            m,
                            n,
                            view.as_ref(),
                            Some(&allowed),
                            path,
                        )
                        .unwrap();
                        assert_eq!(got.width, n.min(n_items));
                        assert_eq!(got.indices, want, "{path:?} density={density} m={m}");
                        for (i, s) in got.indices.iter().zip(&got.scores) {
                            assert_eq!(*i < 0, s.is_nan());
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn screen_equals_the_fused_scores_bit_for_bit() {
        if !fused::screen_available() {
            return;
        }
        let mut rng = Rng(99);
        for &(m, n_items, f, n, spread) in &[
            (3, 5000, 64, 10, 1.0f32),
            (2, 3001, 16, 1, 1.0),
            (2, 2000, 8, 50, 1.0),
            // Nearly equal items: the screen cannot separate them and must keep them all (or
            // fall back to the exact scan); either way the answer is the exact one.
            (2, 3000, 32, 10, 1e-4),
            (1, 100, 5, 200, 0.0),
            // Tiny and large values (the per-item scales).
            (2, 1000, 12, 7, 1e-6),
            (2, 1000, 12, 7, 3e4),
        ] {
            let base: Vec<f32> = (0..f).map(|_| rng.unif()).collect();
            let v: Vec<f32> = (0..n_items * f)
                .map(|x| {
                    let b = if spread < 1.0 { base[x % f] } else { 0.0 };
                    b + spread * rng.unif()
                })
                .collect();
            let q: Vec<f32> = (0..m * f).map(|_| rng.unif()).collect();
            let (p, ix) = random_excludes(&mut rng, m, n_items);
            let view = CsrView::new(&p, &ix, &[], n_items).unwrap();
            let allowed: Vec<bool> = (0..n_items).map(|_| rng.below(10) < 7).collect();
            let fused_prep = Prepared::with_path(&v, n_items, f, Path::Fused).unwrap();
            let screen_prep = Prepared::with_path(&v, n_items, f, Path::Screened).unwrap();
            for ex in [None, Some(&view)] {
                for al in [None, Some(&allowed[..])] {
                    let a = topk_prepared_with(&fused_prep, &q, m, n, ex, al, Path::Fused).unwrap();
                    let b =
                        topk_prepared_with(&screen_prep, &q, m, n, ex, al, Path::Screened).unwrap();
                    assert_eq!(
                        a.indices, b.indices,
                        "n_items={n_items} f={f} spread={spread}"
                    );
                    let bits = |t: &TopK| t.scores.iter().map(|s| s.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&a), bits(&b));
                }
            }
        }
    }

    #[test]
    fn prepared_items_are_reused_across_calls() {
        let mut rng = Rng(5);
        let (n_items, f) = (900, 6);
        let v: Vec<f32> = (0..n_items * f).map(|_| rng.unif()).collect();
        let prep = Prepared::new(&v, n_items, f, true).unwrap();
        for m in [1, 2, 5, 40] {
            let q: Vec<f32> = (0..m * f).map(|_| rng.unif()).collect();
            let a = topk_prepared(&prep, &q, m, 8, None, None).unwrap();
            let b = topk(&q, m, &v, n_items, f, 8, None).unwrap();
            assert_eq!(a, b);
            // One row alone gives the same answer as inside a batch.
            let one = topk_prepared(&prep, &q[..f], 1, 8, None, None).unwrap();
            assert_eq!(one.indices, a.indices[..8]);
        }
        let bad = [true; 3];
        assert!(topk_prepared(&prep, &[0.0; 6], 1, 2, None, Some(&bad)).is_err());
    }

    #[test]
    fn the_screen_narrows_random_rows_down() {
        if !fused::screen_available() {
            return;
        }
        let mut rng = Rng(17);
        let (n_items, f, n) = (20_000, 64, 10);
        let v: Vec<f32> = (0..n_items * f).map(|_| rng.unif()).collect();
        let prep = Prepared::new(&v, n_items, f, true).unwrap();
        assert!(prep.screens());
        let quant = prep.half.as_ref().unwrap();
        for _ in 0..5 {
            let q: Vec<f32> = (0..f).map(|_| rng.unif()).collect();
            let mut sel = Selection::new(n + 64);
            assert!(fused::screen(
                &q,
                quant,
                &prep.packed,
                n_items,
                f,
                &mut sel,
                n,
                Items::All
            ));
            // A handful of candidates to re-score, not thousands.
            assert!(
                sel.buf.len() >= n && sel.buf.len() < 500,
                "{}",
                sel.buf.len()
            );
        }
        // Equal items cannot be separated: the screen gives up, the exact scan answers.
        let same = vec![0.25f32; n_items * f];
        let prep = Prepared::new(&same, n_items, f, true).unwrap();
        let q = vec![0.5f32; f];
        let mut sel = Selection::new(n + 64);
        let quant = prep.half.as_ref().unwrap();
        assert!(!fused::screen(
            &q,
            quant,
            &prep.packed,
            n_items,
            f,
            &mut sel,
            n,
            Items::All
        ));
        let got = topk_prepared(&prep, &q, 1, n, None, None).unwrap();
        assert_eq!(got.indices, (0..n as i32).collect::<Vec<_>>());
    }
}
