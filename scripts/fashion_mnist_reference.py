#!/usr/bin/env python3
"""Writes the 10,000 Fashion-MNIST test images as a `dit eval` reference batch:
an .npz with arr_0 uint8 (N, 32, 32, 3) — padded 28→32 with background as dit
pads its training data, grey repeated to RGB as `dit sample --npz` writes —
and their labels.

    python3 scripts/fashion_mnist_reference.py .cache/fashion-mnist-test.npz

Needs numpy and Debian's dataset-fashion-mnist (scripts/install-judge-deps.sh).
"""
import gzip
import sys

import numpy as np

DATA = "/usr/share/datasets/fashion-mnist"


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else ".cache/fashion-mnist-test.npz"
    images = idx(f"{DATA}/t10k-images-idx3-ubyte.gz")
    labels = idx(f"{DATA}/t10k-labels-idx1-ubyte.gz").astype(np.uint32)
    padded = np.zeros((len(images), 32, 32), np.uint8)
    padded[:, 2:30, 2:30] = images
    np.savez(out, arr_0=np.repeat(padded[..., None], 3, axis=3), labels=labels)
    print(f"wrote {out}: {len(images)} images")


if __name__ == "__main__":
    main()
