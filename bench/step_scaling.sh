#!/usr/bin/env bash
# Training step time of the embedded default model at one global batch, on one
# process and split over MPI ranks (`dit train --distributed`), the threads
# divided between the ranks so that every run uses the same cores.
#
#   bench/step_scaling.sh                       # 60 steps, batch 32: 1 rank x 2 threads
#                                               # (whole batch, then 2 parts), 1 x 1, 2 ranks x 1
#   STEPS=100 BATCH=64 bench/step_scaling.sh
#   DIT=target/release/dit bench/step_scaling.sh  # a dit built with --features mpi
#
# Prints steps/s of each run, the mean over its 10-step windows after the
# first (the first holds start-up and the initial broadcast).
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS="${STEPS:-60}"
BATCH="${BATCH:-32}"
# shellcheck source=bench/mpi_dit.sh
source bench/mpi_dit.sh
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
# f32 unless PRECISION says otherwise: the embedded default is bf16 on CPUs with
# AMX or AVX512-BF16, and docs/scaling.md's figures are f32.
common=(train --steps "$STEPS" --batch-size "$BATCH" --sample-every 0 --checkpoint-every 100000 --precision "${PRECISION:-f32}")

rate() {
  python3 - "$1" <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
rates = [r["steps_per_sec"] for r in rows[1:]]
print(f"{statistics.mean(rates):.2f} steps/s ({len(rates)} windows of 10 steps)")
PY
}

echo "# load average $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; global batch $BATCH, $STEPS steps"
RAYON_NUM_THREADS=2 "$DIT" "${common[@]}" --batch-split 1 --out "$tmp/r1t2" >/dev/null 2>&1
echo "1 rank, 2 threads, whole batch: $(rate "$tmp/r1t2/metrics.jsonl")"
RAYON_NUM_THREADS=2 "$DIT" "${common[@]}" --batch-split 2 --out "$tmp/r1p2" >/dev/null 2>&1
echo "1 rank, 2 parts x 1 thread:     $(rate "$tmp/r1p2/metrics.jsonl")"
RAYON_NUM_THREADS=1 "$DIT" "${common[@]}" --batch-split 1 --out "$tmp/r1t1" >/dev/null 2>&1
echo "1 rank, 1 thread:   $(rate "$tmp/r1t1/metrics.jsonl")"
mpirun -np 2 --oversubscribe -x RAYON_NUM_THREADS=1 "$DIT" "${common[@]}" --batch-split 1 --distributed --out "$tmp/r2t1" >/dev/null 2>&1
echo "2 ranks, 1 thread each: $(rate "$tmp/r2t1/metrics.jsonl")"
