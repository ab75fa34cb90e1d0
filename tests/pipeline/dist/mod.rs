//! The `dist` communicators: in-process ([`single`]) and as MPI jobs of 1–3
//! ranks started with `mpirun` ([`mpi_jobs`], with the `mpi` feature).

mod comm_check;
#[cfg(feature = "mpi")]
mod jobs;
#[cfg(feature = "mpi")]
mod mpi_jobs;
mod single;
