//! A time limit on every collective, for a rank that hangs without dying.
//!
//! A rank that dies ends an Open MPI job within about a second (mpirun sees
//! the process go); one that is alive but stuck (a deadlock, a stalled file
//! system, a rank that skipped a collective) leaves the others waiting inside
//! their collective forever. A watchdog thread ends the job when a collective
//! has waited longer than the limit, as PyTorch's NCCL timeout does.

use super::Communicator;
use crate::Result;
use candle_core::Tensor;
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A communicator whose collectives a watchdog thread times: one that waits
/// longer than `limit` ends the process, naming the rank, the phase set with
/// [`Watched::set_phase`] (the step) and the collective. The process ends
/// with `std::process::abort` (SIGABRT): MPI may not be called from a second
/// thread while the first waits inside it, and the launcher ends the job
/// when a rank dies.
pub struct Watched<C: Communicator> {
    inner: C,
    state: Arc<State>,
    watchdog: Option<JoinHandle<()>>,
}

struct State {
    start: Instant,
    limit: Duration,
    /// Milliseconds since `start` + 1 when the current collective began; 0
    /// outside collectives.
    entered: AtomicU64,
    /// (phase, collective) of the current or last collective.
    doing: Mutex<(String, &'static str)>,
    stop: AtomicBool,
}

impl<C: Communicator> Watched<C> {
    pub fn new(inner: C, limit: Duration) -> Self {
        let state = Arc::new(State {
            start: Instant::now(),
            limit,
            entered: AtomicU64::new(0),
            doing: Mutex::new((String::new(), "")),
            stop: AtomicBool::new(false),
        });
        let who = format!("rank {} of {}", inner.rank(), inner.world_size());
        let watched = Arc::clone(&state);
        let watchdog = std::thread::Builder::new()
            .name("dist-watchdog".into())
            .spawn(move || watch(&watched, &who))
            .expect("starting the communicator's watchdog thread");
        Watched {
            inner,
            state,
            watchdog: Some(watchdog),
        }
    }

    /// What this rank is doing (`"step 120"`), named if a collective times out.
    pub fn set_phase(&self, phase: impl Into<String>) {
        self.state.doing.lock().unwrap_or_else(|e| e.into_inner()).0 = phase.into();
    }

    fn timed<T>(&self, collective: &'static str, run: impl FnOnce(&C) -> T) -> T {
        self.state.doing.lock().unwrap_or_else(|e| e.into_inner()).1 = collective;
        let now = self.state.start.elapsed().as_millis() as u64 + 1;
        self.state.entered.store(now, Ordering::SeqCst);
        let result = run(&self.inner);
        self.state.entered.store(0, Ordering::SeqCst);
        result
    }
}

fn watch(state: &State, who: &str) {
    let tick = (state.limit / 10).clamp(Duration::from_millis(10), Duration::from_secs(1));
    while !state.stop.load(Ordering::SeqCst) {
        std::thread::park_timeout(tick);
        let entered = state.entered.load(Ordering::SeqCst);
        if entered == 0 {
            continue;
        }
        let waited = Duration::from_millis(
            (state.start.elapsed().as_millis() as u64 + 1).saturating_sub(entered),
        );
        if waited > state.limit {
            let (phase, collective) = state
                .doing
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            let phase = if phase.is_empty() {
                String::new()
            } else {
                format!("{phase}: ")
            };
            eprintln!(
                "{who}: {phase}{collective} has waited {:.1} s for the other ranks (limit {:.1} s): \
                 one of them is stuck or far slower; ending the job",
                waited.as_secs_f64(),
                state.limit.as_secs_f64()
            );
            let _ = std::io::stderr().flush();
            std::process::abort();
        }
    }
}

impl<C: Communicator> Drop for Watched<C> {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.thread().unpark();
            let _ = watchdog.join();
        }
    }
}

impl<C: Communicator> Communicator for Watched<C> {
    fn rank(&self) -> usize {
        self.inner.rank()
    }

    fn world_size(&self) -> usize {
        self.inner.world_size()
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        self.timed("all_reduce_sum", |c| c.all_reduce_sum(buf))
    }

    fn all_reduce_mean(&self, buf: &mut [f32]) -> Result<()> {
        self.timed("all_reduce_mean", |c| c.all_reduce_mean(buf))
    }

    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<()> {
        self.timed("broadcast_f32", |c| c.broadcast_f32(buf, root))
    }

    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> Result<()> {
        self.timed("broadcast_bytes", |c| c.broadcast_bytes(buf, root))
    }

    fn barrier(&self) -> Result<()> {
        self.timed("barrier", |c| c.barrier())
    }

    fn gather_bytes(&self, blob: &[u8], root: usize) -> Result<Option<Vec<Vec<u8>>>> {
        self.timed("gather_bytes", |c| c.gather_bytes(blob, root))
    }

    fn description(&self) -> String {
        format!(
            "{}, collectives limited to {:.1} s",
            self.inner.description(),
            self.state.limit.as_secs_f64()
        )
    }

    fn abort(&self, message: &str) -> ! {
        self.inner.abort(message)
    }

    fn finish(&self) -> Result<()> {
        self.timed("finish", |c| c.finish())
    }

    fn all_reduce_sum_tensor(&self, tensor: &Tensor) -> Result<Tensor> {
        self.timed("all_reduce_sum_tensor", |c| c.all_reduce_sum_tensor(tensor))
    }

    fn all_reduce_mean_tensor(&self, tensor: &Tensor) -> Result<Tensor> {
        self.timed("all_reduce_mean_tensor", |c| {
            c.all_reduce_mean_tensor(tensor)
        })
    }

    fn broadcast_tensor(&self, tensor: &Tensor, root: usize) -> Result<Tensor> {
        self.timed("broadcast_tensor", |c| c.broadcast_tensor(tensor, root))
    }
}
