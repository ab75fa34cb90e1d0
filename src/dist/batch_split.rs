//! One batch's forward and backward computed as parts at once, each part by
//! its own worker thread with a thread pool of its own.
//!
//! Why: the products of a small model (the embedded demo's 64-token images)
//! split poorly over threads, while separate samples are independent work.
//! Two MPI ranks of one thread each trained the embedded model 1.45× (f32)
//! and 1.60× (bf16) faster than one process with two threads on the same two
//! cores (docs/scaling.md); a [`BatchSplit`] gets that inside one process.
//! Each part runs in a rayon pool of its own, so the ops inside it size
//! their work to that pool (one thread: every op runs serially), and the
//! parts' gradients are added in part order: the result depends on the
//! number of parts, never on timing.
//!
//! candle's own elementwise ops (the autograd's gradient additions) run on
//! a pool of candle's that takes one caller at a time; a program that
//! splits batches should call [`crate::ops::runtime::inline_elementwise_ops`]
//! at start-up, so that each worker runs them itself (as `dit train` does).
//!
//! Beside [`super::BatchShare`] (a process's share of a batch across ranks),
//! this is data parallelism inside one process: it composes with ranks.

use crate::{bail, Result};
use candle_core::backprop::GradStore;
use candle_core::{Device, Var};
use std::ops::Range;

/// Workers that compute the parts of a batch at once.
pub struct BatchSplit {
    /// One pool per part; empty for a single part, which runs on the
    /// caller's thread and pool (the plain, unsplit computation).
    pools: Vec<rayon::ThreadPool>,
}

impl BatchSplit {
    /// `parts` workers of `threads_each` threads (`parts == 1`: no workers,
    /// the batch is computed whole on the calling thread's pool).
    pub fn new(parts: usize, threads_each: usize) -> Result<Self> {
        if parts == 0 || threads_each == 0 {
            bail!("a batch split needs at least one part and one thread per part");
        }
        if parts == 1 {
            return Ok(Self { pools: Vec::new() });
        }
        let pools = (0..parts)
            .map(|i| {
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads_each)
                    .thread_name(move |t| format!("dit-part{i}-{t}"))
                    .build()
                    .map_err(|e| crate::err!("starting the threads of batch part {i}: {e}"))
            })
            .collect::<Result<_>>()?;
        Ok(Self { pools })
    }

    /// The number of parts a batch of `count` is computed in by default: on
    /// the CPU, one per thread of the calling pool (at most `count`); on a
    /// GPU, 1 (its kernels fill the device from one batch).
    ///
    /// Measured on 2 cores (docs/benchmarks.md): the embedded model trains
    /// at 1.7× (bf16) and 1.5× (f32) the steps per second of the whole batch
    /// on two threads; a DiT-S/2 batch-8 training step is 1.34× (bf16) and
    /// 1.17× (f32) faster. Not measured on more cores.
    pub fn default_parts(device: &Device, count: usize) -> usize {
        match device {
            Device::Cpu => rayon::current_num_threads().clamp(1, count.max(1)),
            _ => 1,
        }
    }

    /// `parts` workers sharing the calling pool's threads equally (at least
    /// one each).
    pub fn sharing_threads(parts: usize) -> Result<Self> {
        Self::new(parts, (rayon::current_num_threads() / parts.max(1)).max(1))
    }

    /// The number of parts.
    pub fn parts(&self) -> usize {
        self.pools.len().max(1)
    }

    /// The parts of a batch of `count`: consecutive ranges whose sizes differ
    /// by at most one, larger ones first. Refused when a part would be empty.
    pub fn ranges(&self, count: usize) -> Result<Vec<Range<usize>>> {
        let parts = self.parts();
        if count < parts {
            bail!(
                "a batch of {count} cannot be split into {parts} parts \
                 (use a smaller --batch-split or a larger batch)"
            );
        }
        let (base, extra) = (count / parts, count % parts);
        let mut start = 0;
        Ok((0..parts)
            .map(|i| {
                let len = base + usize::from(i < extra);
                start += len;
                start - len..start
            })
            .collect())
    }

    /// `work(part range)` for every part of a batch of `count`, at once, each
    /// on its own worker; the results in part order. The first part's error
    /// (in part order) is returned; a panic in a part is raised here.
    pub fn run<T: Send>(
        &self,
        count: usize,
        work: impl Fn(Range<usize>) -> Result<T> + Sync,
    ) -> Result<Vec<T>> {
        let ranges = self.ranges(count)?;
        if self.pools.is_empty() {
            return Ok(vec![work(0..count)?]);
        }
        let work = &work;
        let results: Vec<Result<T>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .pools
                .iter()
                .zip(ranges)
                .map(|(pool, range)| scope.spawn(move || pool.install(|| work(range))))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        results.into_iter().collect()
    }
}

/// The parts' gradients added, in part order, into the first part's store
/// (only the parameters' gradients: the training step needs no others).
pub fn sum_grads(parts: Vec<GradStore>, params: &[(String, Var)]) -> Result<GradStore> {
    let mut parts = parts.into_iter();
    let Some(mut total) = parts.next() else {
        bail!("no batch parts to add");
    };
    for part in parts {
        for (_, var) in params {
            let id = var.as_tensor();
            if let Some(g) = part.get(id) {
                let sum = match total.remove(id) {
                    Some(sum) => (sum + g)?,
                    None => g.clone(),
                };
                total.insert(id, sum);
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_the_batch_in_near_equal_parts() {
        let split = BatchSplit::new(3, 1).unwrap();
        assert_eq!(split.ranges(8).unwrap(), vec![0..3, 3..6, 6..8]);
        assert_eq!(split.ranges(3).unwrap(), vec![0..1, 1..2, 2..3]);
        assert!(split.ranges(2).is_err());
        assert_eq!(
            BatchSplit::new(1, 1).unwrap().ranges(5).unwrap(),
            vec![0..5]
        );
    }

    #[test]
    fn parts_run_in_their_own_single_thread_pools() {
        let split = BatchSplit::new(2, 1).unwrap();
        let seen = split
            .run(6, |r| {
                Ok((
                    r,
                    rayon::current_num_threads(),
                    std::thread::current().name().map(String::from),
                ))
            })
            .unwrap();
        assert_eq!(seen[0].0, 0..3);
        assert_eq!(seen[1].0, 3..6);
        assert!(seen.iter().all(|s| s.1 == 1), "{seen:?}");
        assert_eq!(seen[0].2.as_deref(), Some("dit-part0-0"));
        assert_eq!(seen[1].2.as_deref(), Some("dit-part1-0"));
        let failed = split.run(6, |r| match r.start {
            0 => Ok(()),
            _ => Err(crate::err!("part at {} failed", r.start)),
        });
        assert!(failed.unwrap_err().to_string().contains("part at 3 failed"));
    }
}
