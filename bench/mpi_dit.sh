# Sourced by the MPI benchmarks (bench/allreduce.sh, bench/step_scaling.sh):
# installs OpenMPI if missing, sets DIT to a dit built with `--features mpi`
# (built here unless DIT already names one), and lets mpirun run as root.
scripts/install-mpi.sh
if [ -z "${DIT:-}" ]; then
  cargo build --release --features mpi --bin dit
  DIT="${CARGO_TARGET_DIR:-target}/release/dit"
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
