#!/usr/bin/env python3
"""One PyTorch benchmark case in its own process, the counterpart of
examples/bench_dit.rs: the independent reference DiT of
scripts/model_fixtures.py with its attention switched to
scaled_dot_product_attention, the same diffusion loss (ε-MSE + L_vb, the
formulas of src/diffusion/loss.rs) and fused AdamW, as a user would run it.

Prints one JSON line: median ms per step and peak RSS.
"""
import argparse
import json
import os
import resource
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
import model_fixtures as mf  # noqa: E402
from torch_diffusion import Diffusion  # noqa: E402


def sdpa_attention(s, x):
    n, t, d = x.shape
    q, k, v = s.qkv(x).view(n, t, 3, s.heads, d // s.heads).permute(2, 0, 3, 1, 4)
    return s.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, t, d))


mf.Attn.forward = sdpa_attention


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="DiT-S/2")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--mode", choices=["forward", "train"], default="forward")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=["f32", "bf16"], default="f32",
                    help="bf16: torch.autocast('cpu', torch.bfloat16) around the forward and "
                         "loss, f32 master weights and fused AdamW, as a PyTorch user runs it")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    size, patch = a.model.split("-")[1].split("/")
    model = mf.RefDiT(mf.preset(size, int(patch), 32))
    n = a.batch
    x = torch.randn(n, 4, 32, 32)
    noise = torch.randn(n, 4, 32, 32)
    t = torch.tensor([(i * 997 + 13) % 1000 for i in range(n)])
    y = torch.tensor([(i * 131) % 1000 for i in range(n)])
    diffusion = Diffusion()
    optimizer = None
    if a.mode == "train":
        params = [p for p in model.parameters() if p.requires_grad]
        try:
            optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0, fused=True)
            opt_kind = "fused"
        except (RuntimeError, TypeError):
            optimizer = torch.optim.AdamW(params, lr=1e-4, weight_decay=0, foreach=True)
            opt_kind = "foreach"

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16")

    def step():
        if optimizer is None:
            with torch.no_grad(), autocast():
                model(x, t.float(), y)
        else:
            optimizer.zero_grad(set_to_none=True)
            with autocast():
                loss = diffusion.loss(model, x, t, y, noise)
            loss.backward()
            optimizer.step()

    for _ in range(a.warmup):
        step()
    times = []
    cpu0 = time.process_time()
    for _ in range(a.iters):
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    rec = dict(side="pytorch", model=a.model, batch=n, mode=a.mode, precision=a.precision,
               median_ms=round(sorted(times)[len(times) // 2], 1),
               cpu_ms=round((time.process_time() - cpu0) * 1e3 / a.iters, 1),
               times_ms=[round(x, 1) for x in times],
               peak_rss_mib=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
               torch=torch.__version__, threads=torch.get_num_threads())
    if optimizer is not None:
        rec["adamw"] = opt_kind
    print(json.dumps(rec))


if __name__ == "__main__":
    main()
