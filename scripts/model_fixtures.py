#!/usr/bin/env python3
"""Writes the DiT parity fixtures in tests/fixtures/model/ (needs torch, diffusers).

An independent PyTorch DiT, written from the paper's description and using the
official state_dict key names, computes reference outputs and gradients.

Weights come from a counter-based generator (splitmix64 of a per-tensor seed)
that the Rust tests re-implement, so preset-sized models (DiT-S/8, DiT-B/4)
need no weight files in the repo. The tiny custom model is also saved in every
checkpoint format: a released-style .pt state dict, a train.py-style
dictionary, a safetensors file and a diffusers folder.

Run from the repo root:  python3 scripts/model_fixtures.py
"""
import argparse
import json
import math
import os
import shutil

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "model")

# ---------------------------------------------------------------- weights


def fnv1a64(text: str) -> int:
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def det_uniform(name: str, n: int, salt: int = 0) -> np.ndarray:
    """n values in [-1, 1): splitmix64 of (fnv1a(name) ^ salt) + (i+1)·golden."""
    with np.errstate(over="ignore"):
        seed = np.uint64(fnv1a64(name) ^ salt)
        i = np.arange(1, n + 1, dtype=np.uint64)
        z = seed + i * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    top24 = (z >> np.uint64(40)).astype(np.float64)
    return (top24 / float(1 << 23) - 1.0).astype(np.float32)


def det_scale(name: str, shape) -> float:
    if name.endswith("embedding_table.weight"):
        return 0.5
    if name.endswith(".weight"):
        return 1.0 / math.sqrt(int(np.prod(shape[1:])))
    return 0.1  # biases


def det_state_dict(model: nn.Module, salt: int = 0):
    sd = {}
    for name, p in model.state_dict().items():
        if name == "pos_embed":
            sd[name] = p.clone()
            continue
        v = det_uniform(name, p.numel(), salt) * det_scale(name, p.shape)
        sd[name] = torch.from_numpy(v).reshape(p.shape).clone()
    return sd


# ---------------------------------------------------------------- reference model


def sincos_2d(dim, grid):
    quarter = dim // 4
    omega = 1.0 / 10000 ** (np.arange(quarter, dtype=np.float64) / quarter)
    rows, cols = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")

    def enc(pos):
        a = pos.reshape(-1)[:, None].astype(np.float64) * omega[None]
        return np.concatenate([np.sin(a), np.cos(a)], axis=1)

    return np.concatenate([enc(cols), enc(rows)], axis=1)[None].astype(np.float32)


def modulated_ln(x, shift, scale):
    x = F.layer_norm(x, x.shape[-1:], eps=1e-6)
    return x * (1 + scale[:, None]) + shift[:, None]


class Attn(nn.Module):
    def __init__(s, d, heads):
        super().__init__()
        s.heads = heads
        s.qkv = nn.Linear(d, 3 * d)
        s.proj = nn.Linear(d, d)

    def forward(s, x):
        n, t, d = x.shape
        hd = d // s.heads
        q, k, v = s.qkv(x).view(n, t, 3, s.heads, hd).permute(2, 0, 3, 1, 4)
        a = torch.softmax((q * hd**-0.5) @ k.transpose(-1, -2), dim=-1)
        return s.proj((a @ v).transpose(1, 2).reshape(n, t, d))


class Mlp(nn.Module):
    def __init__(s, d, hidden):
        super().__init__()
        s.fc1 = nn.Linear(d, hidden)
        s.fc2 = nn.Linear(hidden, d)

    def forward(s, x):
        return s.fc2(F.gelu(s.fc1(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(s, d, heads, mlp_ratio):
        super().__init__()
        s.attn = Attn(d, heads)
        s.mlp = Mlp(d, int(d * mlp_ratio))
        s.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 6 * d))

    def forward(s, x, c):
        sh1, sc1, g1, sh2, sc2, g2 = s.adaLN_modulation(c).chunk(6, dim=1)
        x = x + g1[:, None] * s.attn(modulated_ln(x, sh1, sc1))
        return x + g2[:, None] * s.mlp(modulated_ln(x, sh2, sc2))


class Final(nn.Module):
    def __init__(s, d, p, c_out):
        super().__init__()
        s.linear = nn.Linear(d, p * p * c_out)
        s.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(d, 2 * d))

    def forward(s, x, c):
        sh, sc = s.adaLN_modulation(c).chunk(2, dim=1)
        return s.linear(modulated_ln(x, sh, sc))


class Holder(nn.Module):
    pass


class RefDiT(nn.Module):
    def __init__(s, cfg):
        super().__init__()
        s.cfg = cfg
        d, p, c = cfg["hidden_size"], cfg["patch_size"], cfg["in_channels"]
        s.c_out = 2 * c if cfg["learn_sigma"] else c
        s.x_embedder = Holder()
        s.x_embedder.proj = nn.Conv2d(c, d, p, p)
        s.t_embedder = Holder()
        s.t_embedder.mlp = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        s.y_embedder = Holder()
        rows = cfg["num_classes"] + (1 if cfg["class_dropout_prob"] > 0 else 0)
        s.y_embedder.embedding_table = nn.Embedding(rows, d)
        grid = cfg["input_size"] // p
        s.pos_embed = nn.Parameter(torch.from_numpy(sincos_2d(d, grid)), requires_grad=False)
        s.blocks = nn.ModuleList(
            [Block(d, cfg["num_heads"], cfg["mlp_ratio"]) for _ in range(cfg["depth"])]
        )
        s.final_layer = Final(d, p, s.c_out)

    def t_features(s, t):
        half = 128
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        a = t[:, None].float() * freqs[None]
        return torch.cat([torch.cos(a), torch.sin(a)], dim=1)

    def forward(s, x, t, y):
        p, c = s.cfg["patch_size"], s.c_out
        h = s.x_embedder.proj(x).flatten(2).transpose(1, 2) + s.pos_embed
        cond = s.t_embedder.mlp(s.t_features(t)) + s.y_embedder.embedding_table(y)
        for b in s.blocks:
            h = b(h, cond)
        h = s.final_layer(h, cond)
        n, g = h.shape[0], s.cfg["input_size"] // p
        h = h.reshape(n, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return h.reshape(n, c, g * p, g * p)

    def forward_with_cfg(s, x, t, y, scale, channels):
        half = x[: len(x) // 2]
        out = s.forward(torch.cat([half, half]), t, y)
        eps, rest = out[:, :channels], out[:, channels:]
        cond, uncond = eps.chunk(2)
        mixed = uncond + scale * (cond - uncond)
        return torch.cat([torch.cat([mixed, mixed]), rest], dim=1)


# ---------------------------------------------------------------- fixtures

PRESETS = {"S": (12, 384, 6), "B": (12, 768, 12), "L": (24, 1024, 16), "XL": (28, 1152, 16)}


def preset(size, patch, input_size):
    depth, d, heads = PRESETS[size]
    return dict(input_size=input_size, patch_size=patch, in_channels=4, hidden_size=d, depth=depth,
                num_heads=heads, mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=1000, learn_sigma=True)


TINY = dict(input_size=8, patch_size=2, in_channels=4, hidden_size=64, depth=2, num_heads=2,
            mlp_ratio=4.0, class_dropout_prob=0.1, num_classes=10, learn_sigma=True)


def inputs(cfg, n, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cfg["in_channels"], cfg["input_size"], cfg["input_size"], generator=g)
    t = torch.tensor([999.0, 0.0, 37.5, 500.0][:n])
    y = torch.tensor([3, cfg["num_classes"], 7, 1][:n])  # includes the null class
    return x, t, y


def cfg_inputs(cfg, n, seed):
    x, t, _ = inputs(cfg, 2 * n, seed)
    t = torch.cat([t[:n], t[:n]])
    y = torch.cat([torch.tensor([2, 5, 1][:n]), torch.full((n,), cfg["num_classes"])])
    return x, t, y


def reference_outputs(model, cfg, tag):
    out = {}
    x, t, y = inputs(cfg, 2, 1)
    with torch.no_grad():
        out["x"], out["t"], out["y"] = x, t, y.to(torch.int64)
        out["out"] = model(x, t, y)
        xc, tc, yc = cfg_inputs(cfg, 2, 2)
        out["cfg_x"], out["cfg_t"], out["cfg_y"] = xc, tc, yc
        out["cfg_out_official"] = model.forward_with_cfg(xc, tc, yc, 4.0, min(3, cfg["in_channels"]))
        out["cfg_out_all"] = model.forward_with_cfg(xc, tc, yc, 4.0, cfg["in_channels"])
    print(f"{tag}: |out| mean {out['out'].abs().mean():.4f}")
    return out


def save_tensors(path, tensors, cfg=None):
    tensors = {k: v.contiguous() for k, v in tensors.items()}
    meta = {"config": json.dumps(cfg)} if cfg else None
    save_file(tensors, path, metadata=meta)


def to_diffusers(sd, cfg):
    """Official names → diffusers DiTTransformer2DModel names."""
    out = {}
    depth = cfg["depth"]
    d = cfg["hidden_size"]
    out["pos_embed.proj.weight"] = sd["x_embedder.proj.weight"]
    out["pos_embed.proj.bias"] = sd["x_embedder.proj.bias"]
    for i in range(depth):
        b, o = f"transformer_blocks.{i}.", f"blocks.{i}."
        for w in ("weight", "bias"):
            out[b + f"norm1.emb.timestep_embedder.linear_1.{w}"] = sd[f"t_embedder.mlp.0.{w}"]
            out[b + f"norm1.emb.timestep_embedder.linear_2.{w}"] = sd[f"t_embedder.mlp.2.{w}"]
            out[b + f"norm1.linear.{w}"] = sd[o + f"adaLN_modulation.1.{w}"]
            q, k, v = sd[o + f"attn.qkv.{w}"].split(d)
            out[b + f"attn1.to_q.{w}"], out[b + f"attn1.to_k.{w}"], out[b + f"attn1.to_v.{w}"] = q, k, v
            out[b + f"attn1.to_out.0.{w}"] = sd[o + f"attn.proj.{w}"]
            out[b + f"ff.net.0.proj.{w}"] = sd[o + f"mlp.fc1.{w}"]
            out[b + f"ff.net.2.{w}"] = sd[o + f"mlp.fc2.{w}"]
        out[b + "norm1.emb.class_embedder.embedding_table.weight"] = sd["y_embedder.embedding_table.weight"]
    for w in ("weight", "bias"):
        out[f"proj_out_1.{w}"] = sd[f"final_layer.adaLN_modulation.1.{w}"]
        out[f"proj_out_2.{w}"] = sd[f"final_layer.linear.{w}"]
    return out


def write_diffusers(sd, cfg, folder):
    from diffusers import DiTTransformer2DModel

    model = DiTTransformer2DModel(
        num_attention_heads=cfg["num_heads"], attention_head_dim=cfg["hidden_size"] // cfg["num_heads"],
        in_channels=cfg["in_channels"], out_channels=2 * cfg["in_channels"], num_layers=cfg["depth"],
        sample_size=cfg["input_size"], patch_size=cfg["patch_size"], num_embeds_ada_norm=cfg["num_classes"])
    missing, unexpected = model.load_state_dict(to_diffusers(sd, cfg), strict=False)
    # diffusers keeps the sin-cos table as a non-persistent buffer.
    assert not unexpected and all("pos_embed.pos_embed" in k for k in missing), (missing, unexpected)
    if os.path.exists(folder):
        shutil.rmtree(folder)
    model.save_pretrained(os.path.join(folder, "transformer"))


def gradients(model, cfg):
    """Gradients of sum(out · R) for a fixed R, float32."""
    x, t, y = inputs(cfg, 2, 1)
    r = torch.from_numpy(det_uniform("loss-weights", 2 * model.c_out * cfg["input_size"] ** 2)).reshape(
        2, model.c_out, cfg["input_size"], cfg["input_size"])
    model.zero_grad()
    loss = (model(x, t, y) * r).sum()
    loss.backward()
    grads = {f"grad.{n}": p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    grads["loss"] = loss.detach().reshape(1)
    return grads


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)

    # Parameter counts of all 12 presets at 256x256 (latent 32), counted by the reference.
    counts = {}
    for size in PRESETS:
        for patch in (2, 4, 8):
            with torch.device("meta"):
                m = RefDiT(preset(size, patch, 32))
            total = sum(p.numel() for p in m.parameters())
            trainable = sum(p.numel() for p in m.parameters() if p.requires_grad)
            counts[f"DiT-{size}/{patch}"] = {"total": total, "trainable": trainable}
    with open(os.path.join(args.out, "param_counts.json"), "w") as f:
        json.dump(counts, f, indent=1)
    print(counts["DiT-XL/2"])

    # Preset-sized models: weights regenerated by the tests; store I/O only.
    for size, patch, input_size in [("S", 8, 16), ("B", 4, 16)]:
        cfg = preset(size, patch, input_size)
        model = RefDiT(cfg)
        model.load_state_dict(det_state_dict(model))
        tag = f"dit_{size.lower()}{patch}"
        save_tensors(os.path.join(args.out, f"{tag}_io.safetensors"), reference_outputs(model, cfg, tag), cfg)

    # The tiny custom model in every checkpoint format.
    cfg = TINY
    model = RefDiT(cfg)
    sd = det_state_dict(model)
    ema = det_state_dict(model, salt=0xE11A)
    model.load_state_dict(sd)
    io = reference_outputs(model, cfg, "tiny")
    io.update(gradients(model, cfg))
    model.load_state_dict(ema)
    with torch.no_grad():
        io["ema_out"] = model(io["x"], io["t"], io["y"])
    save_tensors(os.path.join(args.out, "tiny_io.safetensors"), io, cfg)

    torch.save(sd, os.path.join(args.out, "tiny_state_dict.pt"))
    opt_model = nn.Linear(2, 2)
    opt = torch.optim.AdamW(opt_model.parameters(), lr=1e-4)
    opt_model(torch.ones(1, 2)).sum().backward()
    opt.step()
    train_args = argparse.Namespace(model="DiT-custom", image_size=16, num_classes=10, epochs=1, global_seed=0)
    torch.save({"model": sd, "ema": ema, "opt": opt.state_dict(), "args": train_args},
               os.path.join(args.out, "tiny_train.pt"))
    save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(args.out, "tiny_plain.safetensors"))
    write_diffusers(sd, cfg, os.path.join(args.out, "tiny_diffusers"))

    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(args.out) for f in fs)
    print(f"fixtures: {total / 2**20:.2f} MiB in {args.out}")


if __name__ == "__main__":
    main()
