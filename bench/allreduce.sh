#!/usr/bin/env bash
# All-reduce time and bandwidth between local MPI ranks (dit's MPI communicator,
# the same call a data-parallel training step makes).
#
#   bench/allreduce.sh                 # 2 ranks, 4/64/256 MiB f32 buffers
#   NP=3 MIB=4,64 ITERS=10 bench/allreduce.sh
#   DIT=target/debug/dit bench/allreduce.sh    # a dit already built with --features mpi
#
# Prints, per size, the mean time per all-reduce (sum), the algorithm bandwidth
# (buffer bytes / time) and the bus bandwidth (algbw * 2(np-1)/np).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-mpi.sh
NP="${NP:-2}"
MIB="${MIB:-4,64,256}"
ITERS="${ITERS:-20}"
if [ -z "${DIT:-}" ]; then
  cargo build --release --features mpi --bin dit
  DIT="${CARGO_TARGET_DIR:-target}/release/dit"
fi

echo "# $(mpirun --version | head -1); $NP ranks on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
  mpirun -np "$NP" --oversubscribe --bind-to none "$DIT" comm-check bench --mib "$MIB" --iters "$ITERS"
