//! `dit comm-check` (hidden): checks and measures the job's communicator.
//!
//! Run under a launcher (`mpirun -np 3 dit comm-check collectives`) it checks
//! every collective against values each rank computes alone; `steps` is a
//! training-like loop for the failure tests (a rank that fails, panics, exits
//! or is killed must end the job); `bench` times all-reduces. It lives in the
//! `dit` binary rather than a binary of its own so that the tests need no
//! second executable linking candle (tests/dist runs it).

use anyhow::Result;
use candle_core::{Device, Tensor};
use clap::{Args, Subcommand, ValueEnum};
use dit::dist::{self, or_abort, BucketedAllReduce, Communicator, Reduction, Watched};
use dit::{bail, ensure, Error};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Args, Debug)]
pub struct CommCheckArgs {
    /// End the job when a collective waits longer than this (seconds).
    #[arg(long, global = true)]
    pub collective_timeout: Option<f64>,
    #[command(subcommand)]
    pub check: Check,
}

#[derive(Subcommand, Debug)]
pub enum Check {
    /// Every collective on every size and root, against locally computed values.
    Collectives(CollectivesArgs),
    /// A loop of all-reduces (one per step) that one rank can be made to fail.
    Steps(StepsArgs),
    /// All-reduce time and bandwidth for buffers of the given sizes.
    Bench(BenchArgs),
}

#[derive(Args, Debug)]
pub struct CollectivesArgs {
    /// Buffer lengths (f32 elements; bytes for the byte collectives).
    #[arg(long, value_delimiter = ',', default_value = "1,3,1000003")]
    pub sizes: Vec<usize>,
    /// Bucket size of the bucketed all-reduce check, in bytes (small, so the
    /// check's tensors fill several buckets).
    #[arg(long, default_value_t = 4096)]
    pub bucket_bytes: usize,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

#[derive(Args, Debug)]
pub struct StepsArgs {
    #[arg(long, default_value_t = 100)]
    pub steps: usize,
    /// f32 elements all-reduced per step.
    #[arg(long, default_value_t = 100_000)]
    pub len: usize,
    /// Each rank writes its process id to `rank-<R>.pid` here before step 0.
    #[arg(long)]
    pub pid_dir: Option<PathBuf>,
    /// The rank that fails (with --fail-at-step and --fail-how).
    #[arg(long)]
    pub fail_rank: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub fail_at_step: usize,
    #[arg(long, value_enum, default_value_t = Failure::Abort)]
    pub fail_how: Failure,
}

/// How the failing rank fails.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Failure {
    /// An error ended with `Communicator::abort` (what `dit train` does).
    Abort,
    /// A panic (unwinding drops the communicator unfinished).
    Panic,
    /// An error returned without abort (the communicator is dropped unfinished).
    Return,
    /// `std::process::exit(1)`: no MPI shutdown at all.
    Exit,
    /// Sleeps forever, alive: only a collective timeout ends the job.
    Hang,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Buffer sizes in MiB (f32).
    #[arg(long, value_delimiter = ',', default_value = "4,64,256")]
    pub mib: Vec<usize>,
    /// Timed all-reduces per size (after 2 untimed); sums of ones grow by a
    /// factor of the world size per call, hence the limit.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=60))]
    pub iters: u32,
}

pub fn run(args: CommCheckArgs) -> Result<()> {
    let comm = dist::from_launcher()?;
    match args.collective_timeout {
        None => run_on(comm.as_ref(), args.check, &|_| {}),
        Some(seconds) => {
            let limit = Duration::try_from_secs_f64(seconds)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "--collective-timeout {seconds}: expected a positive number of seconds"
                    )
                })?;
            let watched = Watched::new(comm, limit);
            run_on(&watched, args.check, &|phase| watched.set_phase(phase))
        }
    }
}

/// `set_phase` names what the rank does for the watchdog, if there is one.
fn run_on(comm: &dyn Communicator, check: Check, set_phase: &dyn Fn(&str)) -> Result<()> {
    if comm.rank() == 0 {
        println!("communicator: {}", comm.description());
    }
    match check {
        Check::Collectives(a) => collectives(comm, &a),
        Check::Steps(a) => steps(comm, &a, set_phase)?,
        Check::Bench(a) => bench(comm, &a),
    }
    let finished = comm.finish();
    or_abort(comm, "finish", finished);
    Ok(())
}

/// Runs named checks; the first that fails ends the job naming it.
struct Checks<'a> {
    comm: &'a dyn Communicator,
    passed: usize,
}

impl Checks<'_> {
    fn run(&mut self, name: &str, check: impl FnOnce() -> dit::Result<String>) {
        let detail = or_abort(self.comm, format!("check {name}"), check());
        if self.comm.rank() == 0 {
            println!("ok {name}: {detail}");
        }
        self.passed += 1;
    }
}

fn collectives(comm: &dyn Communicator, args: &CollectivesArgs) {
    let (world, rank, seed) = (comm.world_size(), comm.rank(), args.seed);
    let mut checks = Checks { comm, passed: 0 };
    for &n in &args.sizes {
        checks.run(&format!("all_reduce_sum n={n}"), || {
            let inputs = all_ranks(world, |r| wide_range(seed, r, tag(1, n), n));
            let mut got = inputs[rank].clone();
            comm.all_reduce_sum(&mut got)?;
            let report = within_sum_bound(&inputs, &got, 1.0)?;
            same_on_all_ranks(comm, &got)?;
            Ok(report)
        });
        checks.run(&format!("all_reduce_mean n={n}"), || {
            let inputs = all_ranks(world, |r| wide_range(seed, r, tag(2, n), n));
            let mut got = inputs[rank].clone();
            comm.all_reduce_mean(&mut got)?;
            let report = within_sum_bound(&inputs, &got, world as f64)?;
            same_on_all_ranks(comm, &got)?;
            Ok(report)
        });
        checks.run(&format!("all_reduce integers n={n}"), || {
            let inputs = all_ranks(world, |r| integers(seed, r, tag(3, n), n));
            let exact: Vec<f32> = (0..n).map(|i| inputs.iter().map(|x| x[i]).sum()).collect();
            let mut sum = inputs[rank].clone();
            comm.all_reduce_sum(&mut sum)?;
            bitwise_equal("sum", &sum, &exact)?;
            let mut mean = inputs[rank].clone();
            comm.all_reduce_mean(&mut mean)?;
            let exact_mean: Vec<f32> = exact.iter().map(|s| s / world as f32).collect();
            bitwise_equal("mean", &mean, &exact_mean)?;
            Ok("sum and mean bitwise exact".into())
        });
        checks.run(&format!("broadcast_f32 n={n}"), || {
            for root in 0..world {
                let sent = wide_range(seed, root, tag(4, n), n);
                let mut buf = if rank == root {
                    sent.clone()
                } else {
                    vec![f32::NAN; n]
                };
                comm.broadcast_f32(&mut buf, root)?;
                bitwise_equal(&format!("from root {root}"), &buf, &sent)?;
            }
            Ok(format!("from each of {world} roots, bitwise"))
        });
        checks.run(&format!("broadcast_bytes n={n}"), || {
            for root in 0..world {
                let sent = bytes(seed, root, tag(5, n), n);
                let mut buf = if rank == root {
                    sent.clone()
                } else {
                    vec![0xAB; 7]
                };
                comm.broadcast_bytes(&mut buf, root)?;
                ensure!(
                    buf == sent,
                    "from root {root}: {} bytes received, {} sent, or different content",
                    buf.len(),
                    sent.len()
                );
            }
            Ok(format!("from each of {world} roots"))
        });
        checks.run(&format!("gather_bytes n={n}"), || {
            // Lengths 0, n, n-1, … so that blobs differ in size (and one is empty).
            let blob_len = |r: usize| (r * n) % (n + 1);
            let blob = |r: usize| bytes(seed, r, tag(6, n), blob_len(r));
            for root in 0..world {
                let got = comm.gather_bytes(&blob(rank), root)?;
                match got {
                    None => ensure!(rank != root, "the root got nothing"),
                    Some(blobs) => {
                        ensure!(rank == root, "rank {rank} is not the root but got blobs");
                        ensure!(
                            blobs.len() == world,
                            "{} blobs for {world} ranks",
                            blobs.len()
                        );
                        for (r, b) in blobs.iter().enumerate() {
                            ensure!(
                                *b == blob(r),
                                "blob of rank {r} differs ({} bytes)",
                                b.len()
                            );
                        }
                    }
                }
            }
            Ok(format!(
                "to each of {world} roots, blob lengths {:?}",
                (0..world).map(blob_len).collect::<Vec<_>>()
            ))
        });
    }
    checks.run("barrier", || barrier_holds_everyone(comm));
    for reduction in [Reduction::Sum, Reduction::Mean] {
        checks.run(&format!("bucketed all-reduce {reduction:?}"), || {
            bucketed_matches_per_tensor(comm, args.bucket_bytes, reduction, seed)
        });
    }
    if world > 1 {
        checks.run("mismatched lengths", || {
            let mut buf = vec![1.0f32; 10 + rank];
            match comm.all_reduce_sum(&mut buf) {
                Ok(()) => bail!("an all-reduce of lengths 10..{} succeeded", 10 + world - 1),
                Err(e) if e.to_string().contains("different buffer lengths") => {}
                Err(e) => bail!("unexpected error: {e}"),
            }
            // The communicator is still usable: no data collective was started.
            let mut one = vec![1.0f32];
            comm.all_reduce_sum(&mut one)?;
            ensure!(
                one[0] == world as f32,
                "all-reduce after the mismatch gave {}",
                one[0]
            );
            Ok("refused on every rank, communicator still usable".into())
        });
    }
    checks.run("root outside the job", || {
        let mut buf = vec![0.0f32; 3];
        match comm.broadcast_f32(&mut buf, world) {
            Ok(()) => bail!("a broadcast from root {world} succeeded"),
            Err(e) if e.to_string().contains("not in the job") => Ok(e.to_string()),
            Err(e) => bail!("unexpected error: {e}"),
        }
    });
    if rank == 0 {
        println!(
            "comm-check: {} checks passed on {world} rank(s)",
            checks.passed
        );
    }
}

fn all_ranks(world: usize, data: impl Fn(usize) -> Vec<f32>) -> Vec<Vec<f32>> {
    (0..world).map(data).collect()
}

/// A data stream per (check, length) and rank.
fn tag(check: u64, n: usize) -> u64 {
    check << 48 | n as u64
}

fn rng(seed: u64, rank: usize, tag: u64) -> ChaCha8Rng {
    let mut rng =
        ChaCha8Rng::seed_from_u64(seed ^ (rank as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    rng.set_stream(tag);
    rng
}

/// Values of both signs over 2^-8..2^8, so that a sum's rounding depends on
/// the order of its terms.
fn wide_range(seed: u64, rank: usize, tag: u64, n: usize) -> Vec<f32> {
    let mut rng = rng(seed, rank, tag);
    (0..n)
        .map(|_| rng.gen_range(-1.0f32..1.0) * 2f32.powi(rng.gen_range(-8..=8)))
        .collect()
}

/// Integers of at most 2^20 in magnitude: sums of up to 16 of them are exact in f32.
fn integers(seed: u64, rank: usize, tag: u64, n: usize) -> Vec<f32> {
    let mut rng = rng(seed, rank, tag);
    (0..n)
        .map(|_| rng.gen_range(-(1i32 << 20)..=1 << 20) as f32)
        .collect()
}

fn bytes(seed: u64, rank: usize, tag: u64, n: usize) -> Vec<u8> {
    let mut rng = rng(seed, rank, tag);
    (0..n).map(|_| rng.gen()).collect()
}

/// Checks each element of `got` (the sum over ranks of `inputs`, divided by
/// `divisor`) against the exact value: summing w f32 terms in any order is
/// off by at most γ(w-1)·Σ|x| with γ(k) = k·u/(1-k·u), u = 2^-24 (Higham,
/// "Accuracy and Stability of Numerical Algorithms", 4.2); a division by the
/// world size adds one rounding, u·|result|. Exact sums are computed in f64,
/// exact for these inputs (wide_range spans 2^-32..2^8: under 53 bits). With
/// one or two ranks the result must moreover be the exact value rounded to f32.
fn within_sum_bound(inputs: &[Vec<f32>], got: &[f32], divisor: f64) -> dit::Result<String> {
    let u = 2f64.powi(-24);
    let k = (inputs.len() - 1) as f64;
    let gamma = k * u / (1.0 - k * u);
    let (mut worst_ratio, mut max_abs, mut inexact) = (0.0f64, 0.0f64, 0usize);
    for (i, &g) in got.iter().enumerate() {
        let exact: f64 = inputs.iter().map(|x| x[i] as f64).sum();
        let magnitude: f64 = inputs.iter().map(|x| (x[i] as f64).abs()).sum();
        let want = exact / divisor;
        let mut bound = gamma * magnitude / divisor;
        if divisor != 1.0 {
            bound = bound * (1.0 + u) + u * want.abs();
        }
        let err = (g as f64 - want).abs();
        // One addition (two ranks) and a division by 2 are each correctly
        // rounded: the result is the exact value rounded to f32.
        if inputs.len() <= 2 && g.to_bits() != (want as f32).to_bits() {
            bail!(
                "element {i}: got {g:e}, the exact value rounded to f32 is {:e}",
                want as f32
            );
        }
        if err.is_nan() || err > bound {
            bail!(
                "element {i}: got {g:e}, exact {want:e}, |error| {err:e} over the bound {bound:e}"
            );
        }
        if err > 0.0 {
            inexact += 1;
            worst_ratio = worst_ratio.max(err / bound);
            max_abs = max_abs.max(err);
        }
    }
    Ok(format!(
        "{} of {} elements differ from the exact value (max |Δ| {max_abs:.3e}, at most {:.2} of the bound)",
        inexact,
        got.len(),
        worst_ratio
    ))
}

fn bitwise_equal(what: &str, got: &[f32], want: &[f32]) -> dit::Result<()> {
    ensure!(
        got.len() == want.len(),
        "{what}: {} elements, expected {}",
        got.len(),
        want.len()
    );
    if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        bail!(
            "{what}: element {i} is {:e}, expected {:e}",
            got[i],
            want[i]
        );
    }
    Ok(())
}

/// MPI promises every rank the same result bits; data-parallel replicas
/// drift apart otherwise. Rank 0 compares every rank's hash of `values`.
fn same_on_all_ranks(comm: &dyn Communicator, values: &[f32]) -> dit::Result<()> {
    // FNV-1a over the bits.
    let hash = values.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, v| {
        v.to_bits()
            .to_le_bytes()
            .iter()
            .fold(h, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3))
    });
    if let Some(hashes) = comm.gather_bytes(&hash.to_le_bytes(), 0)? {
        ensure!(
            hashes.iter().all(|h| *h == hashes[0]),
            "the ranks got different results (hashes {hashes:?})"
        );
    }
    Ok(())
}

/// Rank r enters the barrier r·150 ms late; no rank may leave it before the
/// last one entered (the ranks share one clock on one machine).
fn barrier_holds_everyone(comm: &dyn Communicator) -> dit::Result<String> {
    let micros = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
    };
    std::thread::sleep(Duration::from_millis(150 * comm.rank() as u64));
    let entered = micros().map_err(Error::msg)?;
    comm.barrier()?;
    let left = micros().map_err(Error::msg)?;
    let mut blob = entered.to_le_bytes().to_vec();
    blob.extend(left.to_le_bytes());
    let Some(times) = comm.gather_bytes(&blob, 0)? else {
        return Ok(String::new());
    };
    let read = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let last_entry = times.iter().map(|t| read(&t[..8])).max().unwrap_or(0);
    let first_exit = times.iter().map(|t| read(&t[8..])).min().unwrap_or(0);
    ensure!(
        first_exit >= last_entry,
        "a rank left the barrier {} µs before the last one entered it",
        last_entry - first_exit
    );
    Ok(format!(
        "first exit {} µs after the last entry",
        first_exit - last_entry
    ))
}

/// The bucketed all-reduce of odd-shaped tensors (empty, scalar, larger than
/// a bucket) against one all-reduce per tensor: bitwise on integer data, and
/// on random data bitwise for two ranks (a+b = b+a); for more ranks MPI may
/// add in another order for another message length, so both must be within
/// the summation bound of the exact value.
fn bucketed_matches_per_tensor(
    comm: &dyn Communicator,
    bucket_bytes: usize,
    reduction: Reduction,
    seed: u64,
) -> dit::Result<String> {
    let (world, rank) = (comm.world_size(), comm.rank());
    let shapes: [&[usize]; 10] = [
        &[],
        &[1],
        &[3],
        &[0],
        &[7, 5],
        &[2, 0, 3],
        &[1000, 3],
        &[33],
        &[1, 1, 1, 1],
        &[300_001],
    ];
    let bucketing = BucketedAllReduce::new(bucket_bytes)?;
    let mut report = String::new();
    for integer_data in [true, false] {
        let data = |r: usize, i: usize, n: usize| {
            let t = tag(7 + integer_data as u64, i);
            if integer_data {
                integers(seed, r, t, n)
            } else {
                wide_range(seed, r, t, n)
            }
        };
        let mut tensors = Vec::new();
        let mut per_tensor = Vec::new();
        for (i, shape) in shapes.iter().enumerate() {
            let n = shape.iter().product();
            let mut values = data(rank, i, n);
            tensors.push(Tensor::from_vec(values.clone(), *shape, &Device::Cpu)?);
            match reduction {
                Reduction::Sum => comm.all_reduce_sum(&mut values)?,
                Reduction::Mean => comm.all_reduce_mean(&mut values)?,
            }
            per_tensor.push(values);
        }
        let buckets = bucketing.buckets(&tensors);
        ensure!(
            buckets.len() > 2 && buckets.iter().any(|b| b.len() > 2),
            "the shapes do not exercise bucketing: buckets {buckets:?}"
        );
        bucketing.run(comm, &mut tensors, reduction)?;
        let divisor = match reduction {
            Reduction::Sum => 1.0,
            Reduction::Mean => world as f64,
        };
        let mut differing = 0;
        for (i, (t, want)) in tensors.iter().zip(&per_tensor).enumerate() {
            ensure!(
                t.dims() == shapes[i],
                "tensor {i}: shape {:?}, expected {:?}",
                t.dims(),
                shapes[i]
            );
            let got = t.flatten_all()?.to_vec1::<f32>()?;
            if integer_data || world <= 2 {
                bitwise_equal(&format!("tensor {i} {:?}", shapes[i]), &got, want)?;
            } else {
                let inputs = all_ranks(world, |r| data(r, i, got.len()));
                within_sum_bound(&inputs, &got, divisor)?;
                within_sum_bound(&inputs, want, divisor)?;
                differing += got
                    .iter()
                    .zip(want)
                    .filter(|(a, b)| a.to_bits() != b.to_bits())
                    .count();
            }
            same_on_all_ranks(comm, &got)?;
        }
        report += &if integer_data || world <= 2 {
            format!("{} buckets bitwise equal to per-tensor; ", buckets.len())
        } else {
            format!("{differing} elements differ from per-tensor, all within the bound; ")
        };
    }
    Ok(report.trim_end_matches("; ").into())
}

/// A training-like loop: each step all-reduces rank+step and checks the sum.
fn steps(comm: &dyn Communicator, args: &StepsArgs, set_phase: &dyn Fn(&str)) -> Result<()> {
    let (world, rank) = (comm.world_size(), comm.rank());
    if let Some(dir) = &args.pid_dir {
        let tmp = dir.join(format!("rank-{rank}.pid.tmp"));
        std::fs::write(&tmp, std::process::id().to_string())?;
        std::fs::rename(&tmp, dir.join(format!("rank-{rank}.pid")))?;
    }
    let mut buf = vec![0.0f32; args.len];
    for step in 0..args.steps {
        set_phase(&format!("step {step}"));
        if args.fail_rank == Some(rank) && step == args.fail_at_step {
            let failure = Error::msg(format!("injected failure ({:?})", args.fail_how));
            match args.fail_how {
                Failure::Abort => or_abort(comm, format!("step {step}"), Err::<(), _>(failure)),
                Failure::Panic => panic!("step {step}: injected panic"),
                Failure::Return => return Err(failure.into()),
                Failure::Exit => std::process::exit(1),
                Failure::Hang => loop {
                    std::thread::sleep(Duration::from_secs(3600));
                },
            }
        }
        buf.fill((rank + step) as f32);
        let reduced = comm.all_reduce_sum(&mut buf);
        or_abort(comm, format!("step {step}"), reduced);
        let want = (world * step + world * (world - 1) / 2) as f32;
        if let Some(bad) = buf.iter().find(|&&x| x != want) {
            comm.abort(&format!(
                "step {step}: all-reduce gave {bad}, expected {want}"
            ));
        }
    }
    if rank == 0 {
        println!(
            "steps: {} all-reduces of {} f32 on {world} rank(s)",
            args.steps, args.len
        );
    }
    Ok(())
}

/// Times `iters` back-to-back all-reduces per size (after two untimed ones);
/// rank 0 reports the mean time, algorithm bandwidth (bytes / time) and bus
/// bandwidth (algorithm bandwidth · 2(w-1)/w, what each rank sends and
/// receives in a ring all-reduce; the figure nccl-tests reports).
fn bench(comm: &dyn Communicator, args: &BenchArgs) {
    let world = comm.world_size();
    for &mib in &args.mib {
        let n = mib * (1 << 20) / std::mem::size_of::<f32>();
        let mut buf = vec![1.0f32; n];
        for _ in 0..2 {
            let r = comm.all_reduce_mean(&mut buf);
            or_abort(comm, format!("bench warm-up {mib} MiB"), r);
        }
        let barrier = comm.barrier();
        or_abort(comm, "bench barrier", barrier);
        let start = Instant::now();
        for _ in 0..args.iters {
            let r = comm.all_reduce_sum(&mut buf);
            or_abort(comm, format!("bench {mib} MiB"), r);
        }
        let per_call = start.elapsed().as_secs_f64() / args.iters as f64;
        if comm.rank() == 0 {
            let bytes = (n * std::mem::size_of::<f32>()) as f64;
            let algbw = bytes / per_call / 1e9;
            let busbw = algbw * 2.0 * (world as f64 - 1.0) / world as f64;
            println!(
                "allreduce {mib:>4} MiB on {world} ranks: {:8.3} ms  algbw {algbw:6.2} GB/s  busbw {busbw:6.2} GB/s",
                per_call * 1e3
            );
        }
    }
}
