#!/usr/bin/env python3
"""Judges generated Fashion-MNIST samples with a small CNN classifier.

    python3 scripts/judge_fashion_mnist.py SAMPLES.npz --class 0,1,2,3,4,5,6,7,8,9
    python3 scripts/judge_fashion_mnist.py --self-check

The judge is a small CNN trained here (seeded, 1 CPU thread, a few minutes) on
the full 60k Fashion-MNIST training set, padded 28->32 with background (0) as
`dit` pads it, scaled as `dit` scales pixels (u8 / 127.5 - 1). Its weights are
cached in .cache/judge/<hash of the training settings>/, so later runs reuse them.

For a batch of samples it reports
  - class accuracy: the fraction of samples the judge classifies as the class
    they were asked for, overall and per class, beside the judge's own
    accuracy on the real test images of that class (what real images get);
  - FD: the Frechet distance between Gaussians fitted to the judge's
    penultimate-layer features of the samples and of the 10k test images,
    with the floor beside it: the same distance for as many real training
    images, with the samples' class counts, averaged over 10 seeded draws.
    FD near the floor means the samples' features are as close to the test
    set as real images are; FD depends on N, so compare at equal N only.

scripts/install-judge-deps.sh installs what this needs (torch, numpy, scipy,
Debian's dataset-fashion-mnist).
"""

import argparse
import gzip
import hashlib
import io
import json
import math
import os
import re
import struct
import sys
import time
import zipfile

import numpy as np

CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
SIDE = 28
PADDED_SIDE = 32  # as src/data/fashion_mnist.rs: the 28x28 image centred, border 0
DEFAULT_DATA_DIR = "/usr/share/datasets/fashion-mnist"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_CACHE = os.path.join(REPO, ".cache", "judge")

# Everything that decides the trained weights; its hash names the cache entry.
# Changing any value (or the torch version, or the training data) retrains.
TRAIN_SETTINGS = {
    "judge_version": 2,
    "arch": "conv5s2-32,conv3s2-64,conv3-64 (BN, ReLU),fc128,dropout0.3; channels_last",
    "input": "u8/127.5-1, 28x28 zero-padded to 32x32",
    "epochs": 6,
    "batch_size": 128,
    "optimizer": "adam",
    "lr": 2e-3,
    "schedule": "cosine to 0 per step",
    "weight_decay": 0.0,
    "augment": "hflip p=0.5",
    "seed": 20251203,
    # One thread: on a shared 2-core machine OpenMP's second thread spins
    # waiting for the first and made an epoch 3-5x slower (measured), and one
    # thread makes the result independent of the core count.
    "threads": 1,
}
FEATURE_DIM = 128
FLOOR_DRAWS = 10


def fail(message):
    sys.exit(f"judge_fashion_mnist: {message}")


# ---------------------------------------------------------------- data


def read_idx(path):
    """An IDX file (gzipped or not) as a numpy uint8 array."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        fail(f"cannot read {path}: {e.strerror} (run scripts/install-judge-deps.sh, or pass --data-dir)")
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        fail(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != math.prod(dims):
        fail(f"{path}: header says {dims} but holds {data.size} bytes")
    return data.reshape(dims)


def pad_to_32(images):
    """(N, 28, 28) -> (N, 32, 32) with a 2-pixel background border."""
    pad = (PADDED_SIDE - SIDE) // 2
    out = np.zeros((images.shape[0], PADDED_SIDE, PADDED_SIDE), dtype=np.uint8)
    out[:, pad : pad + SIDE, pad : pad + SIDE] = images
    return out


def load_split(data_dir, split):
    """split 'train' or 't10k' -> (images (N, 32, 32) uint8, labels (N,) int64)."""
    images = read_idx(os.path.join(data_dir, f"{split}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(data_dir, f"{split}-labels-idx1-ubyte.gz"))
    if images.ndim != 3 or images.shape[1:] != (SIDE, SIDE) or labels.shape != (images.shape[0],):
        fail(f"{data_dir}/{split}: images {images.shape}, labels {labels.shape}; expected N×28×28 and N")
    return pad_to_32(images), labels.astype(np.int64)


def file_sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


# ---------------------------------------------------------------- the judge


def import_torch(threads):
    import torch

    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    return torch


def build_net(torch):
    nn = torch.nn

    class JudgeNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(1, 32, 5, stride=2, padding=2),  # 16x16
                nn.BatchNorm2d(32),
                nn.ReLU(),
                nn.Conv2d(32, 64, 3, stride=2, padding=1),  # 8x8
                nn.BatchNorm2d(64),
                nn.ReLU(),
                nn.Conv2d(64, 64, 3, padding=1),
                nn.BatchNorm2d(64),
                nn.ReLU(),
                nn.Flatten(),
                nn.Linear(64 * 8 * 8, FEATURE_DIM),
                nn.ReLU(),
            )
            self.drop = nn.Dropout(0.3)
            self.head = nn.Linear(FEATURE_DIM, len(CLASSES))

        def forward(self, x):
            """-> (logits, penultimate features)"""
            features = self.body(x)
            return self.head(self.drop(features)), features

    return JudgeNet().to(memory_format=torch.channels_last)


def to_input(torch, images_u8):
    """(N, 32, 32) uint8 -> (N, 1, 32, 32) float32 in [-1, 1], as dit scales."""
    x = torch.from_numpy(images_u8).float().div_(127.5).sub_(1.0).unsqueeze(1)
    return x.contiguous(memory_format=torch.channels_last)


def train(torch, images, labels, settings):
    s = settings
    torch.manual_seed(s["seed"])
    net = build_net(torch)
    opt = torch.optim.Adam(net.parameters(), lr=s["lr"], weight_decay=s["weight_decay"])
    n = images.shape[0]
    steps_per_epoch = n // s["batch_size"]  # drop the last partial batch
    total = steps_per_epoch * s["epochs"]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: 0.5 * (1 + math.cos(math.pi * i / total)))
    gen = torch.Generator().manual_seed(s["seed"])
    x_all = to_input(torch, images)
    y_all = torch.from_numpy(labels)
    net.train()
    for epoch in range(s["epochs"]):
        t0 = time.time()
        order = torch.randperm(n, generator=gen)
        flips = torch.rand(n, generator=gen) < 0.5
        running = 0.0
        for b in range(steps_per_epoch):
            idx = order[b * s["batch_size"] : (b + 1) * s["batch_size"]]
            x = x_all[idx]
            f = flips[idx]
            x[f] = x[f].flip(-1)
            logits, _ = net(x)
            loss = torch.nn.functional.cross_entropy(logits, y_all[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            running += loss.item()
        print(
            f"  epoch {epoch + 1}/{s['epochs']}: mean loss {running / steps_per_epoch:.4f}"
            f" ({time.time() - t0:.0f} s)",
            file=sys.stderr,
            flush=True,
        )
    net.eval()
    return net


def run_net(torch, net, images_u8, batch=500):
    """-> (logits (N, 10) float32, features (N, FEATURE_DIM) float32)"""
    logits, features = [], []
    with torch.no_grad():
        for i in range(0, images_u8.shape[0], batch):
            batch_logits, batch_features = net(to_input(torch, images_u8[i : i + batch]))
            logits.append(batch_logits.numpy())
            features.append(batch_features.numpy())
    if not logits:
        return np.zeros((0, len(CLASSES)), np.float32), np.zeros((0, FEATURE_DIM), np.float32)
    return np.concatenate(logits), np.concatenate(features)


class Judge:
    """The trained net plus the test set's features, cached together."""

    def __init__(self, torch, net, meta, test_images, test_labels, test_preds, test_features, train_data):
        self.torch = torch
        self.net = net
        self.meta = meta
        self.test_images = test_images
        self.test_labels = test_labels
        self.test_preds = test_preds
        self.test_features = test_features
        self.train_images, self.train_labels = train_data

    def classify(self, images_u8):
        logits, features = run_net(self.torch, self.net, images_u8)
        return logits.argmax(1), features


def settings_key(torch, data_dir):
    keyed = dict(TRAIN_SETTINGS)
    keyed["torch"] = torch.__version__
    keyed["train_data_sha256"] = [
        file_sha256(os.path.join(data_dir, f"train-{kind}-ubyte.gz"))
        for kind in ("images-idx3", "labels-idx1")
    ]
    blob = json.dumps(keyed, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16], keyed


def load_or_train(data_dir, cache_dir, threads, retrain=False):
    """The cached judge, else a freshly trained one (then cached). With
    `retrain`, trains even when cached and fails unless the new weights equal
    the cached ones bit for bit (the determinism check)."""
    torch = import_torch(threads)
    train_data = load_split(data_dir, "train")
    test_images, test_labels = load_split(data_dir, "t10k")
    key, keyed = settings_key(torch, data_dir)
    entry = os.path.join(cache_dir, key)
    weights = os.path.join(entry, "judge.pt")
    meta_path = os.path.join(entry, "meta.json")
    cached = os.path.isfile(weights) and os.path.isfile(meta_path)
    if cached and not retrain:
        net = build_net(torch)
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        net.eval()
        with open(meta_path) as f:
            meta = json.load(f)
        print(f"judge: cached weights {weights}", file=sys.stderr)
    else:
        net, meta = train_and_cache(torch, train_data, test_images, test_labels, keyed, key, entry, cached)
        torch.set_num_threads(threads)
    logits, test_features = run_net(torch, net, test_images)
    test_preds = logits.argmax(1)
    return Judge(torch, net, meta, test_images, test_labels, test_preds, test_features, train_data)


def train_and_cache(torch, train_data, test_images, test_labels, keyed, key, entry, cached):
    weights = os.path.join(entry, "judge.pt")
    meta_path = os.path.join(entry, "meta.json")
    print(
        f"judge: training the classifier on {train_data[0].shape[0]} images "
        f"({TRAIN_SETTINGS['epochs']} epochs, {TRAIN_SETTINGS['threads']} thread); cache: {entry}",
        file=sys.stderr,
        flush=True,
    )
    torch.set_num_threads(TRAIN_SETTINGS["threads"])
    load_before = os.getloadavg()[0]
    t0, c0 = time.time(), time.process_time()
    net = train(torch, *train_data, TRAIN_SETTINGS)
    train_wall, train_cpu = time.time() - t0, time.process_time() - c0
    preds = run_net(torch, net, test_images)[0].argmax(1)
    meta = {
        "settings": keyed,
        "key": key,
        "train_wall_s": round(train_wall, 1),
        "train_cpu_s": round(train_cpu, 1),
        "load_average_1min_before": round(load_before, 2),
        "test_accuracy": float((preds == test_labels).mean()),
        "trained_at": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }
    print(
        f"judge: trained in {train_wall:.0f} s wall ({train_cpu:.0f} s CPU); "
        f"test accuracy {100 * meta['test_accuracy']:.2f}%",
        file=sys.stderr,
    )
    state = net.state_dict()
    if cached:
        old = torch.load(weights, map_location="cpu", weights_only=True)
        if sorted(old) != sorted(state):
            fail(f"the cached {weights} holds other tensors than the judge has; delete it")
        if not all(torch.equal(state[k], old[k]) for k in state):
            worst = max(
                (float((state[k].double() - old[k].double()).abs().max()) for k in state if state[k].numel()),
                key=lambda d: (math.isnan(d), d),  # NaN counts as the worst
            )
            fail(
                f"retrained weights differ from the cached {weights} (max |diff| {worst:g}):"
                " training is not deterministic here"
            )
        print(f"judge: retrained weights are bit-identical to the cached {weights}", file=sys.stderr)
        with open(meta_path) as f:
            first = json.load(f)
        meta["first_trained"] = first.get("first_trained", first)
    os.makedirs(entry, exist_ok=True)
    torch.save(state, weights + ".part")
    os.replace(weights + ".part", weights)
    with open(meta_path + ".part", "w") as f:
        json.dump(meta, f, indent=2)
    os.replace(meta_path + ".part", meta_path)
    return net, meta


# ---------------------------------------------------------------- samples and labels


def load_samples(source, name):
    """An .npz as `dit sample --npz` writes it -> (images (N, 32, 32) uint8, labels or None).

    arr_0: uint8 (N, H, W, 3) with equal channels (also accepted: (N, H, W) and
    (N, H, W, 1)); H = W = 32, or 28 (then padded like the training data).
    Labels, when present: an integer array `labels` or `arr_1` of shape (N,).
    """
    try:
        npz = np.load(source, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        fail(f"cannot read {name} as .npz: {e}")
    if "arr_0" not in npz.files:
        fail(f"{name} has no arr_0 (arrays: {', '.join(npz.files)}); expected dit sample --npz output")
    arr = npz["arr_0"]
    if arr.dtype != np.uint8:
        fail(f"{name}: arr_0 has dtype {arr.dtype}, expected uint8")
    if arr.ndim == 4 and arr.shape[3] in (1, 3):
        if arr.shape[3] == 3 and not (
            np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2])
        ):
            fail(f"{name}: arr_0's three channels differ; expected grayscale repeated to RGB")
        arr = arr[..., 0]
    elif arr.ndim != 3:
        fail(f"{name}: arr_0 has shape {arr.shape}, expected (N, 32, 32, 3)")
    if arr.shape[1:] == (SIDE, SIDE):
        arr = pad_to_32(arr)
    elif arr.shape[1:] != (PADDED_SIDE, PADDED_SIDE):
        fail(f"{name}: images are {arr.shape[1]}×{arr.shape[2]}, expected 32×32 (or 28×28)")
    labels = None
    keys = [k for k in ("labels", "arr_1") if k in npz.files]
    if len(keys) == 2:
        fail(f"{name} has both 'labels' and 'arr_1'; keep one")
    if keys:
        labels = check_labels(npz[keys[0]], arr.shape[0], f"{name}:{keys[0]}")
    return np.ascontiguousarray(arr), labels


def check_labels(labels, n, what):
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != n:
        fail(f"{what} has shape {labels.shape}, expected ({n},): one label per image")
    if not np.issubdtype(labels.dtype, np.integer):
        fail(f"{what} has dtype {labels.dtype}, expected integers 0..9")
    bad = labels[(labels < 0) | (labels >= len(CLASSES))]
    if bad.size:
        fail(f"{what}: label {bad[0]} outside 0..9")
    return labels.astype(np.int64)


def normalize_name(name):
    return " ".join(name.replace("_", " ").split()).lower()


def parse_class(item):
    """An id '7' or a name 'sneaker' (as dit sample: case, spaces, '_' ignored)."""
    item = item.strip()
    if re.fullmatch(r"\d+", item):
        label = int(item)
        if label >= len(CLASSES):
            fail(f"--class {item}: out of range, Fashion-MNIST has classes 0..9")
        return label
    wanted = normalize_name(item)
    for label, name in enumerate(CLASSES):
        if normalize_name(name) == wanted:
            return label
    fail(f"--class '{item}': unknown; classes are {', '.join(f'{i} {n}' for i, n in enumerate(CLASSES))}")


def read_labels_file(path, n):
    if path.endswith(".npy"):
        try:
            labels = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            fail(f"--labels {path}: {e}")
    else:
        try:
            with open(path) as f:
                text = f.read()
        except OSError as e:
            fail(f"--labels {path}: {e.strerror}")
        items = [t for t in re.split(r"[\s,]+", text) if t]
        if not all(re.fullmatch(r"\d+", t) for t in items):
            fail(f"--labels {path}: expected integers 0..9 separated by commas, spaces or newlines")
        labels = np.array([int(t) for t in items], dtype=np.int64)
    return check_labels(labels, n, f"--labels {path}")


def resolve_labels(n, embedded, class_args, labels_file, first_index, name):
    """The requested class of each image, or None when nothing says.

    Sources: the npz's own labels; --class (image k asks for
    list[(first_index + k) % len], as dit sample cycles its --class list);
    --labels FILE. When more than one is given they must agree.
    """
    given = []
    if embedded is not None:
        given.append((f"{name}'s labels", embedded))
    if class_args:
        items = [item for arg in class_args for item in arg.split(",") if item.strip()]
        if not items:
            fail("--class is empty")
        cycle = np.array([parse_class(item) for item in items], dtype=np.int64)
        given.append(("--class", cycle[(first_index + np.arange(n)) % len(cycle)]))
    elif first_index:
        fail("--first-index only applies to --class")
    if labels_file:
        given.append((f"--labels {labels_file}", read_labels_file(labels_file, n)))
    if not given:
        return None, None
    (first_what, first), *rest = given
    for what, other in rest:
        differ = np.nonzero(other != first)[0]
        if differ.size:
            k = differ[0]
            fail(f"{what} says image {k} is class {other[k]}, {first_what} says {first[k]}")
    return first, " = ".join(what for what, _ in given)


# ---------------------------------------------------------------- Frechet distance


def gaussian_stats(features):
    f = np.asarray(features, dtype=np.float64)
    if f.shape[0] < 2:
        fail(f"the Frechet distance needs at least 2 images, got {f.shape[0]}")
    return f.mean(0), np.cov(f, rowvar=False)


def psd_sqrt(matrix):
    """Symmetric PSD square root by eigen-decomposition; tiny negative
    eigenvalues from rounding are set to 0."""
    w, v = np.linalg.eigh((matrix + matrix.T) / 2)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(mu1, sigma1, mu2, sigma2):
    """|mu1-mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^1/2), in float64.

    tr((S1 S2)^1/2) = tr((S1^1/2 S2 S1^1/2)^1/2), whose argument is symmetric
    PSD, so both roots come from eigh: robust for the singular covariances
    that ReLU features (dead units) and N < dim give."""
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    s1, s2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    for what, x in (("mean 1", mu1), ("covariance 1", s1), ("mean 2", mu2), ("covariance 2", s2)):
        if not np.isfinite(x).all():
            fail(f"the Frechet distance's {what} is not finite (NaN/inf features?)")
    root1 = psd_sqrt(s1)
    middle = root1 @ s2 @ root1
    w = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = np.sqrt(np.clip(w, 0, None)).sum()
    diff = mu1 - mu2
    fd = float(diff @ diff + np.trace(s1) + np.trace(s2) - 2 * tr_covmean)
    if not math.isfinite(fd):
        fail(f"the Frechet distance is {fd} (non-finite features or covariance)")
    # Rounding can leave a distance between identical Gaussians at -1e-12.
    return max(fd, 0.0)


# ---------------------------------------------------------------- scoring


def class_counts(labels, n):
    if labels is not None:
        return np.bincount(labels, minlength=len(CLASSES))
    # Unknown classes: as balanced as the test set.
    counts = np.full(len(CLASSES), n // len(CLASSES))
    counts[: n % len(CLASSES)] += 1
    return counts


def draw_train(judge, counts, seed):
    """Indices of counts[k] training images of class k, drawn without replacement."""
    rng = np.random.default_rng(seed)
    picked = []
    for k, c in enumerate(counts):
        pool = np.nonzero(judge.train_labels == k)[0]
        if c > pool.size:
            fail(f"the floor needs {c} training images of class {k}, there are {pool.size}")
        picked.append(rng.choice(pool, size=c, replace=False))
    return np.sort(np.concatenate(picked))


def floor_fd(judge, counts, test_stats, draws, seed):
    values = []
    for d in range(draws):
        idx = draw_train(judge, counts, [seed, d])
        _, features = judge.classify(judge.train_images[idx])
        values.append(frechet_distance(*gaussian_stats(features), *test_stats))
    return values


def score(judge, images, labels, seed, draws=FLOOR_DRAWS):
    n = images.shape[0]
    preds, features = judge.classify(images)
    test_stats = gaussian_stats(judge.test_features)
    fd = frechet_distance(*gaussian_stats(features), *test_stats)
    floors = floor_fd(judge, class_counts(labels, n), test_stats, draws, seed)
    report = {
        "num_samples": n,
        "feature_dim": FEATURE_DIM,
        "fd": fd,
        "fd_floor_mean": float(np.mean(floors)),
        "fd_floor_std": float(np.std(floors, ddof=1)) if draws > 1 else 0.0,
        "fd_floor_draws": floors,
        "predicted_counts": np.bincount(preds, minlength=len(CLASSES)).tolist(),
        "judge_test_accuracy": float((judge.test_preds == judge.test_labels).mean()),
        "judge_test_accuracy_per_class": [
            float((judge.test_preds[judge.test_labels == k] == k).mean()) for k in range(len(CLASSES))
        ],
    }
    if labels is not None:
        report["accuracy"] = float((preds == labels).mean())
        report["per_class"] = [
            {
                "class": k,
                "name": CLASSES[k],
                "n": int((labels == k).sum()),
                "accuracy": float((preds[labels == k] == k).mean()) if (labels == k).any() else None,
            }
            for k in range(len(CLASSES))
        ]
        confusion = np.zeros((len(CLASSES), len(CLASSES)), dtype=np.int64)
        np.add.at(confusion, (labels, preds), 1)
        report["confusion_requested_by_judged"] = confusion.tolist()
    return report


def pct(x):
    return "   -  " if x is None else f"{100 * x:5.1f}%"


def print_report(title, report, labels_from):
    n = report["num_samples"]
    print(f"\n{title}: {n} images")
    print(f"judge: test accuracy {pct(report['judge_test_accuracy']).strip()} on the 10k test set")
    if "accuracy" in report:
        print(f"requested classes from: {labels_from}\n")
        print(f"  {'class':<14}{'n':>6}  {'judged as requested':>20}  {'judge on real test':>19}")
        for row, real in zip(report["per_class"], report["judge_test_accuracy_per_class"], strict=True):
            if row["n"]:
                print(
                    f"  {row['class']} {row['name']:<12}{row['n']:>6}"
                    f"  {pct(row['accuracy']):>20}  {pct(real):>19}"
                )
        print(f"  {'all':<14}{n:>6}  {pct(report['accuracy']):>20}  {pct(report['judge_test_accuracy']):>19}")
    else:
        print("no requested classes (pass --class or --labels): class accuracy not measured")
        counts = ", ".join(f"{CLASSES[k]} {c}" for k, c in enumerate(report["predicted_counts"]))
        print(f"  judged classes: {counts}")
    draws = len(report["fd_floor_draws"])
    print(f"\nFrechet distance in the judge's {report['feature_dim']}-d features, to the 10k test set:")
    print(f"  these images                       {report['fd']:9.3f}")
    print(
        f"  floor: {n} real training images    {report['fd_floor_mean']:9.3f} ± {report['fd_floor_std']:.3f}"
        f"  (same class counts; mean ± sd of {draws} draws)"
    )


def as_dit_npz(images_u8, labels=None):
    """Real images packed as dit sample --npz packs samples: (N, 32, 32, 3) uint8."""
    buf = io.BytesIO()
    arrays = {"arr_0": np.repeat(images_u8[..., None], 3, axis=3)}
    if labels is not None:
        arrays["labels"] = labels
    np.savez(buf, **arrays)
    buf.seek(0)
    return buf


def self_check(judge, n, seed):
    """Real images through the same path as samples: test images with their
    labels (accuracy ~ test accuracy; FD below the floor, since they are part
    of the test set), then training images (FD ~ floor)."""
    rng = np.random.default_rng([seed, 1])
    reports = {}
    test_idx = np.sort(rng.choice(judge.test_images.shape[0], size=n, replace=False))
    train_idx = np.sort(rng.choice(judge.train_images.shape[0], size=n, replace=False))
    for what, images, labels in (
        ("real test images", judge.test_images[test_idx], judge.test_labels[test_idx]),
        ("real training images", judge.train_images[train_idx], judge.train_labels[train_idx]),
    ):
        samples, embedded = load_samples(as_dit_npz(images, labels), f"<{what}>")
        t0 = time.time()
        report = score(judge, samples, embedded, seed)
        report["score_wall_s"] = round(time.time() - t0, 2)
        print_report(f"self-check, {what} (seeded draw)", report, "their true labels, as npz 'labels'")
        reports[what] = report
    return reports


# ---------------------------------------------------------------- command line


def parse_args(argv):
    p = argparse.ArgumentParser(
        prog="judge_fashion_mnist.py",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=__doc__,
        epilog="""\
Samples: the .npz of `dit sample --npz`, arr_0 uint8 (N, 32, 32, 3) (grayscale
repeated; (N, 32, 32) and 28×28 images are accepted too).

Requested classes, from any of (several must agree):
  - an integer array 'labels' or 'arr_1' of shape (N,) in the .npz;
  - --class LIST, the list given to dit sample: image k asked for
    LIST[(first_index + k) % len(LIST)], ids or names (sneaker, "ankle boot");
  - --labels FILE: .npy of N integers, or text with N integers 0..9.
dit sample without --class draws classes at random; then pass none, and only
the FD and the judged-class counts are reported.

Classes: 0 T-shirt/top, 1 Trouser, 2 Pullover, 3 Dress, 4 Coat, 5 Sandal,
6 Shirt, 7 Sneaker, 8 Bag, 9 Ankle boot.

Examples:
  dit sample --ckpt runs/fashion-mnist --class 0,1,2,3,4,5,6,7,8,9 -n 1000 --npz s.npz
  python3 scripts/judge_fashion_mnist.py s.npz --class 0,1,2,3,4,5,6,7,8,9 --json s.json
  python3 scripts/judge_fashion_mnist.py --self-check -n 1000
See docs/judge.md for what the numbers mean.""",
    )
    p.add_argument("samples", nargs="?", help="the .npz of samples")
    p.add_argument(
        "--class",
        dest="classes",
        action="append",
        default=[],
        metavar="LIST",
        help="classes as given to dit sample --class (comma-separated, repeatable)",
    )
    p.add_argument(
        "--first-index",
        type=int,
        default=0,
        metavar="K",
        help="global index of the npz's first image (a --shard's npz), for --class",
    )
    p.add_argument("--labels", metavar="FILE", help=".npy or text file of one requested class per image")
    p.add_argument("--json", metavar="OUT", help="also write the figures as JSON")
    p.add_argument(
        "--self-check", action="store_true", help="score real test and training images instead of samples"
    )
    p.add_argument("-n", "--num", type=int, default=1000, help="images per self-check set (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the floor's (and self-check's) draws")
    p.add_argument(
        "--data-dir", default=DEFAULT_DATA_DIR, help=f"Fashion-MNIST IDX files (default {DEFAULT_DATA_DIR})"
    )
    p.add_argument(
        "--cache-dir", default=DEFAULT_CACHE, help="where trained judges are kept (default .cache/judge)"
    )
    p.add_argument(
        "--retrain",
        action="store_true",
        help="train the judge even if cached; fails unless the weights come out bit-identical",
    )
    p.add_argument(
        "--threads", type=int, default=1, help="CPU threads for scoring (default 1; training always uses 1)"
    )
    args = p.parse_args(argv)
    if args.self_check == bool(args.samples):
        p.error("give either a samples .npz or --self-check")
    if args.self_check and (args.classes or args.labels or args.first_index):
        p.error("--self-check uses the real images' labels; drop --class/--labels/--first-index")
    if args.first_index < 0:
        p.error("--first-index must be >= 0")
    if not 2 <= args.num <= 10000:
        p.error("-n must be within 2..10000")
    return args


def main(argv=None):
    args = parse_args(argv)
    started = time.time()
    if args.samples:
        # Bad input fails before minutes of training.
        images, embedded = load_samples(args.samples, args.samples)
        labels, labels_from = resolve_labels(
            images.shape[0], embedded, args.classes, args.labels, args.first_index, args.samples
        )
    judge = load_or_train(args.data_dir, args.cache_dir, args.threads, args.retrain)
    meta = dict(judge.meta)
    if args.self_check:
        out = {"self_check": self_check(judge, args.num, args.seed)}
    else:
        t0 = time.time()
        report = score(judge, images, labels, args.seed)
        report["score_wall_s"] = round(time.time() - t0, 2)
        report["labels_from"] = labels_from
        report["samples"] = args.samples
        print_report(args.samples, report, labels_from)
        out = report
    out["judge"] = meta
    out["versions"] = {"torch": judge.torch.__version__, "numpy": np.__version__}
    out["total_wall_s"] = round(time.time() - started, 1)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
        print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
