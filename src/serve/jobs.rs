//! Jobs and the scheduler: a bounded queue the HTTP side submits to and the
//! worker takes batches from, the registry that finds a job by id, and the
//! bounded store of finished jobs.
//!
//! A job's state is a `watch` channel: readers (an event stream, a waiting
//! request) always see the latest state and never queue up old ones, so a
//! slow reader costs no memory. The first final state (succeeded, failed,
//! cancelled) wins; later ones are ignored.

use super::request::{ApiError, GenerationSpec};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// One generated image.
#[derive(Debug)]
pub struct GeneratedImage {
    /// k in 0..n: its noise is keyed by (seed, k).
    pub index: usize,
    pub class: u32,
    pub png: Vec<u8>,
}

/// What a finished job produced.
#[derive(Debug)]
pub struct JobOutput {
    pub images: Vec<GeneratedImage>,
    /// Images in the forward batch this job ran in (its own and others').
    pub batch_images: usize,
    /// Seconds from submission to the start of its batch.
    pub wait_seconds: f64,
    /// Seconds its batch took (sampling, decoding, PNG encoding).
    pub run_seconds: f64,
}

/// A small PNG of the current x̂0 of a running job.
#[derive(Debug)]
pub struct Preview {
    pub step: usize,
    pub png: Vec<u8>,
}

#[derive(Clone, Debug)]
pub enum JobStatus {
    Queued {
        /// 0: next to run.
        position: usize,
    },
    Running {
        step: usize,
        total: usize,
        elapsed_seconds: f64,
        eta_seconds: f64,
    },
    Succeeded(Arc<JobOutput>),
    Failed(String),
    Cancelled {
        /// Steps done when it was stopped (0 if it never ran).
        step: usize,
    },
}

impl JobStatus {
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded(_) | JobStatus::Failed(_) | JobStatus::Cancelled { .. }
        )
    }

    pub fn name(&self) -> &'static str {
        match self {
            JobStatus::Queued { .. } => "queued",
            JobStatus::Running { .. } => "running",
            JobStatus::Succeeded(_) => "succeeded",
            JobStatus::Failed(_) => "failed",
            JobStatus::Cancelled { .. } => "cancelled",
        }
    }
}

#[derive(Clone, Debug)]
pub struct JobState {
    pub status: JobStatus,
    pub preview: Option<Arc<Preview>>,
}

pub struct Job {
    /// 128 random bits in hex: the only handle on its images.
    pub id: String,
    pub spec: GenerationSpec,
    /// Unix seconds at submission.
    pub created: u64,
    pub submitted: Instant,
    cancelled: AtomicBool,
    state: watch::Sender<JobState>,
    /// Clients that cancel the job when they all go away (see [`Watch`]).
    watchers: AtomicUsize,
}

impl Job {
    fn new(spec: GenerationSpec, position: usize) -> Self {
        let id = format!("{:032x}", rand::random::<u128>());
        let created = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let (state, _) = watch::channel(JobState {
            status: JobStatus::Queued { position },
            preview: None,
        });
        Self {
            id,
            spec,
            created,
            submitted: Instant::now(),
            cancelled: AtomicBool::new(false),
            state,
            watchers: AtomicUsize::new(0),
        }
    }

    pub fn state(&self) -> JobState {
        self.state.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<JobState> {
        self.state.subscribe()
    }

    /// Asked to stop: the worker drops it at its next step.
    pub fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Acquire)
    }

    /// Progress of a running job; ignored once the job is final.
    pub fn set_running(&self, step: usize, total: usize, elapsed_seconds: f64) {
        let eta_seconds = if step == 0 {
            f64::NAN
        } else {
            elapsed_seconds / step as f64 * (total - step) as f64
        };
        self.update(|state| {
            state.status = JobStatus::Running {
                step,
                total,
                elapsed_seconds,
                eta_seconds,
            }
        });
    }

    pub fn set_preview(&self, preview: Preview) {
        let preview = Arc::new(preview);
        self.update(|state| state.preview = Some(preview));
    }

    fn set_position(&self, position: usize) {
        self.update(|state| state.status = JobStatus::Queued { position });
    }

    /// Applies `change` unless the job is already final.
    fn update(&self, change: impl FnOnce(&mut JobState)) {
        self.state.send_if_modified(|state| {
            if state.status.is_final() {
                return false;
            }
            change(state);
            true
        });
    }

    fn steps_done(&self) -> usize {
        match self.state.borrow().status {
            JobStatus::Running { step, .. } => step,
            _ => 0,
        }
    }
}

/// Totals since start, for `/health`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JobCounts {
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Refused with 429.
    pub rejected: u64,
}

/// The scheduler's view for `/health`.
#[derive(Clone, Copy, Debug)]
pub struct SchedulerLoad {
    pub waiting: usize,
    pub capacity: usize,
    /// Jobs in the batch the worker is running.
    pub running: usize,
    pub counts: JobCounts,
}

/// How the worker groups queued jobs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchPolicy {
    /// Put compatible jobs into one forward pass.
    pub combine: bool,
    /// Most images in one forward pass (a single job may exceed it alone).
    pub max_images: usize,
}

struct Queues {
    waiting: VecDeque<Arc<Job>>,
    /// Every job not yet evicted, by id.
    jobs: HashMap<String, Arc<Job>>,
    /// Finished job ids, oldest first: evicted beyond `keep_finished`.
    finished: VecDeque<String>,
    running: Vec<Arc<Job>>,
    counts: JobCounts,
    /// Moving average of a batch's seconds per job, for `Retry-After`.
    seconds_per_job: f64,
    shutdown: bool,
}

pub struct Scheduler {
    queues: Mutex<Queues>,
    work: Condvar,
    capacity: usize,
    keep_finished: usize,
}

impl Scheduler {
    /// `capacity` jobs may wait; the last `keep_finished` finished jobs stay
    /// readable (results, images) by id.
    pub fn new(capacity: usize, keep_finished: usize) -> Self {
        Self {
            queues: Mutex::new(Queues {
                waiting: VecDeque::new(),
                jobs: HashMap::new(),
                finished: VecDeque::new(),
                running: Vec::new(),
                counts: JobCounts::default(),
                seconds_per_job: 1.0,
                shutdown: false,
            }),
            work: Condvar::new(),
            capacity,
            keep_finished,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Queues> {
        // A panic elsewhere while holding the lock leaves plain data behind.
        self.queues.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a job, or refuses with 429 when `capacity` jobs already wait.
    pub fn submit(&self, spec: GenerationSpec) -> Result<Arc<Job>, ApiError> {
        let mut q = self.lock();
        if q.shutdown {
            return Err(ApiError::new(503, "the server is shutting down"));
        }
        if q.waiting.len() >= self.capacity {
            q.counts.rejected += 1;
            let ahead = (q.waiting.len() + q.running.len()) as f64;
            let seconds = (q.seconds_per_job * ahead).ceil().clamp(1.0, 3600.0) as u64;
            let mut err = ApiError::new(
                429,
                format!(
                    "the queue is full ({} jobs waiting); retry in about {seconds} s",
                    q.waiting.len()
                ),
            );
            err.retry_after = Some(seconds);
            return Err(err);
        }
        let job = Arc::new(Job::new(spec, q.waiting.len()));
        q.jobs.insert(job.id.clone(), job.clone());
        q.waiting.push_back(job.clone());
        self.work.notify_one();
        Ok(job)
    }

    pub fn get(&self, id: &str) -> Option<Arc<Job>> {
        self.lock().jobs.get(id).cloned()
    }

    /// Stops a job: a waiting one leaves the queue at once, a running one is
    /// dropped by the worker at its next step. Its state becomes cancelled
    /// now. Returns false if it had already finished.
    pub fn cancel(&self, job: &Arc<Job>) -> bool {
        let mut q = self.lock();
        if job.state.borrow().status.is_final() {
            return false;
        }
        job.cancelled.store(true, Ordering::Release);
        let step = job.steps_done();
        q.waiting.retain(|j| !Arc::ptr_eq(j, job));
        Self::renumber(&q.waiting);
        self.finish_locked(&mut q, job, JobStatus::Cancelled { step });
        true
    }

    /// Blocks until jobs wait, then takes the first and, when combining, the
    /// waiting jobs that batch with it, up to `policy.max_images` images.
    /// `None` once the scheduler shuts down.
    pub fn next_batch(&self, policy: BatchPolicy) -> Option<Vec<Arc<Job>>> {
        let mut q = self.lock();
        loop {
            if q.shutdown {
                return None;
            }
            if let Some(first) = q.waiting.pop_front() {
                let mut images = first.spec.n;
                let mut batch = vec![first];
                if policy.combine {
                    let mut i = 0;
                    while i < q.waiting.len() {
                        let job = &q.waiting[i];
                        if job.spec.batches_with(&batch[0].spec)
                            && images + job.spec.n <= policy.max_images
                        {
                            images += job.spec.n;
                            let job = q.waiting.remove(i).expect("index in range");
                            batch.push(job);
                        } else {
                            i += 1;
                        }
                    }
                }
                Self::renumber(&q.waiting);
                q.running = batch.clone();
                return Some(batch);
            }
            q = self.work.wait(q).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Records a job's end (first final state wins).
    pub fn finish(&self, job: &Arc<Job>, status: JobStatus) {
        let mut q = self.lock();
        self.finish_locked(&mut q, job, status);
    }

    /// The worker is done with its batch; `seconds` is how long it ran.
    pub fn batch_done(&self, jobs: usize, seconds: f64) {
        let mut q = self.lock();
        q.running.clear();
        let per_job = seconds / jobs.max(1) as f64;
        q.seconds_per_job = 0.8 * q.seconds_per_job + 0.2 * per_job;
    }

    fn finish_locked(&self, q: &mut Queues, job: &Arc<Job>, status: JobStatus) {
        let counted = match &status {
            JobStatus::Succeeded(_) => &mut q.counts.succeeded,
            JobStatus::Failed(_) => &mut q.counts.failed,
            JobStatus::Cancelled { .. } => &mut q.counts.cancelled,
            _ => return,
        };
        let changed = job.state.send_if_modified(|state| {
            if state.status.is_final() {
                return false;
            }
            state.status = status;
            state.preview = None;
            true
        });
        if !changed {
            return;
        }
        *counted += 1;
        q.finished.push_back(job.id.clone());
        while q.finished.len() > self.keep_finished {
            if let Some(old) = q.finished.pop_front() {
                q.jobs.remove(&old);
            }
        }
    }

    fn renumber(waiting: &VecDeque<Arc<Job>>) {
        for (position, job) in waiting.iter().enumerate() {
            job.set_position(position);
        }
    }

    pub fn load(&self) -> SchedulerLoad {
        let q = self.lock();
        SchedulerLoad {
            waiting: q.waiting.len(),
            capacity: self.capacity,
            running: q.running.len(),
            counts: q.counts,
        }
    }

    /// Cancels every job and lets the worker return.
    pub fn shutdown(&self) {
        let jobs: Vec<Arc<Job>> = {
            let mut q = self.lock();
            q.shutdown = true;
            q.waiting.iter().chain(&q.running).cloned().collect()
        };
        for job in &jobs {
            self.cancel(job);
        }
        self.work.notify_all();
    }
}

/// A client waiting on a job (a request for its result, an event stream).
/// When the last one goes away before the job ends (the client
/// disconnected), the job is cancelled.
pub struct Watch {
    scheduler: Arc<Scheduler>,
    job: Arc<Job>,
}

impl Watch {
    pub fn new(scheduler: Arc<Scheduler>, job: Arc<Job>) -> Self {
        job.watchers.fetch_add(1, Ordering::AcqRel);
        Self { scheduler, job }
    }

    pub fn job(&self) -> &Arc<Job> {
        &self.job
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if self.job.watchers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.scheduler.cancel(&self.job);
        }
    }
}
