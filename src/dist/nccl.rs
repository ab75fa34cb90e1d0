//! NCCL for jobs with one GPU per rank (cargo feature `nccl`).
//!
//! MPI starts the job: it numbers the ranks, carries NCCL's unique id from
//! rank 0 to the others, and keeps every host-side collective (bytes,
//! barriers, gathers, the end of the job). Only the tensor methods change:
//! an f32 tensor on this rank's GPU is reduced or broadcast by NCCL on the
//! device, without a copy through the host. Tensors on the CPU take MPI's
//! host path, as under [`Mpi`].

use super::mpi::Mpi;
use super::{check_root, gpu_of_rank, local_rank, Communicator};
use crate::error::Context as _;
use crate::{bail, err, Error, Result};
use candle_core::cuda_backend::cudarc::driver::CudaContext;
use candle_core::cuda_backend::cudarc::nccl::result::{get_nccl_version, NcclError};
use candle_core::cuda_backend::cudarc::nccl::{Comm, Id, ReduceOp};
use candle_core::cuda_backend::CudaStorage;
use candle_core::{CpuStorage, CustomOp1, DType, Device, Layout, Shape, Tensor};
use std::ffi::c_char;

/// One rank of a job whose tensor collectives run on its GPU through NCCL.
///
/// Like [`Mpi`], it is used from one thread, and dropping it without
/// [`Communicator::finish`] aborts the job.
pub struct Nccl {
    /// Declared first so that it is dropped (`ncclCommAbort`) before MPI is
    /// finalised with `mpi`.
    comm: Comm,
    device: Device,
    ordinal: usize,
    /// Which variable chose the GPU, for [`Communicator::description`].
    gpu_chosen_by: String,
    nccl_version: String,
    mpi: Mpi,
}

/// What a collective on the device does.
#[derive(Clone, Copy, Debug)]
enum DeviceCollective {
    AllReduceSum,
    Broadcast { root: usize },
}

impl Nccl {
    /// Initialises MPI (once per process, see [`Mpi::init`]), opens this
    /// rank's GPU and joins the job's NCCL communicator. The GPU is the
    /// rank's local rank on its machine (`OMPI_COMM_WORLD_LOCAL_RANK`,
    /// `SLURM_LOCALID`, `MPI_LOCALRANKID`), or without those its rank modulo
    /// the GPUs it sees. A rank that cannot join ends the job (the others
    /// would wait for it forever), naming the rank and the step.
    pub fn init() -> Result<Self> {
        let mpi = Mpi::init()?;
        match Self::join(&mpi) {
            Ok(joined) => Ok(Nccl {
                comm: joined.comm,
                device: joined.device,
                ordinal: joined.ordinal,
                gpu_chosen_by: joined.gpu_chosen_by,
                nccl_version: nccl_version(),
                mpi,
            }),
            Err(e) => mpi.abort(&format!("setting up NCCL: {e}")),
        }
    }

    fn join(mpi: &Mpi) -> Result<Joined> {
        let (rank, world_size) = (mpi.rank(), mpi.world_size());
        let gpus = CudaContext::device_count()
            .map_err(|e| err!("counting the CUDA GPUs (cuDeviceGetCount): {e:?}"))?;
        let local = local_rank();
        let ordinal = gpu_of_rank(rank, local.map(|(l, _)| l), gpus.max(0) as usize)?;
        let gpu_chosen_by = match local {
            Some((l, variable)) => format!("{variable}={l}"),
            None => format!("rank {rank} modulo {gpus} GPUs"),
        };
        let device = Device::new_cuda(ordinal)
            .with_context(|| format!("opening CUDA GPU {ordinal} ({gpu_chosen_by})"))?;
        let stream = device.as_cuda_device()?.cuda_stream();
        // ncclCommInitRank works on the calling thread's current device.
        stream
            .context()
            .bind_to_thread()
            .map_err(|e| err!("making CUDA GPU {ordinal} current: {e:?}"))?;

        // Rank 0 draws the job's id; every rank must join with the same one.
        let mut id_bytes = Vec::new();
        if rank == 0 {
            let id = Id::new().map_err(|e| nccl_failed("ncclGetUniqueId", e))?;
            id_bytes = id.internal().iter().map(|&c| c as u8).collect();
        }
        mpi.broadcast_bytes(&mut id_bytes, 0)
            .context("sending NCCL's unique id from rank 0")?;
        let mut internal: [c_char; 128] = [0; 128];
        if id_bytes.len() != internal.len() {
            bail!(
                "NCCL's unique id from rank 0 has {} bytes, expected {}",
                id_bytes.len(),
                internal.len()
            );
        }
        for (to, &from) in internal.iter_mut().zip(&id_bytes) {
            *to = from as c_char;
        }
        let comm = Comm::from_rank(stream, rank, world_size, Id::uninit(internal))
            .map_err(|e| nccl_failed("ncclCommInitRank", e))?;
        Ok(Joined {
            comm,
            device,
            ordinal,
            gpu_chosen_by,
        })
    }

    /// The GPU this rank computes on: a job's tensors must live there for
    /// the collectives to stay on the device.
    pub fn device(&self) -> &Device {
        &self.device
    }

    fn who(&self) -> String {
        format!("rank {} of {}", self.mpi.rank(), self.mpi.world_size())
    }

    /// Whether `tensor` is for NCCL (on this rank's GPU) rather than the
    /// host path (on the CPU); a tensor on another GPU is an error.
    fn on_this_gpu(&self, tensor: &Tensor, what: &str) -> Result<bool> {
        match tensor.device() {
            Device::Cuda(_) if tensor.device().same_device(&self.device) => Ok(true),
            Device::Cuda(_) => bail!(
                "{}: {what}: the tensor is on {:?}, this rank's NCCL communicator on cuda:{}",
                self.who(),
                tensor.device().location(),
                self.ordinal
            ),
            _ => Ok(false),
        }
    }

    /// Runs `collective` on a tensor on this rank's GPU and waits for it.
    fn on_device(
        &self,
        tensor: &Tensor,
        what: &str,
        collective: DeviceCollective,
    ) -> Result<Tensor> {
        if tensor.dtype() != DType::F32 {
            bail!(
                "{}: {what}: the communicator reduces f32 tensors, got {:?} of shape {:?}",
                self.who(),
                tensor.dtype(),
                tensor.dims()
            );
        }
        let n = tensor.elem_count();
        match collective {
            DeviceCollective::AllReduceSum => self.mpi.agree(what, &[("element count", n)])?,
            DeviceCollective::Broadcast { root } => {
                self.mpi
                    .agree(what, &[("element count", n), ("root rank", root)])?;
                check_root(what, root, self.mpi.world_size())?;
            }
        }
        if n == 0 {
            return Ok(tensor.clone());
        }
        self.run(tensor, collective).with_context(|| {
            format!(
                "{}: {what} of {n} f32 on cuda:{} over NCCL",
                self.who(),
                self.ordinal
            )
        })
    }

    /// The collective itself, on a tensor on this rank's GPU.
    fn run(&self, tensor: &Tensor, collective: DeviceCollective) -> candle_core::Result<Tensor> {
        // NCCL reads one dense buffer: a strided view is copied first
        // (`contiguous` is free for a tensor that already is).
        let dense = tensor.contiguous()?;
        let out = dense.apply_op1_no_bwd(&OnDevice {
            comm: &self.comm,
            collective,
        })?;
        // NCCL runs asynchronously on the stream: waiting here makes a
        // failure, or a hang when a peer died, show up in (and be timed by
        // `Watched` as) this collective rather than in a later op.
        self.device.synchronize()?;
        Ok(out)
    }
}

struct Joined {
    comm: Comm,
    device: Device,
    ordinal: usize,
    gpu_chosen_by: String,
}

fn nccl_failed(call: &str, e: NcclError) -> Error {
    err!("{call} failed: {:?}", e.0)
}

/// "2.30.7" from `ncclGetVersion`'s 23007 (NCCL ≥ 2.9 encodes
/// major·10000 + minor·100 + patch).
fn nccl_version() -> String {
    match get_nccl_version() {
        Ok(v) => format!("{}.{}.{}", v / 10000, (v % 10000) / 100, v % 100),
        Err(e) => format!("of unknown version ({:?})", e.0),
    }
}

/// A collective as a candle op: it reads the input's storage on the device
/// and returns a new tensor, on the same stream as candle's kernels.
struct OnDevice<'a> {
    comm: &'a Comm,
    collective: DeviceCollective,
}

impl CustomOp1 for OnDevice<'_> {
    fn name(&self) -> &'static str {
        match self.collective {
            DeviceCollective::AllReduceSum => "nccl-all-reduce-sum",
            DeviceCollective::Broadcast { .. } => "nccl-broadcast",
        }
    }

    fn cpu_fwd(
        &self,
        _storage: &CpuStorage,
        _layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        candle_core::bail!(
            "{} works on CUDA tensors (CPU tensors take MPI's host path)",
            self.name()
        )
    }

    fn cuda_fwd(
        &self,
        storage: &CudaStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CudaStorage, Shape)> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!("{} needs a contiguous tensor", self.name());
        };
        let src = storage.as_cuda_slice::<f32>()?.slice(start..end);
        let device = storage.device.clone();
        let mut dst = device.alloc_zeros::<f32>(end - start)?;
        let (call, result) = match self.collective {
            DeviceCollective::AllReduceSum => (
                "ncclAllReduce",
                self.comm.all_reduce(&src, &mut dst, &ReduceOp::Sum),
            ),
            DeviceCollective::Broadcast { root } => (
                "ncclBroadcast",
                // NCCL reads the send buffer on the root only.
                self.comm.broadcast(Some(&src), &mut dst, root as i32),
            ),
        };
        if let Err(e) = result {
            candle_core::bail!("{call} failed: {:?}", e.0);
        }
        Ok((
            CudaStorage::wrap_cuda_slice(dst, device),
            layout.shape().clone(),
        ))
    }
}

impl Communicator for Nccl {
    fn rank(&self) -> usize {
        self.mpi.rank()
    }

    fn world_size(&self) -> usize {
        self.mpi.world_size()
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
        self.mpi.all_reduce_sum(buf)
    }

    fn all_reduce_mean(&self, buf: &mut [f32]) -> Result<()> {
        self.mpi.all_reduce_mean(buf)
    }

    fn broadcast_f32(&self, buf: &mut [f32], root: usize) -> Result<()> {
        self.mpi.broadcast_f32(buf, root)
    }

    fn broadcast_bytes(&self, buf: &mut Vec<u8>, root: usize) -> Result<()> {
        self.mpi.broadcast_bytes(buf, root)
    }

    fn barrier(&self) -> Result<()> {
        self.mpi.barrier()
    }

    fn gather_bytes(&self, blob: &[u8], root: usize) -> Result<Option<Vec<Vec<u8>>>> {
        self.mpi.gather_bytes(blob, root)
    }

    fn description(&self) -> String {
        format!(
            "NCCL {} on cuda:{} (GPU chosen by {}); host collectives over {}",
            self.nccl_version,
            self.ordinal,
            self.gpu_chosen_by,
            self.mpi.description()
        )
    }

    fn abort(&self, message: &str) -> ! {
        self.mpi.abort(message)
    }

    fn finish(&self) -> Result<()> {
        self.mpi.finish()
    }

    fn all_reduce_sum_tensor(&self, tensor: &Tensor) -> Result<Tensor> {
        const WHAT: &str = "all_reduce_sum_tensor";
        if !self.on_this_gpu(tensor, WHAT)? {
            return self.mpi.all_reduce_sum_tensor(tensor);
        }
        self.on_device(tensor, WHAT, DeviceCollective::AllReduceSum)
    }

    fn all_reduce_mean_tensor(&self, tensor: &Tensor) -> Result<Tensor> {
        const WHAT: &str = "all_reduce_mean_tensor";
        if !self.on_this_gpu(tensor, WHAT)? {
            return self.mpi.all_reduce_mean_tensor(tensor);
        }
        let sum = self.on_device(tensor, WHAT, DeviceCollective::AllReduceSum)?;
        let world = self.mpi.world_size();
        if world == 1 {
            return Ok(sum);
        }
        // A division, as the host path divides: multiplying by 1/world
        // would round differently for a world that is not a power of two.
        let world = Tensor::new(world as f32, &self.device)?;
        Ok(sum.broadcast_div(&world)?)
    }

    fn broadcast_tensor(&self, tensor: &Tensor, root: usize) -> Result<Tensor> {
        const WHAT: &str = "broadcast_tensor";
        if !self.on_this_gpu(tensor, WHAT)? {
            return self.mpi.broadcast_tensor(tensor, root);
        }
        self.on_device(tensor, WHAT, DeviceCollective::Broadcast { root })
    }
}
