#!/usr/bin/env python3
"""Writes tests/fixtures/model/dit_{s8,b4}_bf16.safetensors: the reference DiT
of model_fixtures.py (same generated weights, same inputs as the *_io
fixtures) run in f32 and under PyTorch's CPU bf16 autocast, so that the
tests can hold `dit --precision bf16` against PyTorch's own bf16 and measure
PyTorch's bf16-vs-f32 spread on the same inputs.

Keys: x, t, y (the *_io inputs), out_f32, out_bf16 (autocast; cast back to
f32), and the same for a larger-token case (input 32, T = 16 for S/8, 64 for
B/4): x32, t32, y32, out32_f32, out32_bf16.

Run from the repo root:  python3 scripts/bf16_fixtures.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
import model_fixtures as mf  # noqa: E402


def outputs(model, x, t, y):
    with torch.no_grad():
        f32 = model(x, t, y)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            bf16 = model(x, t, y)
    return f32, bf16.float()


def main():
    torch.manual_seed(0)
    for size, patch in [("S", 8), ("B", 4)]:
        tensors = {}
        for input_size, key in [(16, ""), (32, "32")]:
            cfg = mf.preset(size, patch, input_size)
            model = mf.RefDiT(cfg)
            model.load_state_dict(mf.det_state_dict(model))
            x, t, y = mf.inputs(cfg, 2, 1)
            f32, bf16 = outputs(model, x, t, y)
            tensors.update({f"x{key}": x, f"t{key}": t, f"y{key}": y.to(torch.int64),
                            f"out{key}_f32": f32, f"out{key}_bf16": bf16})
            spread = ((bf16 - f32).norm() / f32.norm()).item()
            print(f"DiT-{size}/{patch} input {input_size}: PyTorch bf16 vs f32 rel-L2 {spread:.3e}")
        tag = f"dit_{size.lower()}{patch}"
        mf.save_tensors(os.path.join(mf.OUT, f"{tag}_bf16.safetensors"), tensors)


if __name__ == "__main__":
    main()
