//! The broker's global allocator: the system allocator, except that very large allocations are
//! reserved with `mmap(MAP_NORESERVE)`.
//!
//! Why, originally: `kafka-protocol` as released decodes an array by calling
//! `Vec::with_capacity(count)` with the count a client sent, before it has checked that the
//! bytes for that many elements exist. Thirteen bytes announcing 2^31 topics asked for ~150 GB;
//! `malloc` refuses, and Rust aborts the whole process on a failed allocation.
//!
//! That hole is now closed where it is opened: the vendored, patched `kafka-protocol`
//! (vendor/kafka-protocol/NOTE-tidelog.md) checks every count and length against the bytes
//! remaining before it allocates, whatever `vm.overcommit_memory` says
//! (tests/hostile_counts_allocate_nothing.rs runs the decoders on the plain system allocator).
//! This allocator stays as a second line for any other decoder that might trust a count: a
//! block reserved with `MAP_NORESERVE` costs address space only, and is unmapped untouched
//! when the decode fails. Nothing the broker itself does allocates anywhere near
//! [`HUGE_ALLOCATION_BYTES`] (every buffer is bounded in `config`), so ordinary allocations
//! never take this path. Under `vm.overcommit_memory=2` the kernel refuses even these
//! reservations, and only the first line holds.

use std::alloc::{GlobalAlloc, Layout, System};

use crate::config::HUGE_ALLOCATION_BYTES;

/// See the module documentation.
pub struct BrokerAllocator;

fn is_huge(layout: &Layout) -> bool {
    layout.size() >= HUGE_ALLOCATION_BYTES && layout.align() <= 4096
}

// SAFETY: huge blocks come from mmap (page aligned, zeroed, exclusively ours) and go back with
// munmap of the same length; everything else is the system allocator's.
unsafe impl GlobalAlloc for BrokerAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_huge(&layout) {
            return System.alloc(layout);
        }
        let p = libc::mmap(
            std::ptr::null_mut(),
            layout.size(),
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            std::ptr::null_mut()
        } else {
            p.cast()
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_huge(&layout) {
            // Anonymous mappings are zero-filled.
            self.alloc(layout)
        } else {
            System.alloc_zeroed(layout)
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if is_huge(&layout) {
            libc::munmap(ptr.cast(), layout.size());
        } else {
            System.dealloc(ptr, layout);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new_layout = Layout::from_size_align_unchecked(new_size, layout.align());
        if !is_huge(&layout) && !is_huge(&new_layout) {
            return System.realloc(ptr, layout, new_size);
        }
        let new = self.alloc(new_layout);
        if !new.is_null() {
            std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
            self.dealloc(ptr, layout);
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_capacity_is_reserved_not_refused() {
        let a = BrokerAllocator;
        let layout = Layout::from_size_align(150 << 30, 8).unwrap();
        // SAFETY: paired alloc/dealloc with the same layout; only two bytes are touched.
        unsafe {
            let p = a.alloc(layout);
            assert!(!p.is_null());
            *p = 1;
            *p.add(layout.size() - 1) = 2;
            a.dealloc(p, layout);
        }
        let small = Layout::from_size_align(64, 8).unwrap();
        // SAFETY: as above.
        unsafe {
            let p = a.alloc(small);
            assert!(!p.is_null());
            a.dealloc(p, small);
        }
    }
}
