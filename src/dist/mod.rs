//! Collectives for data-parallel training and sharded sampling.
//!
//! A job runs as `world_size` copies of `dit` (ranks), started by a launcher
//! (`mpirun`, `srun`). They cooperate only through a [`Communicator`]: sum or
//! average buffers across ranks (gradients), copy a buffer from one rank to all
//! (initial weights, a configuration), gather small results on one rank, wait
//! for each other, and end the whole job when one of them fails.
//!
//! Implementations:
//! - [`SingleProcess`]: world of one, every collective is the identity. Always
//!   built; what a plain `dit train` uses.
//! - `Mpi` (cargo feature `mpi`): MPI through the `mpi` crate over the
//!   launcher's `MPI_COMM_WORLD`.
//! - `Nccl` (cargo feature `nccl`, which includes `mpi` and `cuda`): one GPU
//!   per rank; the tensor methods run NCCL on the GPU, everything else goes
//!   through MPI. [`from_launcher_on`] picks it for a job on a CUDA device.
//!
//! The trait works on host `f32` slices; the tensor methods
//! ([`Communicator::all_reduce_sum_tensor`], …) default to a round trip through
//! the host, so a communicator over device memory (NCCL on CUDA tensors) sits
//! beside MPI by overriding those and keeping the data on the device.
//! [`BucketedAllReduce`] (gradients) only calls the tensor methods.
//!
//! Failure: an MPI job does not notice that one rank returned an error; the
//! others wait in their next collective forever. A rank that cannot go on must
//! end the job with [`Communicator::abort`] (or [`or_abort`]), which names the
//! rank and what it was doing. The `Mpi` communicator also aborts the job when
//! it is dropped without [`Communicator::finish`] (an early `?` return, a
//! panic), so such a rank cannot leave the others hanging. A rank that hangs
//! without failing is caught by [`Watched`], a time limit on collectives.

mod batch_split;
mod bucket;
#[cfg(feature = "mpi")]
mod mpi;
#[cfg(feature = "nccl")]
mod nccl;
mod single;
mod watched;

#[cfg(feature = "mpi")]
pub use self::mpi::{Mpi, NO_IN_PLACE_VARIABLE};
#[cfg(feature = "nccl")]
pub use self::nccl::Nccl;
pub use batch_split::{sum_grads, BatchSplit};
pub use bucket::{BucketedAllReduce, Reduction, DEFAULT_BUCKET_BYTES};
pub use single::SingleProcess;
pub use watched::Watched;

use crate::{bail, Result};
use candle_core::{DType, Device, Tensor};
use std::fmt::Display;

/// The exit status of a job ended by [`Communicator::abort`].
pub const ABORT_EXIT_CODE: i32 = 3;

/// The samples of a global batch one process computes: `count` consecutive
/// samples from `first`. Per-sample randomness is keyed by the sample's
/// place in the global batch, so how a batch is shared does not change what
/// is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchShare {
    pub global: usize,
    pub first: usize,
    pub count: usize,
}

impl BatchShare {
    /// The whole batch, in one process.
    pub fn whole(batch: usize) -> Self {
        Self {
            global: batch,
            first: 0,
            count: batch,
        }
    }

    /// Rank `rank` of `world`'s equal share of a batch of `batch`.
    pub fn of(rank: usize, world: usize, batch: usize) -> Result<Self> {
        if world == 0 || rank >= world || !batch.is_multiple_of(world) {
            bail!(
                "a batch of {batch} cannot be shared equally by {world} processes \
                 (the global --batch-size must be a multiple of the number of ranks)"
            );
        }
        let count = batch / world;
        Ok(Self {
            global: batch,
            first: rank * count,
            count,
        })
    }

    /// The batch slots this share holds.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.first..self.first + self.count
    }
}

/// One rank's view of a group of cooperating processes.
///
/// Every collective must be called by all ranks, in the same order, with
/// matching arguments (the same root, the same length where one is needed);
/// a call that only some ranks make blocks the others. Implementations check
/// what they cheaply can (lengths, roots) and then fail on every rank alike.
pub trait Communicator {
    /// This process's index, `0..world_size()`.
    fn rank(&self) -> usize;

    /// The number of processes in the job.
    fn world_size(&self) -> usize;

    /// Replaces `buf` on every rank with the element-wise sum over ranks. All
    /// ranks must pass the same length and get bitwise the same result; the
    /// order in which ranks are added is the implementation's (f32 addition is
    /// not associative, so it may differ from a sum in rank order by rounding).
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()>;

    /// Replaces `buf` with the element-wise mean over ranks: the sum divided
    /// by the world size.
    fn all_reduce_mean(&self, buf: &mut [f32]) -> Result<()> {
        self.all_reduce_sum(buf)?;
        let world = self.world_size() as f32;
        if world != 1.0 {
            buf.iter_mut().for_each(|x| *x /= world);
        }
        Ok(())
    }

    /// Copies `root`'s `buf` into every rank's `buf`; all lengths must match.
    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<()>;

    /// Copies `root`'s bytes to every rank; other ranks' `buf` is resized to
    /// the root's length (so they need not know it).
    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> Result<()>;

    /// Returns once every rank has called it.
    fn barrier(&self) -> Result<()>;

    /// Collects every rank's `blob` (any length, for small results such as
    /// metrics or counts) on `root`, in rank order: `Some(blobs)` on the root,
    /// `None` elsewhere.
    fn gather_bytes(&self, blob: &[u8], root: usize) -> Result<Option<Vec<Vec<u8>>>>;

    /// What the communicator is, for logs: the library, this rank, the world.
    fn description(&self) -> String;

    /// Ends the whole job: prints `rank R of W: message` to stderr and stops
    /// every rank, with exit status [`ABORT_EXIT_CODE`] where the launcher
    /// passes it on. For a rank that cannot go on (name the step in `message`).
    fn abort(&self, message: &str) -> !;

    /// Marks this rank as done after a barrier with the others. Afterwards
    /// dropping the communicator shuts it down normally; dropping an MPI
    /// communicator without `finish` aborts the job (see the module docs).
    fn finish(&self) -> Result<()>;

    /// The element-wise sum over ranks of an f32 tensor, on the tensor's
    /// device. The default copies through the host; a device communicator
    /// overrides it.
    fn all_reduce_sum_tensor(&self, tensor: &Tensor) -> Result<Tensor> {
        let mut host = host_f32(tensor, "all_reduce_sum_tensor")?;
        self.all_reduce_sum(&mut host)?;
        Ok(Tensor::from_vec(host, tensor.shape(), tensor.device())?)
    }

    /// The element-wise mean over ranks of an f32 tensor (sum, then divided
    /// by the world size, as [`Communicator::all_reduce_mean`]).
    fn all_reduce_mean_tensor(&self, tensor: &Tensor) -> Result<Tensor> {
        let mut host = host_f32(tensor, "all_reduce_mean_tensor")?;
        self.all_reduce_mean(&mut host)?;
        Ok(Tensor::from_vec(host, tensor.shape(), tensor.device())?)
    }

    /// `root`'s values of an f32 tensor of the same shape on every rank
    /// (initial weights).
    fn broadcast_tensor(&self, tensor: &Tensor, root: usize) -> Result<Tensor> {
        let mut host = host_f32(tensor, "broadcast_tensor")?;
        self.broadcast_f32(&mut host, root)?;
        Ok(Tensor::from_vec(host, tensor.shape(), tensor.device())?)
    }
}

/// A boxed communicator (what [`from_launcher`] returns) is one, so that
/// wrappers such as [`Watched`] take it.
impl<C: Communicator + ?Sized> Communicator for Box<C> {
    fn rank(&self) -> usize {
        (**self).rank()
    }

    fn world_size(&self) -> usize {
        (**self).world_size()
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        (**self).all_reduce_sum(buf)
    }

    fn all_reduce_mean(&self, buf: &mut [f32]) -> Result<()> {
        (**self).all_reduce_mean(buf)
    }

    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<()> {
        (**self).broadcast_f32(buf, root)
    }

    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> Result<()> {
        (**self).broadcast_bytes(buf, root)
    }

    fn barrier(&self) -> Result<()> {
        (**self).barrier()
    }

    fn gather_bytes(&self, blob: &[u8], root: usize) -> Result<Option<Vec<Vec<u8>>>> {
        (**self).gather_bytes(blob, root)
    }

    fn description(&self) -> String {
        (**self).description()
    }

    fn abort(&self, message: &str) -> ! {
        (**self).abort(message)
    }

    fn finish(&self) -> Result<()> {
        (**self).finish()
    }

    fn all_reduce_sum_tensor(&self, tensor: &Tensor) -> Result<Tensor> {
        (**self).all_reduce_sum_tensor(tensor)
    }

    fn all_reduce_mean_tensor(&self, tensor: &Tensor) -> Result<Tensor> {
        (**self).all_reduce_mean_tensor(tensor)
    }

    fn broadcast_tensor(&self, tensor: &Tensor, root: usize) -> Result<Tensor> {
        (**self).broadcast_tensor(tensor, root)
    }
}

fn host_f32(tensor: &Tensor, what: &str) -> Result<Vec<f32>> {
    if tensor.dtype() != DType::F32 {
        bail!(
            "{what}: the communicator reduces f32 tensors, got {:?} of shape {:?}",
            tensor.dtype(),
            tensor.dims()
        );
    }
    Ok(tensor.flatten_all()?.to_vec1::<f32>()?)
}

/// Checks `root` against the world size, naming the collective.
fn check_root(what: &str, root: usize, world_size: usize) -> Result<()> {
    if root >= world_size {
        bail!("{what}: root rank {root} is not in the job's {world_size} ranks");
    }
    Ok(())
}

/// The value of `result`, or the end of the job with a message that names the
/// rank and `doing` (for example `"step 120"`).
pub fn or_abort<T, C>(comm: &C, doing: impl Display, result: Result<T>) -> T
where
    C: Communicator + ?Sized,
{
    match result {
        Ok(value) => value,
        Err(err) => comm.abort(&format!("{doing}: {err}")),
    }
}

/// How this process was started: alone, or as one rank of a launcher's job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Launch {
    /// No launcher variables: a plain process.
    Alone,
    /// Started by `mpirun`/`mpiexec` or `srun`; `world_size` when the
    /// launcher states it, and the variable that showed it.
    Launcher {
        variable: &'static str,
        world_size: Option<usize>,
    },
}

impl Launch {
    /// Reads the launchers' environment variables: Open MPI's
    /// `OMPI_COMM_WORLD_SIZE`, the PMI `PMI_SIZE` (MPICH's Hydra, `srun
    /// --mpi=pmi2`) and PMIx's `PMIX_RANK` (`srun --mpi=pmix`). A Slurm batch
    /// script alone (`SLURM_NTASKS` without a step) is not a launch.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Self {
        for (variable, states_size) in [
            ("OMPI_COMM_WORLD_SIZE", true),
            ("PMI_SIZE", true),
            ("PMIX_RANK", false),
        ] {
            if let Some(value) = var(variable) {
                let world_size = if states_size {
                    value.trim().parse().ok()
                } else {
                    None
                };
                return Launch::Launcher {
                    variable,
                    world_size,
                };
            }
        }
        Launch::Alone
    }
}

/// The communicator for this process: MPI when started by a launcher (with
/// the `mpi` feature), otherwise a [`SingleProcess`]. Initialises MPI, so it
/// may be called once per process.
pub fn from_launcher() -> Result<Box<dyn Communicator>> {
    match Launch::from_env() {
        Launch::Alone => Ok(Box::new(SingleProcess)),
        #[cfg(feature = "mpi")]
        Launch::Launcher { .. } => Ok(Box::new(Mpi::init()?)),
        #[cfg(not(feature = "mpi"))]
        Launch::Launcher {
            variable,
            world_size,
        } => match world_size {
            Some(1) => Ok(Box::new(SingleProcess)),
            _ => bail!(
                "started by an MPI launcher ({variable} is set) but this dit was built \
                 without MPI: rebuild with `--features mpi` (scripts/install-mpi.sh \
                 installs OpenMPI), or run it without the launcher"
            ),
        },
    }
}

/// The communicator for a job that computes on `device`, and the device
/// this rank must compute on.
///
/// A launcher's job on a CUDA device, in a build with the `nccl` feature,
/// gets [`Nccl`](self::Nccl): each rank takes its own GPU (its local rank's,
/// see [`gpu_of_rank`]), whatever ordinal `device` names, and the returned
/// device is that GPU. Otherwise this is [`from_launcher`] and `device` is
/// returned unchanged (a CPU job, a CUDA job without NCCL, a plain process).
pub fn from_launcher_on(device: &Device) -> Result<(Box<dyn Communicator>, Device)> {
    #[cfg(feature = "nccl")]
    {
        if device.is_cuda() && Launch::from_env() != Launch::Alone {
            let nccl = self::nccl::Nccl::init()?;
            let gpu = nccl.device().clone();
            return Ok((Box::new(nccl), gpu));
        }
    }
    Ok((from_launcher()?, device.clone()))
}

/// The launcher variables that give a rank's index among the ranks on its
/// own machine, in the order they are read.
const LOCAL_RANK_VARIABLES: [&str; 3] = [
    "OMPI_COMM_WORLD_LOCAL_RANK", // Open MPI's mpirun
    "SLURM_LOCALID",              // srun
    "MPI_LOCALRANKID",            // MPICH's Hydra
];

/// This process's index among the ranks on its machine, and the variable
/// that said so; `None` when no launcher variable states it.
pub fn local_rank() -> Option<(usize, &'static str)> {
    local_rank_from(|name| std::env::var(name).ok())
}

fn local_rank_from(var: impl Fn(&str) -> Option<String>) -> Option<(usize, &'static str)> {
    LOCAL_RANK_VARIABLES.iter().find_map(|&variable| {
        let value = var(variable)?.trim().parse().ok()?;
        Some((value, variable))
    })
}

/// The GPU (ordinal) of `rank` when each rank has a GPU of its own among the
/// `gpus` its machine shows: its local rank, or without one its rank modulo
/// `gpus` (right when every machine runs `gpus` consecutive ranks). More
/// local ranks than GPUs is an error: two ranks cannot share one GPU in an
/// NCCL communicator.
pub fn gpu_of_rank(rank: usize, local_rank: Option<usize>, gpus: usize) -> Result<usize> {
    if gpus == 0 {
        bail!("rank {rank}: no CUDA GPU is visible (check nvidia-smi and CUDA_VISIBLE_DEVICES)");
    }
    match local_rank {
        Some(local) if local < gpus => Ok(local),
        Some(local) => bail!(
            "rank {rank} is local rank {local} on its machine, which shows {gpus} GPU(s): \
             start at most {gpus} rank(s) per machine (one GPU per rank)"
        ),
        None => Ok(rank % gpus),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(vars: &[(&str, &str)]) -> Launch {
        Launch::from_vars(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn launch_is_read_from_the_launcher_variables() {
        assert_eq!(launch(&[("SLURM_NTASKS", "4")]), Launch::Alone);
        assert_eq!(
            launch(&[("OMPI_COMM_WORLD_SIZE", "3"), ("PMIX_RANK", "1")]),
            Launch::Launcher {
                variable: "OMPI_COMM_WORLD_SIZE",
                world_size: Some(3)
            }
        );
        assert_eq!(
            launch(&[("PMIX_RANK", "0")]),
            Launch::Launcher {
                variable: "PMIX_RANK",
                world_size: None
            }
        );
    }

    #[test]
    fn each_local_rank_gets_its_own_gpu() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(local_rank_from(vars(&[])), None);
        assert_eq!(
            local_rank_from(vars(&[
                ("SLURM_LOCALID", "2"),
                ("OMPI_COMM_WORLD_LOCAL_RANK", "1")
            ])),
            Some((1, "OMPI_COMM_WORLD_LOCAL_RANK"))
        );
        assert_eq!(
            local_rank_from(vars(&[
                ("OMPI_COMM_WORLD_LOCAL_RANK", "x"),
                ("SLURM_LOCALID", "3")
            ])),
            Some((3, "SLURM_LOCALID"))
        );

        assert_eq!(gpu_of_rank(5, Some(1), 8).unwrap(), 1);
        assert_eq!(gpu_of_rank(9, None, 8).unwrap(), 1);
        assert_eq!(gpu_of_rank(3, None, 1).unwrap(), 0);
        let err = gpu_of_rank(2, Some(2), 2).unwrap_err().to_string();
        assert!(err.contains("rank 2") && err.contains("at most 2"), "{err}");
        let err = gpu_of_rank(0, None, 0).unwrap_err().to_string();
        assert!(err.contains("no CUDA GPU"), "{err}");
    }
}
