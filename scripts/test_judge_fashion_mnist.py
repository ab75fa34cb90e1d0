#!/usr/bin/env python3
"""Tests of scripts/judge_fashion_mnist.py that need no trained judge (numpy
and scipy only; a few seconds):

    python3 scripts/test_judge_fashion_mnist.py

The trained judge itself is checked by `judge_fashion_mnist.py --self-check`
(real images score like real images) and `--retrain` (bit-identical weights).
"""

import gzip
import io
import os
import struct
import sys
import tempfile
import unittest

import numpy as np
import scipy.linalg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import judge_fashion_mnist as judge  # noqa: E402


def random_spd(rng, dim, rank=None):
    a = rng.standard_normal((dim, rank or dim))
    return a @ a.T / dim


def scipy_fd(mu1, s1, mu2, s2):
    """The textbook formula with scipy's general matrix square root."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    diff = mu1 - mu2
    return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


def npz_bytes(**arrays):
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    buf.seek(0)
    return buf


class FrechetDistance(unittest.TestCase):
    def test_matches_scipy_sqrtm_on_full_rank_covariances(self):
        rng = np.random.default_rng(1)
        for dim in (2, 16, 128):
            mu1, mu2 = rng.standard_normal(dim), rng.standard_normal(dim)
            s1, s2 = random_spd(rng, dim), random_spd(rng, dim)
            ours = judge.frechet_distance(mu1, s1, mu2, s2)
            ref = scipy_fd(mu1, s1, mu2, s2)
            self.assertTrue(np.isfinite(ours) and abs(ours - ref) <= 1e-8 * abs(ref), (dim, ours, ref))

    def test_closed_form_for_diagonal_covariances_including_singular(self):
        # Diagonal: FD = |mu1-mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2, also with zero variances.
        a = np.array([4.0, 0.0, 1.0, 0.0, 9.0])
        b = np.array([1.0, 2.0, 0.0, 0.0, 9.0])
        mu1, mu2 = np.arange(5.0), np.arange(5.0) + 0.5
        expected = 5 * 0.25 + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
        ours = judge.frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
        self.assertTrue(abs(ours - expected) <= 1e-12, (ours, expected))

    def test_rank_deficient_covariances_from_few_samples(self):
        # N < dim, as a small batch of 128-d features gives: still finite, and
        # invariant to swapping the two sides.
        rng = np.random.default_rng(2)
        f1, f2 = rng.standard_normal((50, 128)), rng.standard_normal((60, 128)) + 0.1
        d12 = judge.frechet_distance(*judge.gaussian_stats(f1), *judge.gaussian_stats(f2))
        d21 = judge.frechet_distance(*judge.gaussian_stats(f2), *judge.gaussian_stats(f1))
        self.assertTrue(np.isfinite(d12) and abs(d12 - d21) <= 1e-9 * d12, (d12, d21))

    def test_identical_features_give_zero(self):
        rng = np.random.default_rng(3)
        stats = judge.gaussian_stats(rng.standard_normal((500, 32)))
        fd = judge.frechet_distance(*stats, *stats)
        self.assertTrue(0.0 <= fd < 1e-9, fd)

    def test_nan_fails_loudly(self):
        s = np.eye(3)
        with self.assertRaises(SystemExit):
            judge.frechet_distance(np.array([0.0, np.nan, 0.0]), s, np.zeros(3), s)
        with self.assertRaises(SystemExit):
            judge.frechet_distance(np.zeros(3), s, np.zeros(3), np.full((3, 3), np.nan))


class Samples(unittest.TestCase):
    def setUp(self):
        rng = np.random.default_rng(4)
        self.gray = rng.integers(0, 256, size=(6, 32, 32), dtype=np.uint8)

    def test_dit_layout_is_read_as_grayscale(self):
        rgb = np.repeat(self.gray[..., None], 3, axis=3)
        images, labels = judge.load_samples(npz_bytes(arr_0=rgb), "x.npz")
        self.assertTrue(np.array_equal(images, self.gray))
        self.assertIsNone(labels)

    def test_labels_in_the_npz(self):
        rgb = np.repeat(self.gray[..., None], 3, axis=3)
        for key in ("labels", "arr_1"):
            _, labels = judge.load_samples(
                npz_bytes(arr_0=rgb, **{key: np.arange(6, dtype=np.int32)}), "x.npz"
            )
            self.assertEqual(labels.tolist(), list(range(6)))

    def test_28_pixel_images_are_padded_like_the_training_data(self):
        small = self.gray[:, :28, :28]
        images, _ = judge.load_samples(npz_bytes(arr_0=small), "x.npz")
        self.assertEqual(images.shape, (6, 32, 32))
        self.assertTrue(np.array_equal(images[:, 2:30, 2:30], small))
        border = images.copy()
        border[:, 2:30, 2:30] = 0
        self.assertFalse(border.any())

    def test_bad_samples_are_refused(self):
        rgb = np.repeat(self.gray[..., None], 3, axis=3)
        colour = rgb.copy()
        colour[0, 0, 0, 1] ^= 1
        bad = {
            "float": dict(arr_0=rgb.astype(np.float32)),
            "colour": dict(arr_0=colour),
            "size": dict(arr_0=rgb[:, :30, :30]),
            "no arr_0": dict(images=rgb),
            "labels length": dict(arr_0=rgb, labels=np.arange(5)),
            "label range": dict(arr_0=rgb, labels=np.array([0, 1, 2, 3, 4, 10])),
            "two label arrays": dict(arr_0=rgb, labels=np.zeros(6, int), arr_1=np.zeros(6, int)),
        }
        for what, arrays in bad.items():
            with self.subTest(what), self.assertRaises(SystemExit):
                judge.load_samples(npz_bytes(**arrays), "x.npz")
        with self.assertRaises(SystemExit):
            judge.load_samples(io.BytesIO(b"not a zip"), "x.npz")


class Labels(unittest.TestCase):
    def test_class_list_cycles_as_dit_sample(self):
        labels, source = judge.resolve_labels(7, None, ["0,sneaker", "ankle_boot"], None, 0, "x.npz")
        self.assertEqual(labels.tolist(), [0, 7, 9, 0, 7, 9, 0])
        self.assertEqual(source, "--class")
        shard, _ = judge.resolve_labels(3, None, ["0,1,2,3"], None, 6, "x.npz")
        self.assertEqual(shard.tolist(), [2, 3, 0])

    def test_names_ignore_case_and_spacing(self):
        self.assertEqual(judge.parse_class("T-SHIRT/top"), 0)
        self.assertEqual(judge.parse_class("  Ankle   Boot "), 9)
        for bad in ("10", "sock", ""):
            with self.subTest(bad), self.assertRaises(SystemExit):
                judge.parse_class(bad)

    def test_labels_files(self):
        with tempfile.TemporaryDirectory() as d:
            txt, npy, bad = (os.path.join(d, n) for n in ("l.txt", "l.npy", "bad.txt"))
            with open(txt, "w") as f:
                f.write("1, 2\n3 4\n")
            np.save(npy, np.array([1, 2, 3, 4]))
            with open(bad, "w") as f:
                f.write("1 2 x 4")
            for path in (txt, npy):
                labels, _ = judge.resolve_labels(4, None, [], path, 0, "x.npz")
                self.assertEqual(labels.tolist(), [1, 2, 3, 4])
            for path, n in ((bad, 4), (txt, 5), (os.path.join(d, "missing.txt"), 4)):
                with self.subTest(path), self.assertRaises(SystemExit):
                    judge.resolve_labels(n, None, [], path, 0, "x.npz")

    def test_sources_must_agree(self):
        embedded = np.array([0, 1, 0, 1])
        labels, source = judge.resolve_labels(4, embedded, ["0,1"], None, 0, "x.npz")
        self.assertEqual(labels.tolist(), [0, 1, 0, 1])
        self.assertIn("--class", source)
        with self.assertRaises(SystemExit):
            judge.resolve_labels(4, embedded, ["1,0"], None, 0, "x.npz")

    def test_no_labels(self):
        self.assertEqual(judge.resolve_labels(4, None, [], None, 0, "x.npz"), (None, None))
        self.assertEqual(judge.class_counts(None, 23).tolist(), [3, 3, 3, 2, 2, 2, 2, 2, 2, 2])


class Idx(unittest.TestCase):
    def test_gzipped_idx_round_trip_and_padding(self):
        images = np.arange(2 * 28 * 28, dtype=np.uint32).astype(np.uint8).reshape(2, 28, 28)
        raw = bytes([0, 0, 8, 3]) + struct.pack(">3I", 2, 28, 28) + images.tobytes()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "x.gz")
            with open(path, "wb") as f:
                f.write(gzip.compress(raw))
            self.assertTrue(np.array_equal(judge.read_idx(path), images))
            with open(path, "wb") as f:
                f.write(raw[:-1])
            with self.assertRaises(SystemExit):
                judge.read_idx(path)
        padded = judge.pad_to_32(images)
        # As src/data/fashion_mnist.rs: pixel (y, x) lands at (y + 2, x + 2).
        self.assertEqual(padded[1, 2 + 5, 2 + 7], images[1, 5, 7])
        self.assertEqual(int(padded.sum()), int(images.astype(np.int64).sum()))


if __name__ == "__main__":
    unittest.main()
