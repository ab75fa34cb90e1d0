//! Allocator settings for the `dit` binary and the benchmarks, which use
//! mimalloc as the global allocator.
//!
//! candle allocates a new buffer for every op result. The system allocator
//! unmaps large buffers on free, and even mimalloc by default hands freed
//! memory back to the OS after 10 ms; either way each op's output is
//! page-faulted (and zeroed by the kernel) again, which profiles of a
//! training step showed as ~30% of the time. A training or sampling loop
//! reuses the same sizes step after step, so keeping freed memory costs
//! nothing beyond the peak it already reached.

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (mimalloc.h, v2).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Makes mimalloc keep freed memory for reuse instead of returning it to the
/// OS. Call once at start-up; harmless when mimalloc is linked but is not
/// the global allocator.
pub fn retain_freed_memory() {
    // SAFETY: setting an option is allowed at any time; -1 means "never purge".
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}
