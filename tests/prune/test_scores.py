"""Pruning scores against hand-computed values on tiny networks, and SynFlow's conservation."""

import numpy as np
import pytest
import torch
from scipy import stats
from torch import nn

from scalelab.prune import (
    grasp_scores,
    magnitude_scores,
    prunable_layers,
    random_scores,
    snip_scores,
    synflow_masks,
    synflow_scores,
    topk_masks,
)

W1 = np.array([[0.5, -1.0], [2.0, 0.25], [-0.75, 1.5]])  # (3, 2)
W2 = np.array([[1.0, -0.5, 0.25], [-2.0, 0.5, 1.0]])  # (2, 3)
X = np.array([[1.0, -2.0]])
Y = np.array([[0.5, -1.0]])


def two_layer(bias: bool = False, dtype=torch.float64) -> nn.Sequential:
    net = nn.Sequential(nn.Linear(2, 3, bias=bias), nn.Linear(3, 2, bias=bias)).to(dtype)
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor(W1))
        net[1].weight.copy_(torch.tensor(W2))
        if bias:
            net[0].bias.copy_(torch.tensor([0.1, -0.2, 0.3], dtype=torch.float64))
            net[1].bias.copy_(torch.tensor([-0.4, 0.5], dtype=torch.float64))
    return net


def half_mse(out, y):
    return 0.5 * ((out - y) ** 2).sum()


def mse_grads(w1, w2, x=X, y=Y):
    """Closed-form gradients of 0.5 ||W2 W1 x - y||^2 (no autograd)."""
    h = x @ w1.T  # (1, 3)
    r = h @ w2.T - y  # (1, 2)
    return w2.T @ r.T @ x, r.T @ h  # dL/dW1 (3, 2), dL/dW2 (2, 3)


def batch():
    return torch.tensor(X), torch.tensor(Y)


def test_magnitude_is_abs_weight():
    s = magnitude_scores(two_layer())
    np.testing.assert_array_equal(s["0"].numpy(), np.abs(W1))
    np.testing.assert_array_equal(s["1"].numpy(), np.abs(W2))


def test_snip_matches_hand_computed_gradient():
    g1, g2 = mse_grads(W1, W2)
    s = snip_scores(two_layer(), batch(), half_mse)
    np.testing.assert_allclose(s["0"].numpy(), np.abs(W1 * g1), rtol=1e-12)
    np.testing.assert_allclose(s["1"].numpy(), np.abs(W2 * g2), rtol=1e-12)


def test_snip_default_cross_entropy_by_hand():
    net = nn.Linear(3, 4, bias=False).double()
    w = torch.randn(4, 3, dtype=torch.float64)
    with torch.no_grad():
        net.weight.copy_(w)
    x, y = torch.randn(5, 3, dtype=torch.float64), torch.tensor([0, 3, 1, 1, 2])
    p = torch.softmax(x @ w.T, dim=1).numpy()
    onehot = np.eye(4)[y.numpy()]
    grad = (p - onehot).T @ x.numpy() / 5  # mean cross-entropy
    s = snip_scores(net, (x, y))
    np.testing.assert_allclose(s["Linear"].numpy(), np.abs(w.numpy() * grad), rtol=1e-10)


def test_snip_over_an_iterable_averages_the_gradient():
    net = nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3))
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    whole = snip_scores(net, (x, y))
    parts = snip_scores(net, [(x[:4], y[:4]), (x[4:], y[4:])])  # two equal halves
    for k in whole:
        torch.testing.assert_close(whole[k], parts[k], rtol=1e-5, atol=1e-7)
    assert all(p.grad is None for p in net.parameters())  # no gradients left behind


def grads_at_temperature(w1, w2, t):
    """Gradients of 0.5 ||(W2 W1 x) / T - y||^2 = L(W1, W2 / T), by the chain rule."""
    g1, g2 = mse_grads(w1, w2 / t)
    return g1, g2 / t


@pytest.mark.parametrize("temperature", [1.0, 3.0])
def test_grasp_matches_finite_difference_hessian_gradient(temperature):
    g1, g2 = grads_at_temperature(W1, W2, temperature)
    eps = 1e-5
    plus = grads_at_temperature(W1 + eps * g1, W2 + eps * g2, temperature)
    minus = grads_at_temperature(W1 - eps * g1, W2 - eps * g2, temperature)
    hg1, hg2 = ((p - m) / (2 * eps) for p, m in zip(plus, minus, strict=True))
    s = grasp_scores(two_layer(), batch(), half_mse, temperature=temperature)
    np.testing.assert_allclose(s["0"].numpy(), W1 * hg1, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(s["1"].numpy(), W2 * hg2, rtol=1e-6, atol=1e-9)


def test_synflow_matches_hand_computed_flow_with_biases():
    net = two_layer(bias=True)
    a1, a2 = np.abs(W1), np.abs(W2)
    b1 = np.abs([0.1, -0.2, 0.3])
    # R = 1^T |W2| (|W1| 1 + |b1|) + 1^T |b2|
    s = synflow_scores(net)
    np.testing.assert_allclose(s["0"].numpy(), a1 * a2.sum(0)[:, None], rtol=1e-12)
    np.testing.assert_allclose(s["1"].numpy(), a2 * (a1.sum(1) + b1)[None, :], rtol=1e-12)
    # the caller's model keeps its signs and dtype
    np.testing.assert_array_equal(net[0].weight.detach().numpy(), W1)


def relu_chain(widths, seed=0):
    torch.manual_seed(seed)
    layers = []
    for a, b in zip(widths[:-1], widths[1:], strict=True):
        layers += [nn.Linear(a, b, bias=False), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def test_synflow_conservation_per_layer():
    net = relu_chain([7, 20, 13, 30, 5])
    s = synflow_scores(net)
    sums = [float(v.sum()) for v in s.values()]
    # R computed independently: 1^T |W_L| ... |W_1| 1
    r = np.ones(7)
    for _, m in prunable_layers(net):
        r = np.abs(m.weight.detach().double().numpy()) @ r
    np.testing.assert_allclose(sums, [r.sum()] * 4, rtol=1e-10)
    # still conserved under masks (a masked chain is still a linear / ReLU chain)
    masks = topk_masks(s, 0.5)
    masked = [float(v.sum()) for v in synflow_scores(net, masks=masks).values()]
    np.testing.assert_allclose(masked, [masked[0]] * 4, rtol=1e-10)


def test_synflow_iterative_one_round_is_one_shot_topk():
    net = relu_chain([10, 30, 30, 4])
    one = synflow_masks(net, 0.8, iterations=1)
    ref = topk_masks(synflow_scores(net), 0.8)
    assert all(torch.equal(one[k], ref[k]) for k in one)
    many = synflow_masks(net, 0.8, iterations=20)
    assert sum(int(m.sum()) for m in many.values()) == round(0.2 * 1320)


def test_synflow_needs_an_input_shape_for_conv_nets():
    net = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2))
    with pytest.raises(ValueError, match="input_shape"):
        synflow_scores(net)
    by_shape = synflow_scores(net, input_shape=(1, 6, 6))
    by_data = synflow_scores(net, data=(torch.zeros(3, 1, 6, 6), torch.zeros(3)))
    assert all(torch.equal(by_shape[k], by_data[k]) for k in by_shape)


def test_random_scores_are_uniform_and_seeded():
    net = nn.Sequential(nn.Linear(100, 50), nn.Linear(50, 40))
    a, b = random_scores(net, seed=3), random_scores(net, seed=3)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["0"], random_scores(net, seed=4)["0"])
    flat = torch.cat([v.flatten() for v in a.values()]).numpy()
    assert stats.kstest(flat, "uniform").pvalue > 1e-3
    assert stats.kstest(flat, "norm").pvalue < 1e-10  # the test can tell a wrong law
    # global random pruning keeps about the same fraction in every layer (binomial, 5 sigma)
    masks = topk_masks(a, 0.9)
    for k, m in masks.items():
        n = m.numel()
        assert abs(int(m.sum()) - 0.1 * n) < 5 * (0.09 * n) ** 0.5, k


def test_synflow_runs_batch_norm_in_eval_mode_on_a_copy():
    net = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    with torch.no_grad():
        net[1].running_mean.fill_(-0.5)  # abs'd in the copy, as the reference code does
    net.train()
    s64 = synflow_scores(net)  # batch of one: only possible with BN in eval mode
    s32 = synflow_scores(net, dtype=torch.float32)
    assert net.training and net[1].running_mean[0] == -0.5  # the caller's model untouched
    for k in s64:
        assert s64[k].dtype == torch.float64 and s32[k].dtype == torch.float32
        torch.testing.assert_close(s32[k].double(), s64[k], rtol=1e-5, atol=1e-8)
    # by hand: eval BN is the affine map (h - |mu|) / sqrt(|var| + eps) * |gamma| + |beta|
    w1, w2 = net[0].weight.detach().double().abs(), net[3].weight.detach().double().abs()
    bn = net[1]
    scale = bn.weight.detach().double().abs() / torch.sqrt(bn.running_var.double() + bn.eps)
    h = w1.sum(1) + net[0].bias.detach().double().abs()
    z = (h - 0.5) * scale + bn.bias.detach().double().abs()
    dz = w2.sum(0) * (z > 0)  # dR/dz through the ReLU
    torch.testing.assert_close(s64["0"], w1 * (dz * scale)[:, None])
