//! How much of the current thread's stack is left, so that recursive walks over untrusted
//! nesting stop with an error instead of overflowing (frames are larger in debug builds and
//! threads may have small stacks, so a fixed depth limit alone is not enough).

use std::cell::Cell;

/// Keep this much stack free for the error path, Python calls made by the walk and the
/// interpreter itself.
pub const RESERVE: usize = 256 * 1024;

thread_local! {
    /// The lowest address the stack may grow down to; 0 where unknown.
    static LIMIT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The address below which this thread should stop recursing, computed once per thread.
pub fn limit() -> usize {
    LIMIT.with(|cell| {
        if cell.get() == usize::MAX {
            cell.set(stack_low_address().map_or(0, |low| low + RESERVE));
        }
        cell.get()
    })
}

/// True when the caller's frame is below `limit` (the stack grows down on every platform
/// this builds for).
#[inline]
pub fn exhausted(limit: usize) -> bool {
    let marker = 0u8;
    (std::ptr::addr_of!(marker) as usize) < limit
}

#[cfg(target_os = "linux")]
fn stack_low_address() -> Option<usize> {
    // SAFETY: pthread_getattr_np fills the attribute object for the calling thread, which is
    // destroyed after reading the stack address and size.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut addr: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let ok = libc::pthread_attr_getstack(&attr, &mut addr, &mut size) == 0;
        libc::pthread_attr_destroy(&mut attr);
        ok.then_some(addr as usize)
    }
}

#[cfg(not(target_os = "linux"))]
fn stack_low_address() -> Option<usize> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth_until_exhausted(limit: usize, depth: usize) -> usize {
        if exhausted(limit) {
            return depth;
        }
        let pad = [depth as u8; 512];
        std::hint::black_box(&pad);
        depth_until_exhausted(limit, depth + 1)
    }

    #[test]
    fn a_small_thread_stops_before_overflowing() {
        let depth = std::thread::Builder::new()
            .stack_size(1024 * 1024)
            .spawn(|| depth_until_exhausted(limit(), 0))
            .unwrap()
            .join()
            .unwrap();
        assert!(depth > 100, "stopped too early: {depth}");
    }

    #[test]
    fn the_limit_is_below_the_current_frame() {
        let l = limit();
        assert!(l > 0);
        assert!(!exhausted(l));
    }
}
