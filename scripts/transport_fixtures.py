#!/usr/bin/env python3
"""Regenerates tests/fixtures/transport/reference.safetensors for tests/transport.

An independent float64 numpy reference for SiT's interpolants (Ma et al. 2024,
arXiv 2401.08740), written from the formulas:

  x_t = a(t) x1 + s(t) x0,   x0 ~ N(0, I) noise at t = 0, x1 data at t = 1
  Linear  a = t,            s = 1 - t
  GVP     a = sin(pi t/2),  s = cos(pi t/2)
  VP      log a = -(1-t)^2 (b_max - b_min)/4 - (1-t) b_min/2,  s = sqrt(1 - a^2),
          b_min = 0.1, b_max = 20

Conversions are checked without any conversion formula: for a pair (x0, x1)
the velocity is a' x1 + s' x0, the noise x0, the score -x0/s and the data x1,
and every conversion is linear in (x_t, prediction), so it must map these
exact values onto each other. The SDE drift is v + w(t) * score with w from
the paper's diffusion forms, the losses are the per-sample means of SiT's
targets with weights (L/s)^2 and L/s^2, L = s^2 (d/dt) log(a/s).

Needs numpy and safetensors (pip install numpy safetensors); the Rust tests
only read the output. Run from the repository root:
    python3 scripts/transport_fixtures.py
"""

import math
import os

import numpy as np
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "transport")
RNG = np.random.default_rng(20240117)
B_MIN, B_MAX = 0.1, 20.0
SHAPE = (2, 3, 3)  # one sample: C = 2 channels of 3x3

PATHS = ["linear", "gvp", "vp"]
FORMS = ["constant", "sbdm", "sigma", "linear", "decreasing", "increasing_decreasing"]
NORMS = [1.0, 0.7]
# Times for conversions, SDE terms and losses: the eps cut-offs (1e-3, 1e-5 and
# 1 - those), the SDE's last-step start 0.96, and the inside.
T_INNER = np.array(
    [1e-3, 0.01, 0.04, 0.1, 0.25, 0.5, 0.75, 0.9, 0.96, 0.99, 1 - 1e-3, 1 - 1e-5]
)
# Times for the path coefficients alone, ends included where finite.
T_COEF = {
    "linear": np.concatenate([[0.0, 1e-5], T_INNER, [1.0]]),
    "gvp": np.concatenate([[0.0, 1e-5], T_INNER, [1.0]]),
    "vp": np.concatenate([[0.0, 1e-5], T_INNER]),
}


def coefficients(path, t):
    """a, s, da/dt, ds/dt (derivatives by hand, checked below)."""
    t = np.asarray(t, dtype=np.float64)
    if path == "linear":
        return t, 1 - t, np.ones_like(t), -np.ones_like(t)
    if path == "gvp":
        h = math.pi / 2
        return np.sin(h * t), np.cos(h * t), h * np.cos(h * t), -h * np.sin(h * t)
    u = 1 - t
    log_a = -0.25 * u**2 * (B_MAX - B_MIN) - 0.5 * u * B_MIN
    dlog_a = 0.5 * u * (B_MAX - B_MIN) + 0.5 * B_MIN  # d/dt of log_a
    a = np.exp(log_a)
    s = np.sqrt(-np.expm1(2 * log_a))
    return a, s, a * dlog_a, -(a * a * dlog_a) / s  # s s' = -a a'


def check_derivatives():
    for path in PATHS:
        t = np.array([0.05, 0.3, 0.5, 0.8, 0.95])
        h = 1e-6
        lo, hi = coefficients(path, t - h), coefficients(path, t + h)
        _, _, da, ds = coefficients(path, t)
        assert np.allclose((hi[0] - lo[0]) / (2 * h), da, rtol=1e-7, atol=1e-8), path
        assert np.allclose((hi[1] - lo[1]) / (2 * h), ds, rtol=1e-7, atol=1e-8), path


def score_coefficient(path, t):
    """L(t) with v = (a'/a) x + L score: s^2 (a'/a - s'/s)."""
    a, s, da, ds = coefficients(path, t)
    lam = s * s * (da / a - ds / s)
    if path == "vp":
        beta = B_MIN + (1 - t) * (B_MAX - B_MIN)
        assert np.allclose(lam, beta / 2, rtol=1e-9), "VP: L must be beta/2"
    return lam


def diffusion(form, path, t, norm):
    _, s, _, _ = coefficients(path, t)
    return {
        "constant": norm * np.ones_like(t),
        "sbdm": norm * score_coefficient(path, t),
        "sigma": norm * s,
        "linear": norm * (1 - t),
        "decreasing": 0.25 * (norm * np.cos(math.pi * t) + 1) ** 2,
        "increasing_decreasing": norm * np.sin(math.pi * t) ** 2,
    }[form]


def col(v):
    return v.reshape((-1,) + (1,) * len(SHAPE))


def main():
    check_derivatives()
    out = {}
    n = len(T_INNER)
    for path in PATHS:
        tc = T_COEF[path]
        a, s, da, ds = coefficients(path, tc)
        out[f"{path}.coef.t"] = tc
        out[f"{path}.coef.alpha"] = a
        out[f"{path}.coef.sigma"] = s
        out[f"{path}.coef.d_alpha"] = da
        out[f"{path}.coef.d_sigma"] = ds

        t = T_INNER
        a, s, da, ds = (col(c) for c in coefficients(path, t))
        x1 = RNG.normal(0.5, 0.8, size=(n,) + SHAPE)
        x0 = RNG.normal(size=(n,) + SHAPE)
        x_t = a * x1 + s * x0
        velocity = da * x1 + ds * x0
        score = -x0 / s
        out[f"{path}.t"] = t
        out[f"{path}.drift_variance"] = score_coefficient(path, t)
        out[f"{path}.x1"] = x1
        out[f"{path}.x0"] = x0
        out[f"{path}.x_t"] = x_t
        out[f"{path}.velocity"] = velocity
        out[f"{path}.score"] = score
        out[f"{path}.noise"] = x0

        for form in FORMS:
            for norm in NORMS:
                w = diffusion(form, path, t, norm)
                key = f"{path}.sde.{form}.{norm}"
                out[f"{key}.w"] = w
                out[f"{key}.drift"] = velocity + col(w) * score

        # A made-up model output; the losses are SiT's per-sample means.
        model_out = RNG.normal(size=(n,) + SHAPE)
        out[f"{path}.model_out"] = model_out
        lam = col(score_coefficient(path, t))
        weights = {"none": 1.0, "velocity": (lam / s) ** 2, "likelihood": lam / s**2}
        mean = lambda v: v.reshape(n, -1).mean(axis=1)
        out[f"{path}.loss.velocity.none"] = mean((model_out - velocity) ** 2)
        for name, w in weights.items():
            out[f"{path}.loss.noise.{name}"] = mean(w * (model_out - x0) ** 2)
            out[f"{path}.loss.score.{name}"] = mean(w * (s * model_out + x0) ** 2)

    os.makedirs(OUT, exist_ok=True)
    out = {k: np.ascontiguousarray(v, dtype=np.float64) for k, v in out.items()}
    path = os.path.join(OUT, "reference.safetensors")
    save_file(out, path)
    print(f"wrote {len(out)} arrays, {os.path.getsize(path)} bytes to {path}")


if __name__ == "__main__":
    main()
