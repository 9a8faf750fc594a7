"""LiPrune's Lipschitz score and importance selection against closed forms and peers."""

import math

import numpy as np
import pytest
import torch

from scalelab.prune.data import (
    grand_scores,
    lipschitz_scores,
    logit_scores,
    score_examples,
    select_subset,
)


def _random_binary(n=50, d=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64) * 2.0
    y = torch.randint(0, 2, (n,), generator=g)
    return x, y


def test_logistic_regression_closed_form():
    """Two-class softmax regression z = W x + b: p_1 = sigma((W_1 - W_0) x + b_1 - b_0), and
    dCE/dz = p - e_y = (p_1 - y)(-1, 1), so dCE/dW = (p - e_y) x^T, dCE/db = p - e_y and
    ||grad|| = sqrt(2) |sigma(w.x + b) - y| sqrt(||x||^2 + 1) with w = W_1 - W_0, b = b_1 - b_0."""
    x, y = _random_binary()
    torch.manual_seed(3)
    model = torch.nn.Linear(7, 2).double()
    w = (model.weight[1] - model.weight[0]).detach()
    b = (model.bias[1] - model.bias[0]).detach()
    closed = math.sqrt(2) * (torch.sigmoid(x @ w + b) - y).abs() * (x.pow(2).sum(1) + 1).sqrt()
    got = lipschitz_scores(model, x, y)
    assert np.allclose(got, closed.numpy(), rtol=1e-12, atol=0)
    # the global bound: sup over (W, b) of the same norm, ||p - e_y|| <= sqrt(2)
    glob = lipschitz_scores(model, x, y, bound="global")
    assert np.allclose(glob, math.sqrt(2) * (x.pow(2).sum(1) + 1).sqrt().numpy(), rtol=1e-12)
    assert np.all(glob >= got)


def test_linear_model_score_is_the_full_per_example_gradient_norm():
    """For a linear model the last layer is the whole model: the score equals GraNd
    (per-example autograd gradients of all parameters, an independent computation), with and
    without a bias."""
    g = torch.Generator().manual_seed(1)
    x = torch.randn(30, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 4, (30,), generator=g)
    for bias in (True, False):
        torch.manual_seed(0)
        model = torch.nn.Linear(5, 4, bias=bias).double()
        assert np.allclose(lipschitz_scores(model, x, y), grand_scores(model, x, y), rtol=1e-10)
        if not bias:
            p = torch.softmax(model(x), 1).detach()
            e = torch.nn.functional.one_hot(y, 4).double()
            want = (p - e).norm(dim=1) * x.norm(dim=1)
            assert np.allclose(lipschitz_scores(model, x, y), want.numpy(), rtol=1e-12)


def test_deep_net_last_layer_score_equals_autograd_on_the_last_layer():
    """Per example, the norm of d CE / d(last layer's weight, bias) by autograd (a loop), and
    the logits bound equals EL2N; the last-layer part is at most the full gradient (GraNd)."""
    g = torch.Generator().manual_seed(2)
    x = torch.randn(12, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (12,), generator=g)
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16),
                                torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()
    last = model[4]
    want = []
    for i in range(12):
        loss = torch.nn.functional.cross_entropy(model(x[i:i + 1]), y[i:i + 1])
        gw, gb = torch.autograd.grad(loss, [last.weight, last.bias])
        want.append(math.sqrt(float(gw.pow(2).sum() + gb.pow(2).sum())))
    got = lipschitz_scores(model, x, y)
    assert np.allclose(got, want, rtol=1e-10)
    assert np.all(got <= grand_scores(model, x, y) * (1 + 1e-12))
    el2n = logit_scores(model(x), y)["el2n"]
    assert np.allclose(lipschitz_scores(model, x, y, bound="logits"), el2n, rtol=1e-12)


def test_frozen_last_layer_parts_drop_out():
    x, y = _random_binary(10, 4)
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2).double()
    model.weight.requires_grad_(False)
    p = torch.softmax(model(x), 1).detach()
    resid = (p - torch.nn.functional.one_hot(y, 2).double()).norm(dim=1)
    assert np.allclose(lipschitz_scores(model, x, y), resid.numpy(), rtol=1e-12)  # bias only


def test_models_whose_output_is_not_the_last_linear_are_refused():
    x, y = _random_binary(5, 3)
    with pytest.raises(ValueError, match="no nn.Linear|has none"):
        lipschitz_scores(torch.nn.Sequential(torch.nn.Flatten()), x, y)
    softmaxed = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Softmax(dim=1)).double()
    with pytest.raises(ValueError, match="output of its last nn.Linear"):
        lipschitz_scores(softmaxed, x, y)
    with pytest.raises(ValueError, match="bound must be one of"):
        lipschitz_scores(torch.nn.Linear(3, 2).double(), x, y, bound="exact")


def test_score_examples_lipschitz_matches_the_pure_function():
    x, y = _random_binary(40, 5)
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 2).double()
    got = score_examples((x, y), ("lipschitz", "el2n"), model=model, epochs=0)
    assert np.allclose(got["lipschitz"], lipschitz_scores(model, x, y), rtol=1e-12)
    glob = score_examples((x, y), "lipschitz", model=model, epochs=0, lipschitz="global")
    assert np.allclose(glob["lipschitz"], lipschitz_scores(model, x, y, bound="global"))
    with pytest.raises(ValueError, match="lipschitz must be one of"):
        score_examples((x, y), "lipschitz", model=model, epochs=0, lipschitz="tight")
    # the default MLP trains and gives one finite, non-negative score per example
    s = score_examples((x.float(), y), "lipschitz", epochs=2, seed=1)["lipschitz"]
    assert s.shape == (40,) and np.all(np.isfinite(s)) and np.all(s >= 0)


def test_importance_selection_draws_proportionally_to_the_score():
    """k = 1: the kept example is a draw from p_i = s_i / sum s (Monte Carlo over 2,000 seeds,
    each frequency within 4.5 binomial standard errors); k > 1: exactly k distinct indices,
    the same subset for the same seed, never an example with score 0."""
    s = np.array([1.0, 2.0, 3.0, 4.0, 0.0])
    draws = np.array([select_subset(s, 1, "importance", seed=i)[0] for i in range(2000)])
    freq = np.bincount(draws, minlength=5) / 2000
    p = s / s.sum()
    se = np.sqrt(p * (1 - p) / 2000)
    assert np.all(np.abs(freq - p) <= 4.5 * se + 1e-12) and freq[4] == 0
    rng = np.random.default_rng(0)
    scores = rng.exponential(size=200)
    a = select_subset(scores, 0.3, "importance", seed=5)
    assert len(a) == 60 and len(set(a.tolist())) == 60 and np.all(np.diff(a) > 0)
    assert np.array_equal(a, select_subset(scores, 0.3, "importance", seed=5))
    # heavier scores are kept more often (the mean kept score exceeds the mean score)
    assert scores[a].mean() > scores.mean()


def test_importance_selection_errors():
    with pytest.raises(ValueError, match="scores >= 0"):
        select_subset([1.0, -0.5, 2.0], 1, "importance")
    with pytest.raises(ValueError, match="only 1 have a score > 0"):
        select_subset([1.0, 0.0, 0.0], 2, "importance")
    with pytest.raises(ValueError, match="got method 'importance'"):
        select_subset([1.0, 2.0, 3.0], 1, "importance", "random-exploration")
