#!/usr/bin/env bash
# Compiles the CUDA build of `dit` (`cargo build --release --features cuda`) on
# any Linux x86_64 machine, GPU or not, with the toolkit that
# scripts/install-cuda-toolkit.sh puts in .cache/cuda/ (installed first if
# missing), and reports the time and the binary's size.
#
#   scripts/check-cuda-build.sh [--xz] [extra cargo args, e.g. --features nccl]
#
# --xz also writes <target>/release/dit.xz (xz -6), the form in which the
# binary fits a 64 MiB transfer limit, and reports its size.
# The build has its own target folder (CUDA_TARGET_DIR, default
# .cache/target-cuda) so that it never invalidates the CPU build's.
# Without a GPU the binary cannot start (no libcuda.so.1): this only compiles.
set -euo pipefail
cd "$(dirname "$0")/.."

xz=0
if [ "${1:-}" = --xz ]; then xz=1; shift; fi

# A build with NCCL (`--features nccl`, which includes `mpi`) links libnccl
# and OpenMPI: install its wheel and OpenMPI too, so that this script alone
# works on a fresh machine.
case " $* " in *nccl*) export DIT_CUDA_NCCL=1; scripts/install-mpi.sh ;; esac
scripts/install-cuda-toolkit.sh
# shellcheck source=/dev/null
source .cache/cuda-env.sh

target=${CUDA_TARGET_DIR:-.cache/target-cuda}
echo "nvcc: $(nvcc --version | grep release); CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-from nvidia-smi}; target: $target"

start=$(date +%s)
CARGO_TARGET_DIR=$target cargo build --release --features cuda "$@"
end=$(date +%s)

bin=$target/release/dit
echo "built $bin in $((end - start)) s: $(du -m "$bin" | cut -f1) MiB ($(stat -c %s "$bin") bytes)"
# The CUDA libraries the binary will look for at run time.
echo "needs: $(readelf -d "$bin" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p' | tr '\n' ' ')"

# The pipeline tests compile against this build too (with --features nccl,
# dist::nccl's GPU test, which runs where a GPU is).
start=$(date +%s)
CARGO_TARGET_DIR=$target cargo test --release --no-run --features cuda "$@" --test pipeline
echo "compiled the pipeline tests in $(($(date +%s) - start)) s"

if [ "$xz" = 1 ]; then
  start=$(date +%s)
  xz -T2 -6 -k -f "$bin"
  end=$(date +%s)
  echo "compressed $bin.xz in $((end - start)) s: $(du -m "$bin.xz" | cut -f1) MiB ($(stat -c %s "$bin.xz") bytes)"
fi
