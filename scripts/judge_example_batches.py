#!/usr/bin/env python3
"""Writes the example batches of docs/judge.md: 1,000 images each, in
`dit sample --npz`'s layout, image k of class k % 10 where classes apply.

    python3 scripts/judge_example_batches.py OUT_DIR
    python3 scripts/judge_fashion_mnist.py OUT_DIR/real_test.npz --class 0,1,2,3,4,5,6,7,8,9

real_test.npz       real test images (seeded draw, 100 per class)
blurred_test.npz    the same, 2x2 box-blurred (a mild degradation)
collapsed.npz       one real image per class, repeated 100 times (no diversity)
noise.npz           uniform noise (score it without --class)
"""

import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import judge_fashion_mnist as judge  # noqa: E402

N = 1000
SEED = 7


def save(path, gray):
    np.savez(path, arr_0=np.repeat(gray[..., None], 3, axis=3))
    print(f"wrote {path}")


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    images, labels = judge.load_split(judge.DEFAULT_DATA_DIR, "t10k")
    rng = np.random.default_rng(SEED)
    pools = [rng.permutation(np.nonzero(labels == k)[0]) for k in range(10)]
    real = images[np.array([pools[k % 10][k // 10] for k in range(N)])]
    save(os.path.join(out, "real_test.npz"), real)
    f = real.astype(np.float64)
    blurred = (f + np.roll(f, 1, 1) + np.roll(f, 1, 2) + np.roll(np.roll(f, 1, 1), 1, 2)) / 4
    save(os.path.join(out, "blurred_test.npz"), np.round(blurred).astype(np.uint8))
    save(os.path.join(out, "collapsed.npz"), real[np.arange(N) % 10])
    save(os.path.join(out, "noise.npz"), rng.integers(0, 256, size=(N, 32, 32), dtype=np.uint8))


if __name__ == "__main__":
    main()
