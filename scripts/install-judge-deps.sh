#!/usr/bin/env bash
# Installs what scripts/judge_fashion_mnist.py needs; idempotent (each step
# is skipped when its result is already there).
#
#  - the full Fashion-MNIST set (60k train / 10k test IDX files) from Debian's
#    dataset-fashion-mnist, into /usr/share/datasets/fashion-mnist/;
#  - PyTorch 2.15.0 (CPU use only), numpy and scipy for the python3 on PATH.
#
# Why torch is installed piecewise: PyPI's Linux x86_64 torch wheel is a CUDA
# build, and even its libtorch_cpu.so links libcudart and libcupti, while
# libtorch.so links libtorch_cuda.so, which links cuBLAS, cuDNN, cuFFT,
# cuSPARSE(Lt), cuFile, NCCL, NVRTC and NVSHMEM. Without those libraries
# `import torch` fails, so they are installed (pinned to the versions torch
# 2.15.0 resolves to). What no shared library of torch links is left out:
# triton (only torch.compile uses it), cuSOLVER (GPU linear algebra, loaded on
# first GPU use), NVTX, cuda-bindings and CCCL: 2.47 GB of wheels instead of
# 3.0 GB. Measured on the 2-core machine (2026-12-03, python 3.11, no pip
# cache): 52 s; 4.2 GB installed (torch 1.2 GB, nvidia/ 2.8 GB, the rest
# 0.3 GB). pip then warns that torch "requires triton" and a newer setuptools:
# expected, neither is needed for CPU use.
set -euo pipefail

python=$(command -v python3 || command -v python || true)
if [ -z "$python" ]; then
  echo "install-judge-deps: python3 is needed" >&2
  exit 1
fi

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null; then
    sudo "$@"
  else
    echo "install-judge-deps: '$*' needs root (or sudo)" >&2
    exit 1
  fi
}

data=/usr/share/datasets/fashion-mnist
if [ ! -f "$data/train-images-idx3-ubyte.gz" ] || [ ! -f "$data/t10k-images-idx3-ubyte.gz" ]; then
  echo "install-judge-deps: installing dataset-fashion-mnist (Debian) into $data"
  # A fresh machine's package lists may be missing or old: update and retry.
  as_root apt-get install -y dataset-fashion-mnist ||
    { as_root apt-get update && as_root apt-get install -y dataset-fashion-mnist; }
fi

pip_install() {
  "$python" -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "$@"
}

if ! "$python" -c 'import torch' 2>/dev/null; then
  echo "install-judge-deps: installing torch 2.15.0 (CPU use) and the CUDA libraries it links"
  pip_install --no-deps \
    torch==2.15.0 \
    nvidia-cuda-runtime==13.2.86 \
    nvidia-cuda-cupti==13.2.86 \
    nvidia-cuda-nvrtc==13.2.86 \
    nvidia-cublas==13.4.1.3 \
    nvidia-cufft==12.2.0.57 \
    nvidia-cufile==1.17.1.22 \
    nvidia-cusparse==12.7.10.12 \
    nvidia-nvjitlink==13.5.37 \
    nvidia-cusparselt-cu13==0.8.1 \
    nvidia-nccl-cu13==2.30.7 \
    nvidia-cudnn-cu13==9.26.0.51 \
    nvidia-nvshmem-cu13==3.7.2
  # torch's pure-Python dependencies.
  pip_install filelock 'typing-extensions>=4.13.0' 'sympy>=1.13.3' 'networkx>=2.5.1' jinja2 'fsspec>=0.8.5'
fi

if ! "$python" -c 'import numpy, scipy' 2>/dev/null; then
  echo "install-judge-deps: installing numpy and scipy"
  pip_install numpy==2.4.6 scipy==1.17.1
fi

"$python" -c 'import torch, numpy, scipy
print(f"install-judge-deps: torch {torch.__version__}, numpy {numpy.__version__}, scipy {scipy.__version__}")'
