#!/usr/bin/env bash
# Runs the model parity tests on an emulated AVX2-only CPU (QEMU user mode,
# Haswell), proving gemm's run-time dispatch falls back from its AVX-512
# kernels. Not part of CI (slow: ~1-2 min); needs `apt-get install qemu-user`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --no-run --test model_parity 2>/dev/null
bin=$(ls -t target/debug/deps/model_parity-* | grep -v '\.d$' | head -1)
qemu-x86_64 -cpu Haswell "$bin" --test-threads 1
