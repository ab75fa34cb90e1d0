"""The DiT diffusion loss in PyTorch, written from the formulas of
src/diffusion/loss.rs (linear schedule, T = 1000, learned-range σ, ε-MSE plus
the variational bound in bits with the ε detached), for the test tooling:
bench/bench_torch.py times it, scripts/train_dynamics.py trains with it.
"""
import math

import torch


class Diffusion:
    """Linear schedule, T = 1000, learned-range σ, MSE + L_vb (DiT's)."""

    def __init__(s, T=1000):
        s.T = T
        betas = torch.linspace(1e-4, 0.02, T, dtype=torch.float64)
        alphas = 1 - betas
        ac = torch.cumprod(alphas, 0)
        ac_prev = torch.cat([torch.ones(1, dtype=torch.float64), ac[:-1]])
        pv = betas * (1 - ac_prev) / (1 - ac)
        f = lambda a: a.float()  # noqa: E731
        s.sqrt_ac, s.sqrt_1m_ac = f(ac.sqrt()), f((1 - ac).sqrt())
        s.sqrt_recip_ac, s.sqrt_recipm1_ac = f((1 / ac).sqrt()), f((1 / ac - 1).sqrt())
        s.coef1 = f(betas * ac_prev.sqrt() / (1 - ac))
        s.coef2 = f((1 - ac_prev) * alphas.sqrt() / (1 - ac))
        s.post_logvar = f(torch.log(torch.cat([pv[1:2], pv[1:]])))
        s.log_betas = f(torch.log(betas))

    @staticmethod
    def at(table, t):
        return table[t][:, None, None, None]

    def loss(s, model, x0, t, y, noise):
        a = s.at
        x_t = a(s.sqrt_ac, t) * x0 + a(s.sqrt_1m_ac, t) * noise
        out = model(x_t, t.float(), y)
        c = x0.shape[1]
        eps, v = out[:, :c], out[:, c:]
        mse = ((noise - eps) ** 2).flatten(1).mean(1)
        eps_d = eps.detach()
        true_mean = a(s.coef1, t) * x0 + a(s.coef2, t) * x_t
        true_logvar = a(s.post_logvar, t)
        frac = (v + 1) / 2
        logvar = frac * a(s.log_betas, t) + (1 - frac) * a(s.post_logvar, t)
        pred_x0 = a(s.sqrt_recip_ac, t) * x_t - a(s.sqrt_recipm1_ac, t) * eps_d
        mean = a(s.coef1, t) * pred_x0 + a(s.coef2, t) * x_t
        kl = 0.5 * (-1 + logvar - true_logvar + torch.exp(true_logvar - logvar)
                    + (true_mean - mean) ** 2 * torch.exp(-logvar))
        kl = kl.flatten(1).mean(1) / math.log(2)
        nll = -discretized_ll(x0, mean, 0.5 * logvar).flatten(1).mean(1) / math.log(2)
        vb = torch.where(t == 0, nll, kl)
        return (mse + vb).mean()


def approx_cdf(x):
    return 0.5 * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)))


def discretized_ll(x, means, log_scales):
    centered = x - means
    inv = torch.exp(-log_scales)
    cdf_plus = approx_cdf(inv * (centered + 1 / 255))
    cdf_min = approx_cdf(inv * (centered - 1 / 255))
    log_cdf_plus = torch.log(cdf_plus.clamp(min=1e-12))
    log_one_minus = torch.log((1 - cdf_min).clamp(min=1e-12))
    log_delta = torch.log((cdf_plus - cdf_min).clamp(min=1e-12))
    return torch.where(x < -0.999, log_cdf_plus, torch.where(x > 0.999, log_one_minus, log_delta))
