//! The `dist` communicators: in-process ([`single`]), as MPI jobs of 1–3
//! ranks started with `mpirun` ([`mpi_jobs`], with the `mpi` feature), and
//! NCCL on GPUs ([`nccl`], with the `nccl` feature and a GPU).

mod comm_check;
#[cfg(feature = "mpi")]
mod jobs;
#[cfg(feature = "mpi")]
mod mpi_jobs;
#[cfg(feature = "nccl")]
mod nccl;
mod single;
