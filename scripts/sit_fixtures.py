#!/usr/bin/env python3
"""A tiny SiT checkpoint in the official release's layout, for the loader tests.

The released SiT-XL-2-256x256.pt (willisma/SiT) is a torch.save'd state dict
of the same transformer as DiT: the keys below, with pos_embed stored and
learn_sigma's doubled output. Weights here are random (seeded); only the
layout matters: `dit info --objective sit` must name it a SiT model and
`dit sample --objective sit` must sample it.

    python3 scripts/sit_fixtures.py   # writes tests/fixtures/model/tiny_sit.pt
"""
import os

import torch

DEPTH, HIDDEN, PATCH, CHANNELS, INPUT, CLASSES = 2, 64, 2, 4, 8, 10
OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "model", "tiny_sit.pt")


def linear(state, name, fan_in, fan_out, g):
    state[f"{name}.weight"] = torch.randn(fan_out, fan_in, generator=g) / fan_in**0.5
    state[f"{name}.bias"] = torch.randn(fan_out, generator=g) * 0.02


def main():
    g = torch.Generator().manual_seed(0)
    state = {}
    state["x_embedder.proj.weight"] = torch.randn(HIDDEN, CHANNELS, PATCH, PATCH, generator=g) * 0.1
    state["x_embedder.proj.bias"] = torch.zeros(HIDDEN)
    linear(state, "t_embedder.mlp.0", 256, HIDDEN, g)
    linear(state, "t_embedder.mlp.2", HIDDEN, HIDDEN, g)
    # One row per class and the null class of classifier-free guidance.
    state["y_embedder.embedding_table.weight"] = torch.randn(CLASSES + 1, HIDDEN, generator=g) * 0.02
    tokens = (INPUT // PATCH) ** 2
    state["pos_embed"] = torch.zeros(1, tokens, HIDDEN)
    for i in range(DEPTH):
        b = f"blocks.{i}"
        linear(state, f"{b}.attn.qkv", HIDDEN, 3 * HIDDEN, g)
        linear(state, f"{b}.attn.proj", HIDDEN, HIDDEN, g)
        linear(state, f"{b}.mlp.fc1", HIDDEN, 4 * HIDDEN, g)
        linear(state, f"{b}.mlp.fc2", 4 * HIDDEN, HIDDEN, g)
        linear(state, f"{b}.adaLN_modulation.1", HIDDEN, 6 * HIDDEN, g)
    linear(state, "final_layer.linear", HIDDEN, PATCH * PATCH * 2 * CHANNELS, g)
    linear(state, "final_layer.adaLN_modulation.1", HIDDEN, 2 * HIDDEN, g)
    torch.save(state, OUT)
    print(f"wrote {OUT} ({len(state)} tensors)")


if __name__ == "__main__":
    main()
