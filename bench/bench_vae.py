#!/usr/bin/env python3
"""The diffusers counterpart of examples/bench_vae.rs: AutoencoderKL with the
SD VAE's default configuration (random weights), decoding one 4×32×32
latent to 256×256, encoding one image, or one 128-channel 3×3 convolution
at 256² (--mode conv), f32 or under torch.autocast("cpu", torch.bfloat16).
Prints one JSON line.

Needs torch and diffusers (`pip install torch diffusers`; not installed by
scripts/test.sh, benchmarks only).
"""
import argparse
import json
import resource
import time

import torch
from diffusers import AutoencoderKL


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", choices=["decode", "encode", "conv"], default="decode")
    ap.add_argument("--precision", choices=["f32", "bf16"], default="f32")
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--iters", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model", default="SD-VAE")
    ap.add_argument("--batch", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4,
                        down_block_types=["DownEncoderBlock2D"] * 4,
                        up_block_types=["UpDecoderBlock2D"] * 4,
                        block_out_channels=[128, 256, 512, 512], layers_per_block=2,
                        norm_num_groups=32, sample_size=256).eval()
    latents = torch.randn(1, 4, 32, 32)
    # One of the decoder's widest 3x3 convolutions alone: 128 -> 128 channels at 256².
    conv = torch.nn.Conv2d(128, 128, 3, padding=1)
    activations = torch.randn(1, 128, 256, 256)
    images = torch.rand(1, 3, 256, 256) * 2 - 1

    def call():
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            if a.mode == "decode":
                vae.decode(latents)
            elif a.mode == "encode":
                vae.encode(images)
            else:
                conv(activations)

    for _ in range(a.warmup):
        call()
    times = []
    cpu0 = time.process_time()
    for _ in range(a.iters):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    print(json.dumps(dict(side="pytorch", model="SD-VAE", mode=a.mode, precision=a.precision,
                          median_ms=round(sorted(times)[len(times) // 2], 1),
                          cpu_ms=round((time.process_time() - cpu0) * 1e3 / a.iters, 1),
                          times_ms=[round(t, 1) for t in times],
                          peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
                          torch=torch.__version__, threads=torch.get_num_threads())))


if __name__ == "__main__":
    main()
