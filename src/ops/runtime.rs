//! Process-wide settings for CPU training and sampling, applied once at
//! start-up by the `dit` binary and the benchmarks ([`init`]).

/// `mi_option_purge_delay` in mimalloc's `mi_option_e` (mimalloc.h, v2).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Busy-wait iterations of candle's elementwise worker pool before it sleeps.
const CANDLE_SPIN_LIMIT: &str = "2000";

/// Applies [`retain_freed_memory`] and [`limit_idle_spinning`]. Call at the
/// top of `main`, before any tensor op.
pub fn init() {
    retain_freed_memory();
    limit_idle_spinning();
}

/// Makes mimalloc keep freed memory for reuse instead of returning it to the
/// OS.
///
/// candle allocates a new buffer for every op result. The system allocator
/// unmaps large buffers on free, and mimalloc by default hands freed memory
/// back after 10 ms; either way each op's output is page-faulted (and zeroed
/// by the kernel) again, ~30% of a training step in the profiles. A training
/// or sampling loop reuses the same sizes step after step, so keeping freed
/// memory costs nothing beyond the peak already reached. Harmless when
/// mimalloc is linked but not the global allocator.
pub fn retain_freed_memory() {
    // SAFETY: setting an option is allowed at any time; -1 means "never purge".
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) }
}

/// Shortens how long candle's elementwise worker threads busy-wait after
/// each op (25 000 spins by default). On a machine with as many threads as
/// cores, a spinning idle worker takes a core from the matmul threads that
/// run next. Respects a `CANDLE_BARRIER_POOL_SPIN_LIMIT` set by the user;
/// must run before candle's pool starts (the first elementwise op).
pub fn limit_idle_spinning() {
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", CANDLE_SPIN_LIMIT);
    }
}

/// Makes candle run its elementwise ops on the calling thread instead of
/// handing them to its own worker pool (`CANDLE_NUM_THREADS=1`, unless the
/// user set it); the products and fused ops keep every thread (they use
/// rayon's pools, which this leaves alone). Call before any other thread
/// starts and before candle's first elementwise op.
///
/// For training with a [`crate::dist::BatchSplit`]: what is left to candle
/// in a training step is mostly the autograd's gradient additions, and
/// candle's pool takes one caller at a time, so the parts' workers would
/// queue on it. Measured on 2 cores (bf16, the embedded model): 5.90
/// steps/s in two parts with candle's pool, 7.13 with this. Not for jobs
/// that decode with the VAE, whose large elementwise ops do gain from the
/// pool (a 256² f32 decode 3.0 s with it, 3.4 s without).
pub fn inline_elementwise_ops() {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}
