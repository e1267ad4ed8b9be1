//! The `weft` binary's global allocator: mimalloc (v2), entered by its plain functions
//! whenever the block they return is aligned enough.
//!
//! A Rust allocation always comes with an alignment, and the `mimalloc` crate passes
//! every one to `mi_malloc_aligned`. That entry point has a fast path only for blocks of
//! at most 1 KiB whose free list happens to start aligned; anything else (a request's
//! boxed future, hyper's read buffer) goes through mimalloc's generic aligned path before
//! it reaches the same plain allocation. Measured with callgrind on a proxied request:
//! 11.6 allocations, ≈ 73 instructions each through the aligned entry, against ≈ 20
//! through `mi_malloc`.
//!
//! By mimalloc's own rule (`mi_malloc_is_naturally_aligned`, `alloc-aligned.c`; this is
//! its part for small alignments) a plain block of `size` bytes is aligned to any `align`
//! with `align <= size` and `align <= MI_MAX_ALIGN_SIZE` (16): its size classes above 16
//! bytes are 16-byte multiples, and every page's blocks start 16-aligned. Any other
//! layout (a larger alignment, or one larger than the size) goes to the aligned entry as
//! before.
//!
//! This is the workspace's one crate with unsafe code (`unsafe_code` is forbidden in the
//! others): a global allocator can only be written with it.

use std::alloc::{GlobalAlloc, Layout, handle_alloc_error};
use std::ffi::c_void;

use libmimalloc_sys as mi;

/// mimalloc's `MI_MAX_ALIGN_SIZE`: every plain block of at least this size is aligned to it.
const MAX_ALIGN_SIZE: usize = 16;

/// mimalloc as the global allocator: `#[global_allocator] static A: Allocator = Allocator;`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Allocator;

/// Whether a plain block of `size` bytes is aligned to `align` (mimalloc's rule, above).
#[inline]
const fn plain_is_aligned(size: usize, align: usize) -> bool {
    align <= MAX_ALIGN_SIZE && align <= size
}

/// Whether `p` is aligned to `align` (a power of two); a null pointer is.
#[inline]
fn aligned(p: *mut c_void, align: usize) -> bool {
    p.addr() & (align - 1) == 0
}

// SAFETY: every pointer returned comes from mimalloc, aligned to the layout (checked
// after a plain entry, as mimalloc's own aligned entry does on its way to one: a build of
// mimalloc with guarded blocks, its debug builds with `MIMALLOC_GUARDED_*` set, may end a
// plain block at a guard page, off the rule above), or is null on failure; `dealloc` and
// `realloc` are only given pointers this allocator returned, which `mi_free` and
// `mi_realloc*` accept whichever entry made them.
unsafe impl GlobalAlloc for Allocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: mimalloc's allocating entry points, the plain one and its aligned twin.
        unsafe { allocate(layout, mi::mi_malloc, mi::mi_malloc_aligned) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`, zeroing.
        unsafe { allocate(layout, mi::mi_zalloc, mi::mi_zalloc_aligned) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` was returned by this allocator (the caller's contract).
        unsafe { mi::mi_free(ptr.cast::<c_void>()) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let align = layout.align();
        // SAFETY: `ptr` was returned by this allocator with `layout` (the caller's
        // contract). On failure (null) the block is left as it was, as `realloc` must.
        unsafe {
            if plain_is_aligned(new_size, align) {
                let p = mi::mi_realloc(ptr.cast(), new_size);
                if aligned(p, align) {
                    return p.cast();
                }
                // Only a guarded build gets here. The bytes are in the new block and the
                // old one is gone, so a failure to move them on could not leave it as
                // `realloc` must: that aborts.
                let moved = mi::mi_realloc_aligned(p, new_size, align);
                if moved.is_null() {
                    handle_alloc_error(Layout::from_size_align_unchecked(new_size, align));
                }
                return moved.cast();
            }
            mi::mi_realloc_aligned(ptr.cast(), new_size, align).cast()
        }
    }
}

/// A block for `layout` from `plain` when mimalloc's rule says it is aligned enough and it
/// is (see the SAFETY note above `GlobalAlloc`), else from `aligned_entry`.
///
/// # Safety
///
/// `plain` and `aligned_entry` are mimalloc's allocating entry points (`mi_malloc` and
/// `mi_malloc_aligned`, or their zeroing twins).
#[inline(always)]
unsafe fn allocate(
    layout: Layout,
    plain: unsafe extern "C" fn(usize) -> *mut c_void,
    aligned_entry: unsafe extern "C" fn(usize, usize) -> *mut c_void,
) -> *mut u8 {
    let (size, align) = (layout.size(), layout.align());
    // SAFETY: calls into mimalloc with a size and a power-of-two alignment (the caller's
    // contract); a block freed here was just made.
    unsafe {
        if plain_is_aligned(size, align) {
            let p = plain(size);
            if aligned(p, align) {
                return p.cast();
            }
            mi::mi_free(p);
        }
        aligned_entry(size, align).cast()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every size up to 70 KiB in steps that cross each of mimalloc's size classes (small,
    /// medium, large) and one of 1 MiB, with every alignment up to 4 KiB; sizes that are
    /// not a multiple of the alignment too (a layout may ask for 24 bytes aligned to 16).
    fn layouts() -> impl Iterator<Item = Layout> {
        let sizes = (1..=1200)
            .chain((1200..=70_000).step_by(97))
            .chain([1 << 20]);
        sizes.flat_map(|size| {
            (0..=12)
                .map(|shift| 1usize << shift)
                .filter_map(move |align| Layout::from_size_align(size, align).ok())
        })
    }

    #[test]
    fn every_block_is_aligned_as_its_layout_asks_and_usable_to_its_end() {
        let a = Allocator;
        let mut live = Vec::new();
        for layout in layouts() {
            // SAFETY: a non-zero size; freed below with the same layout.
            let p = unsafe { a.alloc(layout) };
            assert!(!p.is_null(), "{layout:?}");
            assert_eq!(p as usize % layout.align(), 0, "{layout:?}");
            // SAFETY: the block is `layout.size()` bytes long.
            unsafe { p.write_bytes(0xa5, layout.size()) };
            // Kept a while, so later blocks come from pages with others in use.
            live.push((p, layout));
            if live.len() > 64 {
                let (p, layout) = live.swap_remove(live.len() / 2);
                // SAFETY: allocated above with this layout.
                unsafe { a.dealloc(p, layout) };
            }
        }
        for (p, layout) in live {
            // SAFETY: allocated above with this layout.
            unsafe { a.dealloc(p, layout) };
        }
    }

    #[test]
    fn a_zeroed_block_is_zero_and_aligned() {
        let a = Allocator;
        for layout in layouts().step_by(7) {
            // A block of the same layout written and freed first, so the zeroed one is
            // likely its memory, not a fresh page that is zero anyway.
            // SAFETY: a non-zero size; freed right after with the same layout.
            unsafe {
                let dirty = a.alloc(layout);
                assert!(!dirty.is_null(), "{layout:?}");
                dirty.write_bytes(0xa5, layout.size());
                a.dealloc(dirty, layout);
            }
            // SAFETY: a non-zero size; freed below with the same layout.
            let p = unsafe { a.alloc_zeroed(layout) };
            assert!(!p.is_null(), "{layout:?}");
            assert_eq!(p as usize % layout.align(), 0, "{layout:?}");
            // SAFETY: the block is `layout.size()` initialised bytes.
            let bytes = unsafe { std::slice::from_raw_parts(p, layout.size()) };
            assert!(bytes.iter().all(|&b| b == 0), "{layout:?}");
            // SAFETY: allocated above with this layout.
            unsafe { a.dealloc(p, layout) };
        }
    }

    #[test]
    fn a_block_grown_or_shrunk_keeps_its_bytes_and_its_alignment() {
        let a = Allocator;
        // Each alignment from a block of its own size, through sizes on both entries:
        // 8 bytes aligned to 16 is the aligned entry's, 32 or more the plain one's.
        let starts = [1, 8, 16, 32, 64, 4096].map(|align| (align, align));
        for (size, align) in starts.into_iter().chain([(8, 16), (32, 16)]) {
            let mut layout = Layout::from_size_align(size, align).unwrap();
            // SAFETY: a non-zero size.
            let mut p = unsafe { a.alloc(layout) };
            assert!(!p.is_null(), "{layout:?}");
            // SAFETY: the block is `layout.size()` bytes long.
            unsafe { p.write_bytes(7, layout.size()) };
            for new_size in [
                align * 3,
                align * 100,
                70_000 / align * align + align,
                8,
                align,
            ] {
                let kept = layout.size().min(new_size);
                // SAFETY: `p` came from this allocator with `layout`; a non-zero size.
                p = unsafe { a.realloc(p, layout, new_size) };
                assert!(!p.is_null(), "align {align}, size {new_size}");
                assert_eq!(p as usize % align, 0, "align {align}, size {new_size}");
                // SAFETY: at least `kept` bytes were written before.
                let bytes = unsafe { std::slice::from_raw_parts(p, kept) };
                assert!(
                    bytes.iter().all(|&b| b == 7),
                    "align {align}, size {new_size}"
                );
                layout = Layout::from_size_align(new_size, align).unwrap();
                // SAFETY: the block is `new_size` bytes long.
                unsafe { p.write_bytes(7, new_size) };
            }
            // SAFETY: the last block, with its layout.
            unsafe { a.dealloc(p, layout) };
        }
    }
}
