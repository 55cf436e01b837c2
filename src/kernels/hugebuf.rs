//! A zeroed `f32` buffer backed by 2 MiB pages where the OS allows it.
//!
//! The ALS half-steps read rows of the fixed side's (whitened) factors at random: with 4 KiB pages
//! a 50 MB factor matrix misses the TLB on almost every row. Large numpy arrays already get
//! `madvise(MADV_HUGEPAGE)` from numpy; this does the same for the kernels' own work buffers.

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

const HUGE: usize = 2 << 20;

pub struct HugeBuf {
    ptr: NonNull<f32>,
    len: usize,
    layout: Option<Layout>,
}

// SAFETY: HugeBuf owns its allocation exclusively, like a Vec<f32>.
unsafe impl Send for HugeBuf {}
// SAFETY: shared access only hands out &[f32].
unsafe impl Sync for HugeBuf {}

impl HugeBuf {
    pub fn zeroed(len: usize) -> Self {
        let bytes = len * std::mem::size_of::<f32>();
        if bytes == 0 {
            return Self {
                ptr: NonNull::dangling(),
                len: 0,
                layout: None,
            };
        }
        let align = if bytes >= HUGE {
            HUGE
        } else {
            std::mem::align_of::<f32>()
        };
        let layout = Layout::from_size_align(bytes, align).expect("valid layout");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) } as *mut f32;
        let Some(ptr) = NonNull::new(raw) else {
            std::alloc::handle_alloc_error(layout)
        };
        #[cfg(target_os = "linux")]
        if bytes >= HUGE {
            // SAFETY: advisory only, over memory we own; failure is harmless and ignored.
            unsafe {
                libc::madvise(raw as *mut libc::c_void, bytes, libc::MADV_HUGEPAGE);
            }
        }
        Self {
            ptr,
            len,
            layout: Some(layout),
        }
    }
}

impl Deref for HugeBuf {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        // SAFETY: ptr is valid for len initialised (zeroed) f32s, or dangling with len 0.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for HugeBuf {
    fn deref_mut(&mut self) -> &mut [f32] {
        // SAFETY: as above, and we hold the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for HugeBuf {
    fn drop(&mut self) {
        if let Some(layout) = self.layout {
            // SAFETY: allocated in `zeroed` with this layout.
            unsafe { dealloc(self.ptr.as_ptr() as *mut u8, layout) }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_large_and_empty_buffers_are_zeroed_and_writable() {
        for len in [0usize, 3, 1 << 20] {
            let mut b = HugeBuf::zeroed(len);
            assert_eq!(b.len(), len);
            assert!(b.iter().all(|v| *v == 0.0));
            if len > 0 {
                b[len - 1] = 2.0;
                assert_eq!(b[len - 1], 2.0);
            }
        }
    }
}
