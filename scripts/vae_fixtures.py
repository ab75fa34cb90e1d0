#!/usr/bin/env python3
"""Writes the VAE parity fixtures in tests/fixtures/vae/ (needs torch, diffusers).

diffusers' own AutoencoderKL is the reference. Weights come from the
counter-based generator shared with the model fixtures (splitmix64 of
fnv1a64(name)), re-implemented by the Rust tests, so the full sd-vae-ft-mse
configuration (83M parameters) needs no weight file in the repo:

  tiny/              diffusers folder (config.json + f32 safetensors) of a
                     2-level, 16/32-wide VAE; weights rounded to f16 values
  tiny_old_names/    the same weights as f16 under the pre-0.14 attention
                     names (query/key/value/proj_attn)
  tiny_io.safetensors  images → posterior mean/logvar, latents → decoded
  full_io.safetensors  the same for the default (sd-vae-ft-mse) config at 64×64

It also times a 256×256 encode and decode of the full model on 2 threads.
Run from the repo root:  python3 scripts/vae_fixtures.py
"""
import json
import math
import os
import shutil
import time

import numpy as np
import torch
from diffusers import AutoencoderKL
from safetensors.torch import save_file

# The weight generator the Rust tests re-implement (tests/common/mod.rs).
from model_fixtures import det_uniform

OUT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "vae"))

SD_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    block_out_channels=(128, 256, 512, 512),
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    layers_per_block=2,
    norm_num_groups=32,
    act_fn="silu",
    sample_size=256,
)

TINY_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    block_out_channels=(16, 32),
    down_block_types=("DownEncoderBlock2D",) * 2,
    up_block_types=("UpDecoderBlock2D",) * 2,
    layers_per_block=1,
    norm_num_groups=4,
    act_fn="silu",
    sample_size=32,
)

OLD_ATTENTION_NAMES = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}


def det_tensor(name, shape, scale=1.0):
    n = int(np.prod(shape))
    return torch.from_numpy(det_uniform(name, n) * np.float32(scale)).reshape(shape)


def det_state_dict(model):
    """GroupNorm weights 1 + 0.1·u, other weights u/√fan_in, biases 0.1·u."""
    norms = {n for n, m in model.named_modules() if isinstance(m, torch.nn.GroupNorm)}
    sd = {}
    for name, p in model.state_dict().items():
        u = det_uniform(name, p.numel()).astype(np.float64)
        module, kind = name.rsplit(".", 1)
        if kind == "weight" and module in norms:
            v = 1.0 + 0.1 * u
        elif kind == "weight":
            v = u / math.sqrt(int(np.prod(p.shape[1:])))
        else:
            v = 0.1 * u
        sd[name] = torch.from_numpy(v.astype(np.float32)).reshape(p.shape)
    return sd


def build(config, f16_values=False):
    model = AutoencoderKL(**config).eval()
    sd = det_state_dict(model)
    if f16_values:
        sd = {k: v.half().float() for k, v in sd.items()}
    model.load_state_dict(sd)
    return model


@torch.inference_mode()
def reference_io(model, tag, images_shape, latents_shape):
    images = det_tensor(f"{tag}.images", images_shape)
    latents = det_tensor(f"{tag}.latents", latents_shape, 3.0)
    dist = model.encode(images).latent_dist
    decoded = model.decode(latents).sample
    return {
        "images": images,
        "mean": dist.mean.contiguous(),
        "logvar": dist.logvar.contiguous(),
        "latents": latents,
        "decoded": decoded.contiguous(),
    }


def write_tiny():
    model = build(TINY_CONFIG, f16_values=True)
    folder = os.path.join(OUT, "tiny")
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder, safe_serialization=True)

    old = os.path.join(OUT, "tiny_old_names")
    shutil.rmtree(old, ignore_errors=True)
    os.makedirs(old)
    shutil.copy(os.path.join(folder, "config.json"), old)
    renamed = {}
    for name, t in model.state_dict().items():
        for new, legacy in OLD_ATTENTION_NAMES.items():
            name = name.replace(f".{new}.", f".{legacy}.")
        renamed[name] = t.half().contiguous()
    assert any(".query." in k for k in renamed)
    save_file(renamed, os.path.join(old, "diffusion_pytorch_model.safetensors"), {"format": "pt"})

    io = reference_io(model, "tiny", (2, 3, 32, 32), (2, 4, 16, 16))
    # diffusers itself must read the old names back to the same network.
    reloaded = AutoencoderKL.from_pretrained(old, torch_dtype=torch.float32).eval()
    with torch.inference_mode():
        again = reloaded.decode(io["latents"]).sample
    assert torch.equal(again, io["decoded"]), "diffusers disagrees on the old-name file"
    save_file(io, os.path.join(OUT, "tiny_io.safetensors"))


def write_full():
    model = build(SD_CONFIG)
    io = reference_io(model, "full", (1, 3, 64, 64), (1, 4, 8, 8))
    save_file(io, os.path.join(OUT, "full_io.safetensors"))
    for k, v in io.items():
        print(f"full {k}: shape {tuple(v.shape)}, std {v.std().item():.4f}")
    return model


@torch.inference_mode()
def time_256(model, repeats=3):
    torch.set_num_threads(2)
    images = det_tensor("timing.images", (1, 3, 256, 256))
    latents = det_tensor("timing.latents", (1, 4, 32, 32), 3.0)
    for what, fn in [
        ("encode", lambda: model.encode(images).latent_dist.mean),
        ("decode", lambda: model.decode(latents).sample),
    ]:
        fn()
        best = math.inf
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            best = min(best, time.perf_counter() - start)
        print(f"diffusers 256x256 {what}, 2 threads: {best:.3f} s (best of {repeats})")


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    write_tiny()
    model = write_full()
    time_256(model)
    total = sum(
        os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(OUT) for f in fs
    )
    print(f"fixtures: {total / 2**20:.2f} MiB in {OUT}")


if __name__ == "__main__":
    main()
