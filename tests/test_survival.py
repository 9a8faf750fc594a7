"""survival_rates (exact budget, bounds, errors), SenseMode vs a root-finder, kept-block Monte
Carlo, and block_sensitivities vs a hand-written forward without the block."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import brentq
from torch import nn

from scalelab.nn import ResidualMLP, ScaledResidual, block_sensitivities, survival_rates


@pytest.mark.parametrize("depth,budget", [(1, 0.4), (16, 8.0), (16, 15.99), (50, 30.5), (7, 7)])
def test_uniform_and_linear_meet_budget(depth, budget):
    u = survival_rates(depth, budget)
    assert u == pytest.approx([budget / depth] * depth)
    assert abs(sum(u) - budget) < 1e-9
    lin = survival_rates(depth, budget, "linear")
    assert abs(sum(lin) - budget) < 1e-9
    assert all(0 < p <= 1 for p in lin)
    assert all(a >= b for a, b in zip(lin, lin[1:], strict=False))  # decreasing with depth
    # Huang et al.'s form: p_l = 1 - (l/L)(1 - p_L)
    p_last = lin[-1]
    assert lin == pytest.approx([1 - (k / depth) * (1 - p_last) for k in range(1, depth + 1)])


def test_linear_minimum_and_budget_errors():
    with pytest.raises(ValueError, match=r"\(depth - 1\)/2 = 7.5"):
        survival_rates(16, 7.5, "linear")
    with pytest.raises(ValueError, match=r"\(depth - 1\)/2 = 7.5"):
        survival_rates(16, 3.0, "linear")
    assert survival_rates(16, 7.5 + 1e-6, "linear")[-1] > 0
    for bad in (0.0, -1.0, 16.5, float("nan"), "x"):
        with pytest.raises(ValueError, match="budget"):
            survival_rates(16, bad)
    with pytest.raises(ValueError, match="mode must be one of"):
        survival_rates(16, 4.0, "quadratic")


def _brentq_oracle(s, budget, p_min):
    """Independent solution of the SenseMode rule: root of sum clip(c w, p_min, 1) = budget."""
    s = np.asarray(s, float)
    w = s - min(0.0, s.min())
    w = np.ones_like(w) if w.max() <= 0 else w + 1e-9 * w.max()
    f = lambda logc: np.clip(np.exp(logc) * w, p_min, 1).sum() - budget  # noqa: E731
    logc = brentq(f, math.log(p_min / w.max()) - 1, math.log(1 / w.min()) + 1, xtol=1e-14)
    return np.clip(np.exp(logc) * w, p_min, 1)


ADVERSARIAL = [
    [1e-12, 1e12, 1.0, 3.0, 1e6, 0.0, 5e-7, 2.0],
    [-5.0, -1.0, 0.0, 0.5, 0.5, 100.0, -3.0, 7.0],
    [3.0] * 8,
    [-1.0] * 8,
    [0.0] * 7 + [1.0],
    list(np.logspace(-8, 8, 8)),
]


@pytest.mark.parametrize("s", ADVERSARIAL)
@pytest.mark.parametrize("budget", [0.4, 0.41, 1.0, 3.3, 6.0, 7.9, 8.0])
def test_sensemode_exact_budget_bounds_and_oracle(s, budget):
    p = survival_rates(8, budget, "sensemode", sensitivities=s)
    assert abs(sum(p) - budget) < 1e-9
    assert all(0.05 <= v <= 1.0 for v in p)
    order = np.argsort(s, kind="stable")
    assert all(p[i] <= p[j] + 1e-12 for i, j in zip(order, order[1:], strict=False))  # monotone
    np.testing.assert_allclose(p, _brentq_oracle(s, budget, 0.05), atol=1e-8)


def test_sensemode_clip_once_and_rescale_would_fail():
    # The naive rule (p = budget * s / sum s, clip, done) misses the budget here.
    s, budget = [10.0, 1.0, 1.0, 1.0], 2.0
    naive = np.clip(budget * np.array(s) / sum(s), 0.05, 1.0)
    assert abs(naive.sum() - budget) > 0.1
    p = survival_rates(4, budget, "sensemode", sensitivities=s)
    assert abs(sum(p) - budget) < 1e-9 and p[0] == 1.0


def test_sensemode_errors():
    with pytest.raises(ValueError, match="sensitivities is required"):
        survival_rates(4, 2.0, "sensemode")
    with pytest.raises(ValueError, match="one value per block"):
        survival_rates(4, 2.0, "sensemode", sensitivities=[1, 2, 3])
    with pytest.raises(ValueError, match=r"depth\*p_min = 0.4"):
        survival_rates(4, 0.3, "sensemode", sensitivities=[1, 2, 3, 4], p_min=0.1)
    with pytest.raises(ValueError, match="finite"):
        survival_rates(4, 2.0, "sensemode", sensitivities=[1, float("nan"), 3, 4])
    with pytest.raises(ValueError, match="p_min"):
        survival_rates(4, 2.0, "sensemode", sensitivities=[1, 2, 3, 4], p_min=0.0)


class _One(nn.Module):
    def forward(self, x):
        return torch.ones_like(x)


@pytest.mark.parametrize("mode", ["uniform", "linear", "sensemode"])
def test_mean_kept_blocks_equals_budget_monte_carlo(mode):
    # Block l adds p_l * keep_l / p_l = keep_l, so the output counts the kept blocks per sample.
    # Var = sum p(1-p) <= L/4 = 4: over n = 40,000 samples the mean has std <= 0.01; tol 0.05.
    depth, budget, n = 16, 11.0, 40_000
    sens = list(np.linspace(0.1, 2.0, depth))
    rates = survival_rates(depth, budget, mode, sensitivities=sens)
    net = nn.Sequential(*[ScaledResidual(_One(), p, drop_prob=1 - p) for p in rates]).train()
    with torch.no_grad():
        kept = net(torch.zeros(n, 1))
    assert abs(float(kept.mean()) - budget) < 0.05
    assert torch.allclose(kept, kept.round(), atol=1e-4)  # integer counts


def test_block_sensitivities_match_hand_forward():
    torch.manual_seed(0)
    model = ResidualMLP(6, 32, 5, 4, mode="stable").train()
    model.blocks[2].branch[1].weight.data.zero_()  # a block that does nothing: sensitivity 0
    batches = [(torch.randn(20, 6), torch.randint(0, 4, (20,))) for _ in range(3)]

    def loss_without(skip, x, y):
        h = model.input(x)
        for i, b in enumerate(model.blocks):
            if i != skip:
                h = h + b.scale * b.branch(h)
        return float(F.cross_entropy(model.output(h), y))

    with torch.no_grad():
        expected = [np.mean([loss_without(k, x, y) - loss_without(-1, x, y) for x, y in batches])
                    for k in range(5)]
    got = block_sensitivities(model, batches)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert got[2] == 0.0
    assert model.training and [b.scale for b in model.blocks] == pytest.approx([5 ** -0.5] * 5)
    sym = block_sensitivities(model, batches[0], kind="symmetric")
    assert all(v >= -1e-6 for v in sym)  # cross-entropy is convex in the logits
    with pytest.raises(ValueError, match="no residual blocks"):
        block_sensitivities(nn.Linear(2, 2), batches)
