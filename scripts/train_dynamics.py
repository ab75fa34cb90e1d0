#!/usr/bin/env python3
"""Training dynamics against PyTorch: trains the same tiny DiT with the same
hyper-parameters on the embedded Fashion-MNIST slice in PyTorch and with
`dit train`, and compares the mean loss over the last 10% of steps.

The PyTorch side uses the independent reference model of model_fixtures.py,
the paper's initialisation, and the DiT diffusion loss (MSE on ε plus the
variational bound with learned-range variance) written here from the
formulas. Seeds cannot be shared across frameworks, so the two runs see
different batches, timesteps and noise; the comparison is statistical.

    cargo build --release && python3 scripts/train_dynamics.py [--steps 2000 --seeds 0,1]
    python3 scripts/train_dynamics.py --steps 2000 --seeds 0,1 --precisions f32,bf16

With --precisions f32,bf16 each side also trains in bf16 (PyTorch under
torch.autocast("cpu", torch.bfloat16), dit with --precision bf16), and the
bf16 tails are compared with the f32 ones.
"""
import argparse
import gzip
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from model_fixtures import RefDiT  # noqa: E402
from torch_diffusion import Diffusion  # noqa: E402

ROOT = os.path.join(os.path.dirname(__file__), "..")


def read_idx(path):
    data = gzip.open(path).read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_fashion():
    folder = os.path.join(ROOT, "assets", "fashion-mnist")
    files = sorted(os.listdir(folder))
    images = read_idx(os.path.join(folder, next(f for f in files if "images" in f)))
    labels = read_idx(os.path.join(folder, next(f for f in files if "labels" in f)))
    x = np.full((len(images), 1, 32, 32), 0, np.uint8)
    x[:, 0, 2:30, 2:30] = images
    return torch.from_numpy(x.astype(np.float32) / 127.5 - 1.0), torch.from_numpy(labels.astype(np.int64))


def paper_init(model):
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            nn.init.zeros_(m.bias)
    w = model.x_embedder.proj.weight.data
    nn.init.xavier_uniform_(w.view(w.shape[0], -1))
    nn.init.zeros_(model.x_embedder.proj.bias)
    nn.init.normal_(model.y_embedder.embedding_table.weight, std=0.02)
    nn.init.normal_(model.t_embedder.mlp[0].weight, std=0.02)
    nn.init.normal_(model.t_embedder.mlp[2].weight, std=0.02)
    for b in model.blocks:
        nn.init.zeros_(b.adaLN_modulation[-1].weight)
        nn.init.zeros_(b.adaLN_modulation[-1].bias)
    for layer in (model.final_layer.adaLN_modulation[-1], model.final_layer.linear):
        nn.init.zeros_(layer.weight)
        nn.init.zeros_(layer.bias)


def fixed_eval_loss(model, diffusion, x, labels, n=1024, seed=1234):
    """Loss of a model on one fixed batch: same images, labels, timesteps
    (an even grid over [0, T)) and noise for every model scored."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(x), generator=g)[:n]
    t = torch.arange(n) * diffusion.T // n
    torch.manual_seed(seed)
    with torch.no_grad():
        return diffusion.loss(model, x[idx], t, labels[idx], torch.randn_like(x[idx])).item()


def load_dit_checkpoint(path, cfg):
    from safetensors.torch import load_file

    weights = {k[len("model."):]: v for k, v in load_file(path).items() if k.startswith("model.")}
    model = RefDiT(cfg)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    assert missing == ["pos_embed"] and not unexpected, (missing, unexpected)
    return model


def train_torch(args, cfg, x, labels, precision):
    torch.manual_seed(args.seed)
    model = RefDiT(cfg)
    paper_init(model)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.lr,
                            betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0)
    diffusion = Diffusion()
    losses, order, pos = [], torch.randperm(len(x)), 0
    for step in range(args.steps):
        if pos + args.batch_size > len(x):
            order, pos = torch.randperm(len(x)), 0
        idx = order[pos:pos + args.batch_size]
        pos += args.batch_size
        xb, yb = x[idx].clone(), labels[idx].clone()
        flip = torch.rand(len(idx)) < 0.5
        xb[flip] = xb[flip].flip(-1)
        yb = torch.where(torch.rand(len(idx)) < 0.1, torch.full_like(yb, 10), yb)
        t = torch.randint(0, 1000, (len(idx),))
        for group in opt.param_groups:
            group["lr"] = args.lr * min(1.0, (step + 1) / args.warmup) if args.warmup else args.lr
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = diffusion.loss(model, xb, t, yb, torch.randn_like(xb))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        losses.append(loss.item())
    return losses, model


def tail_stats(losses):
    """Mean of the last 10% of the losses (per step, or per block of 10
    steps) and its standard error (successive steps see independent
    batches, timesteps and noise)."""
    tail = np.asarray(losses[-max(1, len(losses) // 10):], dtype=np.float64)
    return float(tail.mean()), float(tail.std(ddof=1) / math.sqrt(len(tail))) if len(tail) > 1 else 0.0


def train_dit(args, seed, out, precision):
    cmd = [args.dit, "train", "--depth", "2", "--hidden-size", "128", "--num-heads", "2", "--patch-size", "4",
           "--steps", str(args.steps), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
           "--warmup-steps", str(args.warmup), "--grad-clip", str(args.grad_clip), "--seed", str(seed),
           "--sample-every", "0", "--checkpoint-every", str(args.steps), "--out", out,
           "--precision", precision,
           # The PyTorch side trains DiT's diffusion at a constant lr after the
           # warm-up: name both, since the embedded run's defaults are SiT and cosine.
           "--objective", "ddpm", "--lr-schedule", "constant"]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    ckpt = re.search(r"checkpoint (\S+\.safetensors)", result.stdout).group(1)
    # metrics.jsonl holds the mean loss of each block of 10 steps (at these
    # run lengths), so the last 10% of blocks are the last 10% of steps.
    with open(os.path.join(out, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f if line.strip()]
    assert args.steps % 100 == 0 and [r["step"] for r in rows] == list(range(10, args.steps + 1, 10)), \
        "use a multiple of 100 steps, at most 20000"
    losses = [r["loss"] for r in rows]
    printed = float(re.search(r"final loss ([0-9.]+)", result.stdout).group(1))
    assert abs(printed - tail_stats(losses)[0]) < 1e-4, (printed, tail_stats(losses))
    return losses, ckpt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--grad-clip", type=float, default=1.0)
    ap.add_argument("--seeds", default="0", help="comma-separated; each side trains once per seed")
    ap.add_argument("--dit", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target")),
                                                  "release", "dit"))
    ap.add_argument("--precisions", default="f32", help="comma-separated: f32, bf16")
    args = ap.parse_args()
    torch.set_num_threads(2)
    cfg = dict(input_size=32, patch_size=4, in_channels=1, hidden_size=128, depth=2, num_heads=2,
               mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=10, learn_sigma=True)
    x, labels = load_fashion()
    diffusion = Diffusion()
    seeds = [int(s) for s in args.seeds.split(",")]
    tail = max(1, args.steps // 10)
    print(f"config: depth 2, hidden 128, 2 heads, patch 4 on 1x32x32 Fashion-MNIST; {args.steps} steps, "
          f"batch {args.batch_size}, lr {args.lr}, warm-up {args.warmup}, grad clip {args.grad_clip}; "
          f"tail = last {tail} steps; 2 threads each", flush=True)
    precisions = args.precisions.split(",")
    sides = [(who, p) for p in precisions for who in ("PyTorch", "dit")]
    rows = {side: [] for side in sides}
    for seed in seeds:
        args.seed = seed
        for who, precision in sides:
            start = time.time()
            if who == "PyTorch":
                losses, model = train_torch(args, cfg, x, labels, precision)
            else:
                with tempfile.TemporaryDirectory() as out:
                    losses, ckpt = train_dit(args, seed, os.path.join(out, "run"), precision)
                    model = load_dit_checkpoint(ckpt, cfg)
            rows[(who, precision)].append((seed, *tail_stats(losses),
                                           fixed_eval_loss(model, diffusion, x, labels), time.time() - start))
            s, mean, se, ev, secs = rows[(who, precision)][-1]
            print(f"  seed {s} {who:8} {precision:5} tail {mean:.4f} ± {se:.4f} (SE), "
                  f"fixed-batch eval {ev:.4f}, {secs:.0f} s", flush=True)
    summary = {}
    for side, r in rows.items():
        means = np.array([row[1] for row in r])
        ses = np.array([row[2] for row in r])
        summary[side] = (means.mean(), math.sqrt((ses ** 2).sum()) / len(r), np.mean([row[3] for row in r]))

    def compare(a, b):
        (am, ase, aev), (bm, bse, bev) = summary[a], summary[b]
        diff = (bm - am) / am * 100
        diff_se = math.sqrt(ase ** 2 + bse ** 2) / am * 100
        name = lambda side: f"{side[0]} {side[1]}"  # noqa: E731
        print(f"{name(b)} vs {name(a)}: tail {bm:.4f} ± {bse:.4f} vs {am:.4f} ± {ase:.4f}, "
              f"relative difference {diff:+.1f}% ± {diff_se:.1f}% (SE); fixed evaluation batch "
              f"{bev:.4f} vs {aev:.4f} ({(bev - aev) / aev * 100:+.1f}%)")

    print(f"mean over {len(seeds)} seed(s); fixed evaluation batch: 1024 images, t on an even grid, "
          f"same noise, PyTorch loss function")
    for p in precisions:
        compare(("PyTorch", p), ("dit", p))
    for who in ("dit", "PyTorch"):
        for p in precisions[1:]:
            compare((who, precisions[0]), (who, p))


if __name__ == "__main__":
    main()
