//! A borrowed CSR matrix (int64 indptr, int32 indices, float32 data) and its checks.

use crate::error::{shape_err, CoreResult};

/// A read-only view of a CSR matrix as Python hands it over.
#[derive(Clone, Copy, Debug)]
pub struct CsrView<'a> {
    pub indptr: &'a [i64],
    pub indices: &'a [i32],
    pub data: &'a [f32],
    pub n_cols: usize,
}

impl<'a> CsrView<'a> {
    /// Builds a view after checking everything the kernels rely on, so that the kernels can
    /// index without further checks and never panic on user input: `indptr` starts at 0, never
    /// decreases and ends at `nnz`; every column index lies in `0..n_cols`; `data` (when given)
    /// has one value per index.
    pub fn new(
        indptr: &'a [i64],
        indices: &'a [i32],
        data: &'a [f32],
        n_cols: usize,
    ) -> CoreResult<Self> {
        if indptr.is_empty() {
            return shape_err("indptr must hold n_rows + 1 entries, got an empty array");
        }
        if !data.is_empty() && data.len() != indices.len() {
            return shape_err(format!(
                "CSR data has {} values but indices has {}",
                data.len(),
                indices.len()
            ));
        }
        if indptr[0] != 0 {
            return shape_err(format!("indptr[0] must be 0, got {}", indptr[0]));
        }
        if indptr.windows(2).any(|w| w[1] < w[0]) {
            return shape_err("indptr must be non-decreasing");
        }
        let last = indptr[indptr.len() - 1];
        if last != indices.len() as i64 {
            return shape_err(format!(
                "indptr[-1] = {last} does not match the {} stored indices",
                indices.len()
            ));
        }
        if let Some(bad) = indices.iter().find(|&&c| c < 0 || c as usize >= n_cols) {
            return shape_err(format!("column index {bad} is outside 0..{n_cols}"));
        }
        Ok(Self {
            indptr,
            indices,
            data,
            n_cols,
        })
    }

    pub fn n_rows(&self) -> usize {
        self.indptr.len() - 1
    }

    /// Column indices and values of one row. `row` must be < `n_rows()`.
    #[inline]
    pub fn row(&self, row: usize) -> (&'a [i32], &'a [f32]) {
        let (a, b) = (self.indptr[row] as usize, self.indptr[row + 1] as usize);
        let vals = if self.data.is_empty() {
            &[][..]
        } else {
            &self.data[a..b]
        };
        (&self.indices[a..b], vals)
    }

    /// Up to `k` column indices stored right after row `row`'s (those of the next rows), for
    /// prefetching their vectors while `row` is solved. `row` must be < `n_rows()`.
    #[inline]
    pub fn following(&self, row: usize, k: usize) -> &'a [i32] {
        let end = (self.indptr[row + 1] as usize).min(self.indices.len());
        &self.indices[end..(end + k).min(self.indices.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_a_valid_matrix_and_reads_rows() {
        let m = CsrView::new(&[0, 2, 2, 3], &[0, 2, 1], &[1.0, 2.0, 3.0], 3).unwrap();
        assert_eq!(m.n_rows(), 3);
        assert_eq!(m.row(0), (&[0, 2][..], &[1.0, 2.0][..]));
        assert_eq!(m.row(1).0.len(), 0);
    }

    #[test]
    fn rejects_inconsistent_input() {
        assert!(CsrView::new(&[], &[], &[], 1).is_err());
        assert!(CsrView::new(&[1, 1], &[0], &[1.0], 1).is_err());
        assert!(CsrView::new(&[0, 2, 1], &[0], &[1.0], 1).is_err());
        assert!(CsrView::new(&[0, 2], &[0], &[1.0], 1).is_err());
        assert!(CsrView::new(&[0, 1], &[5], &[1.0], 3).is_err());
        assert!(CsrView::new(&[0, 1], &[-1], &[1.0], 3).is_err());
        assert!(CsrView::new(&[0, 1], &[0], &[1.0, 2.0], 3).is_err());
    }
}
