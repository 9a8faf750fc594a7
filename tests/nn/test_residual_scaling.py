"""Scaling across depth (Monte Carlo on wide random ReLU residual MLPs).

Closed forms (infinite width, y_0 = W_in x, block y + lambda W relu(y), W ~ N(0, sigma_w^2/n)):
forward q_L / q_0 = (1 + lambda^2 sigma_w^2 / 2)^L, so (1 + sigma_w^2/2)^L with lambda = 1 and
(1 + sigma_w^2/(2L))^L -> exp(sigma_w^2/2) with lambda = 1/sqrt(L). The backward pass of a
random output direction obeys the same recursion (gradient independence), so the squared
gradient norm at y_0 has the same ratio. Finite width n adds O(1/sqrt(n)) noise per layer.
"""

import math

import torch

from scalelab.nn import ResidualMLP

WIDTH, BATCH, SEEDS = 256, 16, 8


def _forward_ratios(mode, depth, sigma_w, seed, record=None):
    torch.manual_seed(seed)
    m = ResidualMLP(WIDTH, WIDTH, depth, 1, mode=mode, sigma_w=sigma_w)
    x = torch.randn(BATCH, WIDTH)
    out = {}
    with torch.no_grad():
        y = m.input(x)
        q0 = float(y.pow(2).mean())
        for k, block in enumerate(m.blocks, 1):
            y = block(y)
            if record is None or k in record:
                out[k] = float(y.pow(2).mean()) / q0
    return out


def test_standard_variance_grows_like_power():
    # One depth-256 plain ResNet holds the plain ResNets of every smaller depth as prefixes.
    # sigma_w^2 = 0.5 keeps 1.25^256 ~ 6e24 inside float32. At width 256 the log-ratio's
    # relative error has std ~5% per network (measured over 12 seeds) and a finite-width bias
    # of ~-3% at depth 256; the mean of 8 networks (std ~2%) must be within 10%.
    sw2 = 0.5
    depths = (4, 16, 64, 256)
    runs = [_forward_ratios("standard", 256, math.sqrt(sw2), s, depths) for s in range(SEEDS)]
    for L in depths:
        measured = sum(math.log(r[L]) for r in runs) / SEEDS
        assert abs(measured / (L * math.log1p(sw2 / 2)) - 1) < 0.10, (L, measured)


def test_stable_variance_tends_to_exp_half_sigma2():
    # sigma_w^2 = 2 (He): finite-L value (1 + 1/L)^L, limit e. Per-network spread ~6% at
    # width 256; the mean of 8 networks (std ~2%) within 10% of the closed form, and every
    # depth bounded by 1.1 e.
    sw2 = 2.0
    for L in (4, 16, 64, 256):
        measured = sum(_forward_ratios("stable", L, math.sqrt(sw2), s, {L})[L]
                       for s in range(SEEDS)) / SEEDS
        exact = (1 + sw2 / (2 * L)) ** L
        assert abs(measured / exact - 1) < 0.10, (L, measured, exact)
        assert measured < 1.1 * math.exp(sw2 / 2)
    assert abs((1 + sw2 / 512) ** 256 / math.exp(sw2 / 2) - 1) < 0.002  # the limit is reached


def _grad_ratio(mode, depth, seed, width=256):
    torch.manual_seed(seed)
    m = ResidualMLP(width, width, depth, 1, mode=mode).double()  # He init, sigma_w^2 = 2
    x = torch.randn(BATCH, width, dtype=torch.float64)
    y0 = m.input(x).detach().requires_grad_(True)
    y = y0
    for block in m.blocks:
        y = block(y)
    g = torch.randn_like(y)
    (y * g).sum().backward()
    return float(y0.grad.pow(2).mean() / g.pow(2).mean())


def test_gradient_norms_bounded_under_stable_and_exploding_under_standard():
    # Squared gradient ratio at width 256: per-network spread ~4%, so the mean of 4 networks
    # (std ~2%) must be within 15% of (1 + 1/L)^L under 1/sqrt(L); the plain ResNet follows
    # 2^L (log-ratio spread ~2% per network; within 10%).
    for L in (4, 16, 64, 256):
        stable = sum(_grad_ratio("stable", L, s) for s in range(4)) / 4
        assert abs(stable / (1 + 1 / L) ** L - 1) < 0.15, (L, stable)
        assert stable < 1.15 * math.e
    for L in (16, 64):
        standard = sum(math.log(_grad_ratio("standard", L, s)) for s in range(4)) / 4
        assert abs(standard / (L * math.log(2)) - 1) < 0.10, (L, standard)
