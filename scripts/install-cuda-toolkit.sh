#!/usr/bin/env bash
# Installs a CUDA 13.0 toolkit from PyPI wheels into .cache/cuda/ so that
# `cargo build --release --features cuda` compiles on a machine without a
# system CUDA toolkit and without a GPU (docs/gpu-build.md). Then:
#
#   source .cache/cuda-env.sh && cargo build --release --features cuda
#
# CUDA 13.0 because the lent H200 runs driver 580.x (CUDA 13.0): PTX written
# by a newer nvcc can fail to load under an older driver.
#
# Idempotent: a second run with the same pins only re-checks and exits.
# Needs python3 with pip, gcc, and the PyPI registry (about 0.9 GB of wheels).
# With DIT_CUDA_NCCL=1 it also installs NCCL (for `--features nccl`).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

prefix=$repo/.cache/cuda
cuda_root=$prefix/nvidia/cu13
env_file=$repo/.cache/cuda-env.sh

# Exact pins, so a rebuild months later gets the same compiler: the component
# versions that NVIDIA's own meta-package `cuda-toolkit==13.0.2` (CUDA 13.0
# Update 2) pins. Only nvcc/crt/nvvm/cccl shape the binary; the libraries are
# there to link against (the GPU machine's own are loaded at run time).
pins=(
  nvidia-cuda-nvcc==13.0.88
  nvidia-cuda-crt==13.0.88
  nvidia-nvvm==13.0.88
  nvidia-cuda-cccl==13.0.85
  nvidia-cuda-runtime==13.0.96
  nvidia-cuda-nvrtc==13.0.88
  nvidia-cublas==13.1.0.3
  nvidia-curand==10.4.0.35
)
if [ "${DIT_CUDA_NCCL:-0}" = 1 ]; then
  # cudarc 0.19's `nccl` feature binds NCCL 2.30's API.
  pins+=(nvidia-nccl-cu13==2.30.7)
fi

# The libraries cudarc and candle-kernels link by unversioned name (-lcudart ...).
link_libs=(cudart cublas cublasLt curand nvrtc)
if [ "${DIT_CUDA_NCCL:-0}" = 1 ]; then link_libs+=(nccl); fi

# Rewritten on every run (cheap), so it follows the checkout if it moves.
write_env() {
  cat > "$env_file" <<EOF
# Source this (only) for CUDA builds: \`source .cache/cuda-env.sh\`.
# Written by scripts/install-cuda-toolkit.sh. It leaves RUSTFLAGS alone, so CPU
# builds in the same shell keep their cache.
export CUDA_ROOT='$cuda_root'
export CUDA_PATH="\$CUDA_ROOT"
export CUDA_HOME="\$CUDA_ROOT"
export PATH="\$CUDA_ROOT/bin:\$PATH"
# cudarc's build script already adds \$CUDA_ROOT/lib and lib/stubs to the link
# path; LIBRARY_PATH covers any other crate that links a CUDA library.
export LIBRARY_PATH="\$CUDA_ROOT/lib:\$CUDA_ROOT/lib/stubs\${LIBRARY_PATH:+:\$LIBRARY_PATH}"
# candle-kernels compiles for one GPU generation: an explicit value wins, then
# what a working nvidia-smi reports (cudaforge asks it), else the H200's 9.0.
if [ -z "\${CUDA_COMPUTE_CAP:-}" ] && ! nvidia-smi --query-gpu=compute_cap --format=csv >/dev/null 2>&1; then
  export CUDA_COMPUTE_CAP=90
fi
EOF
}

stamp=$prefix/INSTALLED
want_stamp=$(printf '%s\n' "${pins[@]}")

# Installed already when every wanted pin is (an install with NCCL also
# serves builds without it).
installed() {
  [ -f "$stamp" ] && [ -x "$cuda_root/bin/nvcc" ] && [ -f "$cuda_root/lib/stubs/libcuda.so" ] || return 1
  local pin
  for pin in "${pins[@]}"; do grep -qxF "$pin" "$stamp" || return 1; done
}

if installed; then
  write_env
  echo "CUDA toolkit already installed in $cuda_root"
  exit 0
fi

python=${PYTHON:-python3}
"$python" -m pip --version >/dev/null || {
  echo "error: $python -m pip is needed to install the CUDA wheels" >&2
  exit 1
}
command -v gcc >/dev/null || { echo "error: gcc is needed to build the libcuda link stub" >&2; exit 1; }

start=$(date +%s)
mkdir -p "$repo/.cache"
work=$(mktemp -d "$repo/.cache/cuda-install.XXXXXX")
trap 'rm -rf "$work"' EXIT

# Download first, so the size of what came from the registry can be reported.
"$python" -m pip download --quiet --no-deps --only-binary=:all: --dest "$work/wheels" "${pins[@]}"
download_bytes=$(du -sb "$work/wheels" | cut -f1)

# One pip invocation: the wheels share the nvidia/cu13/ tree, and pip --target
# skips a top-level folder that already exists from an earlier invocation.
"$python" -m pip install --quiet --no-deps --no-index --no-compile \
  --target "$work/tree" "$work"/wheels/*.whl

root=$work/tree/nvidia/cu13
[ -x "$root/bin/nvcc" ] || { echo "error: the nvcc wheel did not provide bin/nvcc" >&2; exit 1; }

# The linker wants unversioned names (libcudart.so); the wheels ship only the
# versioned run-time files (libcudart.so.13). NCCL's wheel has its own folder
# (nvidia/nccl/lib), so the links point to wherever the file is.
shopt -s nullglob
for lib in "${link_libs[@]}"; do
  found=("$work"/tree/nvidia/*/lib/"lib$lib.so."[0-9]*)
  [ ${#found[@]} -gt 0 ] || { echo "error: no lib$lib.so.N in $work/tree/nvidia/*/lib" >&2; exit 1; }
  ln -sf "$(realpath --relative-to="$root/lib" "${found[0]}")" "$root/lib/lib$lib.so"
done
shopt -u nullglob

# libcuda.so belongs to the driver, which no wheel ships. The binary only needs
# it at link time (its DT_NEEDED is libcuda.so.1, the real driver's at run
# time), so a stub defining every driver entry point that cuda.h names will do.
# lib/stubs/ is where a real toolkit keeps its own such stub, and one of the
# folders cudarc's build script puts on the link path under $CUDA_ROOT.
mkdir -p "$root/lib/stubs"
grep -ohE '\bcu[A-Z][A-Za-z0-9_]*\b' "$root/include/cuda.h" | sort -u \
  | awk '{ printf "int %s(void) { return 999; }\n", $1 }' > "$work/libcuda_stub.c"
gcc -shared -fPIC -O0 -Wl,-soname,libcuda.so.1 \
  -o "$root/lib/stubs/libcuda.so" "$work/libcuda_stub.c"

"$root/bin/nvcc" --version | grep -q 'release 13.0' || {
  echo "error: installed nvcc is not CUDA 13.0:" >&2
  "$root/bin/nvcc" --version >&2
  exit 1
}

printf '%s\n' "$want_stamp" > "$work/tree/INSTALLED"
rm -rf "$prefix"
mv "$work/tree" "$prefix"

write_env

end=$(date +%s)
echo "CUDA 13.0 toolkit installed in $cuda_root"
echo "  downloaded: $((download_bytes / 1000000)) MB of wheels; installed: $(du -sm "$prefix" | cut -f1) MiB; took $((end - start)) s"
echo "  use it with: source .cache/cuda-env.sh"
