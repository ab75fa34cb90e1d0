#!/usr/bin/env bash
# All-reduce time and bandwidth between local MPI ranks (dit's MPI communicator,
# the same call a data-parallel training step makes).
#
#   bench/allreduce.sh                 # 2 ranks, 4/64/256 MiB f32 buffers
#   NP=3 MIB=4,64 ITERS=10 bench/allreduce.sh
#   DIT=target/debug/dit bench/allreduce.sh    # a dit already built with --features mpi
#   BASELINE=1 bench/allreduce.sh      # also plain C MPI_Allreduce, in place and from a
#                                      # copy (bench/allreduce_baseline.c)
#
# Prints, per size, the mean time per all-reduce (sum), the algorithm bandwidth
# (buffer bytes / time) and the bus bandwidth (algbw * 2(np-1)/np).
set -euo pipefail
cd "$(dirname "$0")/.."

NP="${NP:-2}"
MIB="${MIB:-4,64,256}"
ITERS="${ITERS:-20}"
# shellcheck source=bench/mpi_dit.sh
source bench/mpi_dit.sh
echo "# load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $(mpirun --version | head -1); $NP ranks on $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs))"
mpirun -np "$NP" --oversubscribe "$DIT" comm-check bench --mib "$MIB" --iters "$ITERS"
if [ -n "${BASELINE:-}" ]; then
  tmp="$(mktemp -d)"
  trap 'rm -rf "$tmp"' EXIT
  mpicc -O2 -o "$tmp/allreduce_baseline" bench/allreduce_baseline.c
  mpirun -np "$NP" --oversubscribe "$tmp/allreduce_baseline" "$ITERS"
  mpirun -np "$NP" --oversubscribe "$tmp/allreduce_baseline" "$ITERS" copy
fi
