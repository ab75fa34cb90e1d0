#!/usr/bin/env bash
# Runs the model tests on an emulated AVX2-only CPU (QEMU user mode, Haswell):
# gemm's run-time dispatch must fall back from its AVX-512 kernels, and
# --precision bf16 from AMX / AVX512-BF16 to rounding + the f32 product with
# scalar packing (the same tests and tolerances as on the host). Not part of
# CI (slow); needs `apt-get install qemu-user`.
#   scripts/check-avx2-fallback.sh [test filters, default: parity bf16 vae_parity]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(cargo test --no-run --test model --message-format=json 2>/dev/null |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "model":
        print(m["executable"])')
[ $# -gt 0 ] || set -- parity bf16 vae_parity ops_fused_branches
qemu-x86_64 -cpu Haswell "$bin" --test-threads 1 "$@"
