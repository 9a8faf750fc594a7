"""drop_path / DropPath: identity reductions, both scaling conventions (inverted and the mean
network), and the expectation over masks (exact over a sample's two outcomes, and Monte Carlo)."""

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
    assert "scale_by_keep=False" in repr(DropPath(0.2, scale_by_keep=False))
    for bad in (1, "no", None):
        with pytest.raises(ValueError, match="scale_by_keep"):
            drop_path(torch.ones(2), 0.5, True, bad)
        with pytest.raises(ValueError, match="scale_by_keep"):
            DropPath(0.5, scale_by_keep=bad)
    for bad in (-0.1, 1.5, float("nan"), "x"):
        with pytest.raises(ValueError, match="p"):
            drop_path(torch.ones(2), bad, True)
    with pytest.raises(ValueError, match="p must be in"):
        DropPath(2.0)


@pytest.mark.parametrize("scale_by_keep", [True, False])
def test_p0_is_identity_in_both_conventions(scale_by_keep):
    x = torch.randn(8, 3)
    for training in (True, False):
        assert drop_path(x, 0.0, training, scale_by_keep) is x
        m = DropPath(0.0, scale_by_keep=scale_by_keep).train(training)
        assert torch.equal(m(x), x)


def test_mean_network_at_eval_without_scale_by_keep():
    # scale_by_keep=False: evaluation multiplies by the keep probability 1 - p, exactly.
    x = torch.randn(6, 5)
    for p in (0.25, 0.7, 1.0):
        assert torch.equal(drop_path(x, p, False, False), x * (1.0 - p))
        assert torch.equal(DropPath(p, scale_by_keep=False).eval()(x), x * (1.0 - p))
    assert drop_path(x, 0.7, False, True) is x  # the inverted convention: identity


@pytest.mark.parametrize("scale_by_keep", [True, False])
def test_expectation_equals_eval_output_exactly(scale_by_keep):
    # Each sample has two outcomes: dropped (0, probability p) or kept (value v, probability
    # 1 - p). Enumerating them: E = (1 - p) v + p * 0, which must equal the evaluation output.
    p = 0.3
    x = torch.randn(3000, 4, dtype=torch.float64)
    y = drop_path(x, p, True, scale_by_keep, generator=torch.Generator().manual_seed(0))
    kept = y[:, 0] != 0
    v = x / (1 - p) if scale_by_keep else x
    assert torch.equal(y[~kept], torch.zeros_like(y[~kept]))
    torch.testing.assert_close(y[kept], v[kept], rtol=1e-15, atol=0.0)
    expectation = (1 - p) * v + p * torch.zeros_like(v)
    torch.testing.assert_close(expectation, drop_path(x, p, False, scale_by_keep),
                               rtol=1e-15, atol=1e-15)
    # and the kept fraction is 1 - p: binomial std sqrt(p(1-p)/n) = 0.0084; 5 sigma
    assert abs(float(kept.double().mean()) - (1 - p)) < 0.042


def test_unscaled_masks_mean_matches_mean_network_monte_carlo():
    # scale_by_keep=False: E[drop_path(x) in training] = (1 - p) x = eval output. The multiplier
    # is Bernoulli(1 - p), std sqrt(p(1-p)) = 0.458 at p = 0.3; over n = 200,000 draws the mean
    # has std 0.0010: tolerance 5 sigma.
    p, n = 0.3, 200_000
    x = torch.full((n, 1), 2.5)
    y = drop_path(x, p, True, False, generator=torch.Generator().manual_seed(2))
    target = float(drop_path(x[:1], p, False, False))
    assert target == pytest.approx(2.5 * 0.7, rel=1e-7)
    assert abs(float(y.mean()) / target - 1.0) < 5 * math.sqrt(p * (1 - p) / n) / (1 - p)
