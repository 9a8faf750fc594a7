"""Stochastic masks: the linear-regression identity, gradient estimators against the exact
gradient of the expectation (all masks enumerated), the density projection, thresholding."""

import itertools

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from scalelab.prune import (
    expected_masked_mse,
    is_stochastic,
    local_reparam_linear,
    prune_at_init,
    relaxed_bernoulli,
    remove_stochastic_masks_,
    rescale_to_eoc_,
    sampled_network,
    stochastic_masks_,
    threshold_masks_,
    train_masks,
)

DT = torch.float64


def all_masks(shape):
    """Every 0/1 mask of ``shape``, as a (2^numel, *shape) tensor."""
    n = int(torch.tensor(shape).prod())
    return torch.tensor(list(itertools.product([0.0, 1.0], repeat=n)), dtype=DT).view(-1, *shape)


def mask_probability(masks, p):
    """P(m) = prod p^m (1 - p)^(1 - m) for each mask in the stack."""
    return (p ** masks * (1 - p) ** (1 - masks)).flatten(1).prod(dim=1)


def regression_problem(seed=0, n=7, d=3, k=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=DT)
    y = torch.randn(n, k, generator=g, dtype=DT)
    w = torch.randn(k, d, generator=g, dtype=DT)
    p = torch.rand(k, d, generator=g, dtype=DT) * 0.8 + 0.1
    return x, y, w, p


# --- the linear-regression identity -------------------------------------------------------

def test_identity_by_exhaustive_enumeration():
    x, y, w, p = regression_problem()
    masks = all_masks(w.shape)  # 64 masks
    losses = ((y - torch.einsum("nd,skd->snk", x, w * masks)) ** 2).sum(dim=(1, 2))
    expected = float((mask_probability(masks, p) * losses).sum())
    at_mean, penalty = expected_masked_mse(x, y, w, p)
    assert float(at_mean + penalty) == pytest.approx(expected, rel=1e-12)
    # the two parts, written out independently
    assert float(at_mean) == pytest.approx(float(((y - x @ (w * p).T) ** 2).sum()), rel=1e-12)
    by_hand = sum(float(p[j, i] * (1 - p[j, i]) * w[j, i] ** 2 * (x[:, i] ** 2).sum())
                  for j in range(2) for i in range(3))
    assert float(penalty) == pytest.approx(by_hand, rel=1e-12)
    # a 1-D weight (one output) is the same formula
    one = expected_masked_mse(x, y[:, 0], w[0], p[0])
    rows = expected_masked_mse(x, y[:, :1], w[:1], p[:1])
    assert float(sum(one)) == pytest.approx(float(sum(rows)), rel=1e-12)


def linear_with_masks(w, p, estimator="concrete"):
    layer = nn.Linear(w.shape[1], w.shape[0], bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(w)
    net = nn.Sequential(layer)
    stochastic_masks_(net, {"0": torch.ones_like(w)}, sparsity=0.5, estimator=estimator)
    with torch.no_grad():
        layer.weight_logit.copy_(torch.log(p) - torch.log1p(-p))
    return net


def test_identity_by_monte_carlo_through_the_masks():
    x, y, w, p = regression_problem(seed=1)
    closed = float(sum(expected_masked_mse(x, y, w, p)))
    # hard Bernoulli masks drawn by the module hooks (eval mode), one per forward
    net = linear_with_masks(w, p).eval()
    with torch.no_grad():
        draws = torch.stack([((y - net(x)) ** 2).sum() for _ in range(1500)])
    se = float(draws.std() / len(draws) ** 0.5)
    assert abs(float(draws.mean()) - closed) < 4 * se
    # the local reparametrisation trick is exact in expectation for linear regression
    g = torch.Generator().manual_seed(2)
    eps = torch.randn(20000, *y.shape, generator=g, dtype=DT)
    lrt = ((y - local_reparam_linear(x, w, p, eps=eps)) ** 2).sum(dim=(1, 2))
    se = float(lrt.std() / len(lrt) ** 0.5)
    assert abs(float(lrt.mean()) - closed) < 4 * se
    # and the penalty is what separates it from the loss at the mean mask
    at_mean, penalty = expected_masked_mse(x, y, w, p)
    assert float(penalty) > 10 * se and abs(float(lrt.mean()) - float(at_mean)) > 5 * se


def test_hard_masks_follow_their_probabilities():
    w = torch.ones(40, 50, dtype=DT)
    p = torch.linspace(0.05, 0.95, 2000, dtype=DT).view(40, 50)
    net = linear_with_masks(w, p).eval()
    counts = torch.zeros_like(p)
    for _ in range(200):
        net(torch.ones(1, 50, dtype=DT))
        m = net[0].weight_mask
        assert set(m.unique().tolist()) <= {0.0, 1.0}
        counts += m
    z = (counts - 200 * p) / torch.sqrt(200 * p * (1 - p))  # binomial, per weight
    assert float(z.abs().max()) < 5.5 and abs(float(z.mean())) < 0.2


# --- gradient estimators against the exact gradient of the expectation --------------------

W1 = torch.tensor([[0.8, -0.5], [0.3, 1.1]], dtype=DT)
W2 = torch.tensor([[1.2, -0.7]], dtype=DT)
X = torch.tensor([[1.0, -0.5], [0.3, 0.8], [-1.2, 0.4]], dtype=DT)
Y = torch.tensor([[0.5], [-0.3], [0.9]], dtype=DT)
L1 = torch.tensor([[1.0, -0.5], [0.2, 1.5]], dtype=DT)
L2 = torch.tensor([[0.7, -1.0]], dtype=DT)


def two_layer_loss(m1, m2):
    """0.5-free squared loss of the linear net X W1'^T W2'^T, batched over masks."""
    out = torch.einsum("nd,shd,soh->sno", X, W1 * m1, W2 * m2)
    return ((out - Y) ** 2).sum(dim=(1, 2))


def exact_two_layer_gradient():
    a, b = L1.clone().requires_grad_(), L2.clone().requires_grad_()
    masks = all_masks((6,))
    m1, m2 = masks[:, :4].reshape(-1, 2, 2), masks[:, 4:].reshape(-1, 1, 2)
    prob = mask_probability(m1, torch.sigmoid(a)) * mask_probability(m2, torch.sigmoid(b))
    grads = torch.autograd.grad((prob * two_layer_loss(m1, m2)).sum(), [a, b])
    return torch.cat([g.flatten() for g in grads])


def concrete_gradient(temperature, samples=200_000, chunks=20, seed=0):
    """Monte Carlo mean of the relaxed-mask gradient and its standard error."""
    g = torch.Generator().manual_seed(seed)
    means = []
    for _ in range(chunks):
        a, b = L1.clone().requires_grad_(), L2.clone().requires_grad_()
        s = samples // chunks
        m1 = relaxed_bernoulli(a.expand(s, 2, 2), temperature,
                               torch.rand(s, 2, 2, generator=g, dtype=DT))
        m2 = relaxed_bernoulli(b.expand(s, 1, 2), temperature,
                               torch.rand(s, 1, 2, generator=g, dtype=DT))
        grads = torch.autograd.grad(two_layer_loss(m1, m2).mean(), [a, b])
        means.append(torch.cat([gr.flatten() for gr in grads]))
    stack = torch.stack(means)
    return stack.mean(0), stack.std(0) / chunks ** 0.5


def test_concrete_gradient_converges_as_the_temperature_falls():
    exact = exact_two_layer_gradient()
    errors, ses = [], []
    for t in (1.0, 0.3, 0.1):
        est, se = concrete_gradient(t)
        errors.append(float((est - exact).norm() / exact.norm()))
        ses.append(float(se.norm() / exact.norm()))
    # biased at high temperature (far beyond the Monte Carlo error) ...
    assert errors[0] > 0.2 and errors[0] > 20 * ses[0]
    # ... and the bias shrinks steadily as the relaxation tightens
    assert errors[0] > errors[1] + 5 * ses[1] and errors[1] > errors[2] + 3 * ses[2]
    assert errors[2] < 0.04 + 3 * ses[2]


def test_lrt_gradient_is_unbiased_for_linear_regression():
    x, y, w, p0 = regression_problem(seed=3, n=5)
    logits = (torch.log(p0) - torch.log1p(-p0))
    a = logits.clone().requires_grad_()
    masks = all_masks(w.shape)
    losses = ((y - torch.einsum("nd,skd->snk", x, w * masks)) ** 2).sum(dim=(1, 2))
    exact, = torch.autograd.grad((mask_probability(masks, torch.sigmoid(a)) * losses).sum(), a)
    g = torch.Generator().manual_seed(4)
    means = []
    for _ in range(20):
        b = logits.clone().requires_grad_()
        eps = torch.randn(5000, *y.shape, generator=g, dtype=DT)
        out = local_reparam_linear(x, w, torch.sigmoid(b), eps=eps)
        grad, = torch.autograd.grad(((y - out) ** 2).sum(dim=(1, 2)).mean(), b)
        means.append(grad)
    stack = torch.stack(means)
    est, se = stack.mean(0), stack.std(0) / 20 ** 0.5
    assert bool(((est - exact).abs() < 4 * se + 1e-9).all())
    assert float(se.max()) < 0.05 * float(exact.abs().max())  # the check has power


def test_module_hooks_use_the_estimators():
    x, y, w, p = regression_problem(seed=5)
    for estimator in ("concrete", "lrt"):
        net = linear_with_masks(w, p, estimator).train()
        torch.manual_seed(11)
        out = net(x)
        torch.manual_seed(11)
        if estimator == "lrt":
            ref = local_reparam_linear(x, w, p, eps=torch.randn(y.shape, dtype=DT))
        else:
            logit = torch.log(p) - torch.log1p(-p)
            ref = x @ (w * relaxed_bernoulli(logit, 0.5, torch.rand(w.shape, dtype=DT))).T
        torch.testing.assert_close(out, ref)
        out.sum().backward()
        assert net[0].weight_logit.grad is not None


# --- density, thresholding, life cycle ---------------------------------------------------

def small_net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 30), nn.ReLU(), nn.Linear(30, 25), nn.ReLU(),
                         nn.Linear(25, 4))


def batch(seed=0, n=64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 12, generator=g), torch.randint(0, 4, (n,), generator=g)


N_WEIGHTS = 12 * 30 + 30 * 25 + 25 * 4


@pytest.mark.parametrize("estimator", ["concrete", "lrt"])
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_expected_density_stays_at_target_during_training(estimator, scope):
    net = small_net()
    sm = stochastic_masks_(net, "magnitude", sparsity=0.85, estimator=estimator, scope=scope)
    target = round(0.15 * N_WEIGHTS) / N_WEIGHTS
    assert sm.expected_density() == pytest.approx(target, abs=1e-7)  # float32 logits
    seen = []
    rec = train_masks(sm, batch(), steps=30, lr=0.2,
                      callback=lambda step, loss: seen.append(sm.expected_density()))
    assert len(seen) == 30 and max(abs(d - target) for d in seen) < 1e-3
    assert max(abs(d - target) for d in rec.density) < 1e-3
    if scope == "layer":
        for (_, m), k in zip(sm.layers, sm.kept, strict=True):
            assert float(torch.sigmoid(m.weight_logit.detach().double()).sum()) == pytest.approx(
                k, abs=1e-3)
    # the projection is what holds it: the same steps without it drift away
    free = small_net()
    sm2 = stochastic_masks_(free, "magnitude", sparsity=0.85, estimator=estimator)
    opt = torch.optim.Adam(sm2.parameters(), lr=0.2)
    x, y = batch()
    free.train()
    for _ in range(30):
        opt.zero_grad()
        nn.functional.cross_entropy(free(x), y).backward()
        opt.step()
    assert abs(sm2.expected_density() - target) > 1e-3


@pytest.mark.parametrize("sparsity", [0.5, 0.9, 0.97])
@pytest.mark.parametrize("scope", ["global", "layer"])
def test_thresholding_keeps_exactly_the_most_probable(sparsity, scope):
    net = small_net(1)
    sm = stochastic_masks_(net, "random", sparsity=0.8)
    train_masks(sm, batch(1), steps=10, lr=0.3)
    probs = sm.probabilities()
    rep = threshold_masks_(net, sparsity, scope=scope)
    if scope == "global":
        assert rep.kept == round((1 - sparsity) * N_WEIGHTS)
        kept = torch.cat([probs[n][m.weight_mask.bool()] for n, m in sm.layers])
        dropped = torch.cat([probs[n][~m.weight_mask.bool()] for n, m in sm.layers])
        assert float(kept.min()) >= float(dropped.max())
    else:
        for ly in rep.layers:
            assert ly.kept == round((1 - sparsity) * ly.total)
    for _, m in sm.layers:
        assert torch_prune.is_pruned(m) and not is_stochastic(m)
        assert set(m.weight_mask.unique().tolist()) <= {0.0, 1.0}
        assert (m.weight[m.weight_mask == 0] == 0).all()
    assert sum(int(m.weight_mask.sum()) for _, m in sm.layers) == rep.kept


def test_start_from_a_prune_report_keeps_the_pruned_weights():
    net = small_net(2)
    rep = prune_at_init(net, 0.9, "magnitude", scope="layer", rescale=False)
    orig = net[0].weight_orig.detach().clone()
    start = net[0].weight_mask.detach().clone()
    sm = stochastic_masks_(net, rep, mix=0.2)
    assert sm.sparsity == 0.9 and is_stochastic(net[0])
    torch.testing.assert_close(net[0].weight_orig, orig)  # pruned values not zeroed
    p = torch.sigmoid(net[0].weight_logit.detach())
    assert float(p[start == 1].min()) > 0.7 and float(p[start == 0].max()) < 0.05
    # thresholding straight away gives back the start mask
    threshold_masks_(net, 0.9)
    assert torch.equal(net[0].weight_mask, start)


def test_sampled_network_is_fixed_inside_and_fresh_outside():
    net = small_net(3)
    stochastic_masks_(net, "magnitude", sparsity=0.5, weight_noise=0.05)
    x, _ = batch()
    net.eval()
    with sampled_network(net, torch.Generator().manual_seed(0)):
        a, b = net(x), net(x)
    assert torch.equal(a, b)
    with sampled_network(net, torch.Generator().manual_seed(0)):
        c = net(x)
    assert torch.equal(a, c)  # seeded draws repeat
    assert not torch.equal(net(x), net(x))  # outside: a new network per forward


def test_remove_restores_the_dense_model():
    net = small_net(4)
    dense = {k: v.clone() for k, v in net.state_dict().items()}
    stochastic_masks_(net, "magnitude", sparsity=0.7)
    remove_stochastic_masks_(net)
    assert set(net.state_dict()) == set(dense)
    assert all(torch.equal(net.state_dict()[k], v) for k, v in dense.items())
    assert isinstance(net[0].weight, nn.Parameter)


@pytest.mark.parametrize("kwargs,match", [
    (dict(sparsity=1.0), "sparsity must be in"),
    (dict(sparsity=0.0), "sparsity must be in"),
    (dict(sparsity=0.5, estimator="reinforce"), "estimator must be one of"),
    (dict(sparsity=0.5, temperature=0.0), "temperature must be"),
    (dict(sparsity=0.5, mix=0.0), "mix must be in"),
    (dict(sparsity=0.5, init="stochastic"), "must be a deterministic method"),
    (dict(sparsity=0.5, init="l1"), "method must be one of"),
    (dict(init="magnitude"), "sparsity is required"),
    (dict(sparsity=0.5, init=3), "init must be a method name"),
    (dict(sparsity=0.5, init="snip"), "needs data"),
    (dict(sparsity=0.9999), "stochastic mask needs between 1 and N - 1"),
])
def test_bad_inputs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        stochastic_masks_(small_net(), **kwargs)


def test_misuse_is_refused():
    net = small_net()
    with pytest.raises(ValueError, match="has no stochastic mask"):
        threshold_masks_(net, 0.5)
    stochastic_masks_(net, "magnitude", sparsity=0.5)
    with pytest.raises(ValueError, match="already has stochastic masks"):
        stochastic_masks_(net, "magnitude", sparsity=0.5)
    with pytest.raises(ValueError, match="stochastic mask; call scalelab.prune.threshold"):
        rescale_to_eoc_(net)
    with pytest.raises(ValueError, match="already pruned"):
        prune_at_init(net, 0.5)
