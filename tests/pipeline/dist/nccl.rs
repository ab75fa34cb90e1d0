//! `dist::Nccl` (feature `nccl`): the tensor collectives on a GPU against the
//! host's answer, in an `mpirun` job of one rank per GPU (at most 2).
//!
//! The job's ranks are this test binary itself, started by
//! [`nccl_collectives_match_the_host`] to run only the ignored test
//! [`nccl_rank`]: MPI may be initialised once per process, and a rank that
//! fails aborts its whole process. Without a GPU (or `mpirun`) the test says
//! why and passes.

use super::mpi_jobs::{mpirun_or_skip, Job, ONE_JOB_AT_A_TIME};
use candle_core::cuda_backend::cudarc::driver::CudaContext;
use candle_core::{Device, Tensor};
use dit::dist::{BucketedAllReduce, Communicator, Nccl, Reduction};
use std::time::Duration;

/// The GPUs this process sees, or `None` after saying why the test is skipped.
fn gpus_or_skip(test: &str) -> Option<usize> {
    match CudaContext::device_count() {
        Ok(n) if n > 0 => Some(n as usize),
        Ok(_) => {
            eprintln!("skipping {test}: no CUDA GPU is visible");
            None
        }
        Err(e) => {
            eprintln!("skipping {test}: the CUDA driver finds no GPU ({e:?})");
            None
        }
    }
}

#[test]
fn nccl_collectives_match_the_host() {
    const TEST: &str = "nccl_collectives_match_the_host";
    let Some(gpus) = gpus_or_skip(TEST) else {
        return;
    };
    if !mpirun_or_skip(TEST) {
        return;
    }
    let _one = ONE_JOB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let ranks = gpus.min(2);
    let dir = tempfile::tempdir().unwrap();
    let mut command = Job::mpirun();
    command
        .args(["-np", &ranks.to_string(), "--oversubscribe"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "dist::nccl::nccl_rank",
            "--nocapture",
            "--test-threads=1",
        ]);
    let ended = Job::start(command, dir.path()).wait(Duration::from_secs(300));
    assert!(
        ended.status.success(),
        "{ranks} rank(s): {}",
        ended.describe()
    );
    // A filter that matched nothing would also succeed: every rank must
    // have run the one test.
    let ran = ended.stdout.matches("test result: ok. 1 passed").count();
    assert_eq!(ran, ranks, "{}", ended.describe());
}

/// Rank `rank`'s value at `i`: quarters and small integers, so that sums over
/// a few ranks are exact in f32 whatever order NCCL adds them in.
fn value(rank: usize, i: usize) -> f32 {
    ((i * 7 + rank * 3) % 13) as f32 - 6.0 + 0.25 * rank as f32
}

fn values(rank: usize, n: usize) -> Vec<f32> {
    (0..n).map(|i| value(rank, i)).collect()
}

fn summed(world: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| (0..world).map(|r| value(r, i)).sum())
        .collect()
}

fn host(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
#[ignore = "one rank of nccl_collectives_match_the_host's mpirun job"]
fn nccl_rank() {
    if gpus_or_skip("nccl_rank").is_none() {
        return;
    }
    let comm = Nccl::init().unwrap();
    let (rank, world) = (comm.rank(), comm.world_size());
    let gpu = comm.device().clone();
    assert!(gpu.is_cuda(), "{}", comm.description());
    println!("{}", comm.description());
    let on_gpu = |t: &Tensor| t.device().same_device(&gpu);

    // An odd length: nothing lines up with a power of two.
    let n = 1001;
    let mine = Tensor::from_vec(values(rank, n), n, &gpu).unwrap();
    let sum = comm.all_reduce_sum_tensor(&mine).unwrap();
    assert!(on_gpu(&sum));
    assert_eq!(sum.dims(), [n]);
    let mut through_host = values(rank, n);
    comm.all_reduce_sum(&mut through_host).unwrap();
    assert_eq!(host(&sum), through_host, "NCCL sum against MPI's");
    assert_eq!(host(&sum), summed(world, n), "NCCL sum against the formula");

    let mean = comm.all_reduce_mean_tensor(&mine).unwrap();
    let mut mean_through_host = values(rank, n);
    comm.all_reduce_mean(&mut mean_through_host).unwrap();
    assert_eq!(host(&mean), mean_through_host, "NCCL mean against MPI's");

    // A strided view (a transpose) is reduced in its logical order.
    let grid = Tensor::from_vec(values(rank, 77), (7, 11), &gpu).unwrap();
    let strided = grid.t().unwrap();
    assert!(!strided.is_contiguous());
    let strided_sum = comm.all_reduce_sum_tensor(&strided).unwrap();
    assert_eq!(strided_sum.dims(), [11, 7]);
    let mut expected = host(&strided);
    comm.all_reduce_sum(&mut expected).unwrap();
    assert_eq!(host(&strided_sum), expected, "sum of a transposed tensor");

    let root = world - 1;
    let from_root = comm.broadcast_tensor(&mine, root).unwrap();
    assert!(on_gpu(&from_root));
    assert_eq!(
        host(&from_root),
        values(root, n),
        "broadcast from rank {root}"
    );

    // A CPU tensor takes MPI's host path and stays on the CPU.
    let on_cpu = Tensor::from_vec(values(rank, n), n, &Device::Cpu).unwrap();
    let cpu_sum = comm.all_reduce_sum_tensor(&on_cpu).unwrap();
    assert!(cpu_sum.device().is_cpu());
    assert_eq!(host(&cpu_sum), summed(world, n));

    // Gradients: buckets of mixed tensors (an empty one, a strided one).
    let mut grads = vec![
        Tensor::from_vec(values(rank, n), n, &gpu).unwrap(),
        Tensor::zeros(0, candle_core::DType::F32, &gpu).unwrap(),
        strided.clone(),
        Tensor::from_vec(values(rank, 3), 3, &gpu).unwrap(),
    ];
    let mut expected: Vec<Vec<f32>> = grads.iter().map(host).collect();
    for e in &mut expected {
        comm.all_reduce_mean(e).unwrap();
    }
    BucketedAllReduce::new(256)
        .unwrap()
        .run(&comm, &mut grads, Reduction::Mean)
        .unwrap();
    for (i, (g, e)) in grads.iter().zip(&expected).enumerate() {
        assert!(on_gpu(g), "gradient {i}");
        assert_eq!(&host(g), e, "gradient {i}");
    }

    let wrong = Tensor::from_vec(vec![1u32, 2, 3], 3, &gpu).unwrap();
    let err = comm.all_reduce_sum_tensor(&wrong).unwrap_err().to_string();
    assert!(
        err.contains(&format!("rank {rank} of {world}")) && err.contains("f32"),
        "{err}"
    );

    comm.finish().unwrap();
}
