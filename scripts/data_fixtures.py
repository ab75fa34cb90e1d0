#!/usr/bin/env python3
"""Makes the data pipeline's committed files (deterministic; rerun to check).

    python3 scripts/data_fixtures.py fixtures        # tests/fixtures/data/
    python3 scripts/data_fixtures.py fashion-mnist   # assets/fashion-mnist/

`fixtures` needs Pillow, numpy and scikit-image (`pip install scikit-image`,
for its sample photos astronaut.png and coffee.png). It crops those photos
small enough to commit, runs the ADM/DiT `center_crop_arr` preprocessing with
Pillow on them and on synthetic images that the Rust test rebuilds from the
same formula, and stores the uint8 results as PNG with a manifest.

`fashion-mnist` needs the Debian package dataset-fashion-mnist
(`apt-get install -y dataset-fashion-mnist`). It takes the first 600 training
images of each class, in training-set order, and writes them as gzipped IDX.
"""
import gzip
import json
import os
import struct
import sys

import numpy as np
import PIL
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "data")
ASSETS = os.path.join(ROOT, "assets", "fashion-mnist")
DEBIAN_FMNIST = "/usr/share/datasets/fashion-mnist"
PER_CLASS = 600


def center_crop_arr(pil_image, image_size):
    """The preprocessing of ADM and DiT's train.py, restated."""
    while min(*pil_image.size) >= 2 * image_size:
        half = tuple(x // 2 for x in pil_image.size)
        pil_image = pil_image.resize(half, resample=Image.BOX)
    scale = image_size / min(*pil_image.size)
    new_size = tuple(round(x * scale) for x in pil_image.size)
    pil_image = pil_image.resize(new_size, resample=Image.BICUBIC)
    arr = np.array(pil_image)
    crop_y = (arr.shape[0] - image_size) // 2
    crop_x = (arr.shape[1] - image_size) // 2
    return arr[crop_y : crop_y + image_size, crop_x : crop_x + image_size]


def synthetic(width, height):
    """Mixes smooth ramps with hard XOR texture so clamping and rounding show.

    The Rust test (tests/data_preprocess.rs) computes the same formula.
    """
    x = np.arange(width, dtype=np.int64)[None, :, None]
    y = np.arange(height, dtype=np.int64)[:, None, None]
    c = np.arange(3, dtype=np.int64)[None, None, :]
    v = ((x * 7 + y * 13 + c * 50) ^ ((x * y * 3) >> 4)) & 255
    return Image.fromarray(v.astype(np.uint8), "RGB")


def make_fixtures():
    from skimage import data as skdata

    os.makedirs(FIXTURES, exist_ok=True)
    skdir = os.path.dirname(skdata.__file__)
    astronaut = Image.open(os.path.join(skdir, "astronaut.png")).convert("RGB")
    coffee = Image.open(os.path.join(skdir, "coffee.png")).convert("RGB")
    # Crops small enough to commit; both keep the photos' detail (no resampling).
    inputs = {
        "astronaut_192x256.png": astronaut.crop((112, 0, 304, 256)),
        "coffee_192x128.png": coffee.crop((200, 120, 392, 248)),
    }
    for name, img in inputs.items():
        img.save(os.path.join(FIXTURES, name), optimize=True)

    cases = [
        # (input, mode, target)
        ("astronaut_192x256.png", "RGB", 32),
        ("astronaut_192x256.png", "RGB", 64),
        ("astronaut_192x256.png", "RGB", 100),
        ("coffee_192x128.png", "RGB", 32),
        ("coffee_192x128.png", "RGB", 48),
        ("coffee_192x128.png", "RGB", 256),
        ("coffee_192x128.png", "L", 48),
        ("synthetic:517x389", "RGB", 64),
        ("synthetic:300x1000", "RGB", 100),
        ("synthetic:6x4", "RGB", 3),
        ("synthetic:6x4", "L", 3),
    ]
    manifest = []
    for source, mode, target in cases:
        if source.startswith("synthetic:"):
            w, h = (int(v) for v in source.split(":")[1].split("x"))
            img = synthetic(w, h)
        else:
            img = inputs[source]
        img = img.convert(mode)
        out = center_crop_arr(img, target)
        stem = source.replace("synthetic:", "synthetic_").replace(".png", "")
        name = f"expected_{stem}_{mode}_{target}.png"
        Image.fromarray(out, mode).save(os.path.join(FIXTURES, name), optimize=True)
        manifest.append(
            {"input": source, "mode": mode, "target": target, "expected": name}
        )
    with open(os.path.join(FIXTURES, "center_crop_cases.json"), "w") as f:
        json.dump({"pillow": PIL.__version__, "cases": manifest}, f, indent=1)
        f.write("\n")


def read_idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    zero, dtype, ndim = struct.unpack(">HBB", raw[:4])
    assert zero == 0 and dtype == 0x08, path
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw[4 + 4 * ndim :], dtype=np.uint8).reshape(dims)


def idx_bytes(arr):
    header = struct.pack(">HBB", 0, 0x08, arr.ndim)
    header += struct.pack(">" + "I" * arr.ndim, *arr.shape)
    return header + arr.astype(np.uint8).tobytes()


def make_fashion_mnist():
    images = read_idx(os.path.join(DEBIAN_FMNIST, "train-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(DEBIAN_FMNIST, "train-labels-idx1-ubyte.gz"))
    keep = np.zeros(len(labels), dtype=bool)
    for c in range(10):
        keep[np.flatnonzero(labels == c)[:PER_CLASS]] = True
    os.makedirs(ASSETS, exist_ok=True)
    for name, arr in (
        ("train-images-idx3-ubyte.gz", images[keep]),
        ("train-labels-idx1-ubyte.gz", labels[keep]),
    ):
        # mtime=0 and no file name in the header keep the output byte-identical.
        blob = gzip.compress(idx_bytes(arr), compresslevel=9, mtime=0)
        with open(os.path.join(ASSETS, name), "wb") as f:
            f.write(blob)
        print(name, arr.shape, len(blob), "bytes")


if __name__ == "__main__":
    what = sys.argv[1:] or ["fixtures", "fashion-mnist"]
    for w in what:
        {"fixtures": make_fixtures, "fashion-mnist": make_fashion_mnist}[w]()
