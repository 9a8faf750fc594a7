"""drop_path / DropPath: identity reductions and the inverted-scaling expectation (Monte Carlo)."""

import math

import pytest
import torch

from scalelab.nn import DropPath, drop_path


def test_p0_and_eval_are_identity():
    x = torch.randn(8, 3, 4)
    assert drop_path(x, 0.0, True) is x
    assert drop_path(x, 0.7, False) is x
    m = DropPath(0.7).eval()
    assert torch.equal(m(x), x)
    assert torch.equal(DropPath(0.0).train()(x), x)


def test_p1_drops_everything():
    x = torch.randn(5, 2)
    assert torch.equal(drop_path(x, 1.0, True), torch.zeros_like(x))


def test_per_sample_mask_and_inverted_scaling():
    p = 0.3
    x = torch.ones(4000, 6)
    y = drop_path(x, p, True)
    rows = y[:, 0]
    # one draw per sample: every coordinate of a row equals the first one
    assert torch.equal(y, rows[:, None].expand_as(y))
    assert torch.all((rows == 0) | torch.isclose(rows, torch.tensor(1 / (1 - p))))
    # fraction dropped ~ p: binomial std sqrt(p(1-p)/n) = 0.0072; 5 sigma
    assert abs(float((rows == 0).float().mean()) - p) < 0.037


def test_expectation_is_kept_monte_carlo():
    # E[drop_path(x)] = x. Each sample's multiplier has mean 1 and std sqrt(p/(1-p)) = 0.655
    # at p = 0.3; over n = 200,000 draws the mean has std 0.0015: tolerance 0.0075 (5 sigma).
    p, n = 0.3, 200_000
    g = torch.Generator().manual_seed(1)
    x = torch.full((n, 1), 2.5)
    y = drop_path(x, p, True, generator=g)
    assert abs(float(y.mean()) / 2.5 - 1.0) < 5 * math.sqrt(p / (1 - p) / n)


def test_generator_reproducible_and_gradient_flows():
    x = torch.randn(64, 3, requires_grad=True)
    a = drop_path(x, 0.5, True, generator=torch.Generator().manual_seed(3))
    b = drop_path(x, 0.5, True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    a.sum().backward()
    kept = a.detach()[:, 0] != 0
    assert torch.allclose(x.grad[kept], torch.full_like(x.grad[kept], 2.0))
    assert torch.equal(x.grad[~kept], torch.zeros_like(x.grad[~kept]))


def test_extra_repr_and_bad_p():
    assert "p=0.2" in repr(DropPath(0.2))
    for bad in (-0.1, 1.5, float("nan"), "x"):
        with pytest.raises(ValueError, match="p"):
            drop_path(torch.ones(2), bad, True)
    with pytest.raises(ValueError, match="p must be in"):
        DropPath(2.0)
