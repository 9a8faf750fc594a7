"""PAC-Bayes bounds: the binary kl and its inverse against definitions and root finders, the
bounds' monotonicity and coverage, KLs against peers, and certificates on enumerable nets."""

import math

import mpmath
import numpy as np
import pytest
import torch
from scipy import optimize
from torch import nn

from scalelab.bounds import (
    CATONI_GRID,
    bound_surrogate,
    bounded_cross_entropy,
    catoni_bound,
    certify,
    distribution_kl,
    kl_bernoulli,
    kl_bernoulli_logits,
    kl_inverse,
    maurer_bound,
    mcallester_bound,
    sample_convergence_bound,
    sampled_errors,
    train_with_bound,
)
from scalelab.prune import mask_distribution, mask_kl, stochastic_masks_


def kl_by_definition(q, p):
    """q log(q/p) + (1-q) log((1-q)/(1-p)), with 0 log 0 = 0, in plain Python."""
    total = 0.0
    if q > 0:
        total += q * math.log(q / p)
    if q < 1:
        total += (1 - q) * math.log((1 - q) / (1 - p))
    return total


# --- the binary kl ------------------------------------------------------------------------

@pytest.mark.parametrize("q,p", [(0.1, 0.3), (0.5, 0.5), (0.0, 0.2), (1.0, 0.7), (0.93, 0.01),
                                 (1e-9, 0.5), (0.4, 1 - 1e-12)])
def test_kl_bernoulli_is_its_definition(q, p):
    assert kl_bernoulli(q, p) == pytest.approx(kl_by_definition(q, p), rel=1e-12, abs=1e-300)


def test_kl_bernoulli_edges_and_arrays():
    assert kl_bernoulli(0.3, 0.3) == 0.0
    assert kl_bernoulli(0.3, 0.0) == math.inf and kl_bernoulli(0.3, 1.0) == math.inf
    assert kl_bernoulli(0.0, 0.0) == 0.0 and kl_bernoulli(1.0, 1.0) == 0.0
    q, p = np.linspace(0.05, 0.95, 7), np.linspace(0.9, 0.1, 7)
    want = [kl_by_definition(a, b) for a, b in zip(q, p, strict=True)]
    np.testing.assert_allclose(kl_bernoulli(q, p), want, rtol=1e-12, atol=1e-15)


def test_kl_from_logits_matches_high_precision():
    mpmath.mp.dps = 50
    for a, b in [(0.3, -1.2), (5.0, 2.0), (40.0, 30.0), (-38.0, 12.0), (60.0, 61.0)]:
        q, p = mpmath.mpf(1) / (1 + mpmath.e ** -a), mpmath.mpf(1) / (1 + mpmath.e ** -b)
        ref = float(q * mpmath.log(q / p) + (1 - q) * mpmath.log((1 - q) / (1 - p)))
        assert kl_bernoulli_logits(a, b) == pytest.approx(ref, rel=1e-9, abs=1e-300), (a, b)
    a, b = np.array([0.5, -2.0]), np.array([1.5, 0.1])
    sig = 1 / (1 + np.exp(-np.stack([a, b])))
    np.testing.assert_allclose(kl_bernoulli_logits(a, b), kl_bernoulli(sig[0], sig[1]),
                               rtol=1e-12)


# --- its upper inverse ----------------------------------------------------------------------

@pytest.mark.parametrize("q", [0.0, 0.02, 0.1, 0.37, 0.8, 0.999])
@pytest.mark.parametrize("bound", [1e-6, 0.01, 0.2, 1.5])
def test_kl_inverse_against_a_root_finder(q, bound):
    p = kl_inverse(q, bound)
    top = 1 - 1e-15
    if kl_by_definition(q, top) <= bound:
        assert p >= top
        return
    root = optimize.brentq(lambda x: kl_by_definition(q, x) - bound, q, top, xtol=1e-15,
                           rtol=1e-15)
    assert root - 1e-15 <= p <= root + 1.1e-12  # the upper end of a 1e-12 bracket


def test_kl_inverse_known_values_solved_both_ways():
    for b in (0.01, 0.3, 2.0):  # kl(0 || p) = -log(1 - p)
        assert kl_inverse(0.0, b) == pytest.approx(1 - math.exp(-b), abs=2e-12)
    for q, p in [(0.05, 0.2), (0.3, 0.31), (0.6, 0.95), (0.0, 0.5)]:
        b = kl_by_definition(q, p)
        assert kl_inverse(q, b) == pytest.approx(p, abs=2e-12)
        assert kl_by_definition(q, kl_inverse(q, b)) == pytest.approx(b, rel=1e-8)
    assert kl_inverse(0.2, 0.0) == 0.2 and kl_inverse(1.0, 0.5) == 1.0
    assert kl_inverse(0.2, math.inf) == 1.0


# --- the bounds -----------------------------------------------------------------------------

def bounds_at(emp, kl, n, delta):
    return {"maurer": maurer_bound(emp, kl, n, delta),
            "mcallester": mcallester_bound(emp, kl, n, delta),
            "catoni": catoni_bound(emp, kl, n, delta),
            "catoni_c2": catoni_bound(emp, kl, n, delta, c=2.0)}


def test_every_bound_is_monotone_in_n_delta_kl_and_emp():
    ns = [1, 2, 5, 10, 100, 1000, 10 ** 4, 10 ** 6]
    for name in bounds_at(0.1, 5.0, 10, 0.05):
        by_n = [bounds_at(0.1, 5.0, n, 0.05)[name] for n in ns]
        assert all(a >= b - 1e-12 for a, b in zip(by_n, by_n[1:], strict=False)), name
        assert by_n[-1] < by_n[3]  # and it does fall
        by_delta = [bounds_at(0.1, 5.0, 1000, d)[name] for d in (1e-6, 1e-3, 0.05, 0.5, 0.99)]
        assert all(a >= b - 1e-12 for a, b in zip(by_delta, by_delta[1:], strict=False)), name
        by_kl = [bounds_at(0.1, k, 1000, 0.05)[name] for k in (0.0, 1.0, 10.0, 100.0, 1e4)]
        assert all(a <= b + 1e-12 for a, b in zip(by_kl, by_kl[1:], strict=False)), name
        by_emp = [bounds_at(e, 5.0, 1000, 0.05)[name] for e in (0.0, 0.01, 0.1, 0.5, 1.0)]
        assert all(a <= b + 1e-12 for a, b in zip(by_emp, by_emp[1:], strict=False)), name
        assert all(e <= bounds_at(e, 5.0, 1000, 0.05)[name] <= 1 for e in (0.0, 0.3, 1.0))


def test_bounds_by_their_formulas_and_relations():
    emp, kl, n, delta = 0.08, 12.0, 2000, 0.025
    rhs = (kl + math.log(2 * math.sqrt(n) / delta)) / n
    assert maurer_bound(emp, kl, n, delta) == kl_inverse(emp, rhs)
    assert mcallester_bound(emp, kl, n, delta) == pytest.approx(emp + math.sqrt(rhs / 2))
    c = 1.7
    cat = (1 - math.exp(-c * emp - (kl + math.log(1 / delta)) / n)) / (1 - math.exp(-c))
    assert catoni_bound(emp, kl, n, delta, c=c) == pytest.approx(cat, rel=1e-12)
    # Pinsker: McAllester is never below Maurer
    for e in (0.0, 0.05, 0.3, 0.7):
        for k in (0.0, 3.0, 300.0):
            assert mcallester_bound(e, k, n, delta) >= maurer_bound(e, k, n, delta) - 1e-12
    # Catoni's bound for each c is above kl^-1(emp, (kl + ln 1/delta)/n), and its minimum
    # over c equals it (Legendre duality of the binary kl)
    target = kl_inverse(emp, (kl + math.log(1 / delta)) / n)
    values = [catoni_bound(emp, kl, n, delta, c=g) for g in np.geomspace(0.05, 50, 4000)]
    assert min(values) >= target - 1e-9 and min(values) == pytest.approx(target, abs=1e-5)
    # the default picks the best c of the grid at delta / len(grid)
    d = delta / len(CATONI_GRID)
    assert catoni_bound(emp, kl, n, delta) == min(catoni_bound(emp, kl, n, d, c=g)
                                                  for g in CATONI_GRID)
    assert sample_convergence_bound(0.1, 500, 0.01) == kl_inverse(0.1, math.log(200) / 500)


def test_bounds_cover_the_truth_in_simulation():
    """With P = Q (KL = 0) the Maurer bound is a test-set bound: it must fail at most a
    delta share of the time; likewise the Langford-Caruana sample bound."""
    rng = np.random.default_rng(0)
    true, n, delta, trials = 0.2, 200, 0.1, 20000
    emp = rng.binomial(n, true, size=trials) / n
    values, counts = np.unique(emp, return_counts=True)
    maurer = np.array([maurer_bound(e, 0.0, n, delta) for e in values])
    sample = np.array([sample_convergence_bound(e, n, delta) for e in values])
    assert counts[maurer < true].sum() / trials <= delta
    assert counts[sample < true].sum() / trials <= delta
    # ... and it is not vacuous: a bound that always said 1 would pass the coverage check
    assert (counts * maurer).sum() / trials < true + 0.12


@pytest.mark.parametrize("call,match", [
    (lambda: kl_inverse(1.5, 0.1), "q must be in \\[0, 1\\], got 1.5"),
    (lambda: kl_inverse(-0.1, 0.1), "q must be in \\[0, 1\\]"),
    (lambda: kl_inverse(0.1, -0.2), "bound must be a number >= 0"),
    (lambda: kl_bernoulli(0.2, 1.2), "p must be in \\[0, 1\\]"),
    (lambda: maurer_bound(0.1, 1.0, 100, 0.0), "delta must be in \\(0, 1\\)"),
    (lambda: mcallester_bound(0.1, 1.0, 100, 1.0), "delta must be in \\(0, 1\\)"),
    (lambda: catoni_bound(0.1, 1.0, 0, 0.05), "n must be an integer >= 1"),
    (lambda: maurer_bound(0.1, -1.0, 100, 0.05), "kl must be a number >= 0"),
    (lambda: mcallester_bound(1.2, 1.0, 100, 0.05), "emp must be in \\[0, 1\\]"),
    (lambda: catoni_bound(0.1, 1.0, 10, 0.05, c=0.0), "c must be"),
    (lambda: sample_convergence_bound(0.1, 0, 0.05), "m must be an integer >= 1"),
])
def test_bad_input_is_one_line(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


# --- KLs of mask distributions --------------------------------------------------------------

def tiny_net(seed=0, noise=None):
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(2, 2, bias=True))
    masks = stochastic_masks_(net, "magnitude", sparsity=0.5, weight_noise=noise, mix=0.3)
    return net, masks


def test_mask_kl_against_peers():
    net, _ = tiny_net(noise=0.2)
    prior = mask_distribution(net)
    assert float(mask_kl(net, prior).detach()) == 0.0 and distribution_kl(prior, prior) == 0.0
    with torch.no_grad():
        net[0].weight_logit.add_(torch.tensor([[0.5, -1.0], [2.0, 0.3]]))
        net[0].weight_orig.add_(0.1)
        net[0].weight_log_sigma.sub_(0.4)
    post = mask_distribution(net)
    q, p = torch.sigmoid(post.logits["0"]), torch.sigmoid(prior.logits["0"])
    tdist = torch.distributions
    bern = tdist.kl_divergence(tdist.Bernoulli(probs=q), tdist.Bernoulli(probs=p)).sum()
    gauss = tdist.kl_divergence(tdist.Normal(post.weights["0"], post.log_sigma["0"].exp()),
                                tdist.Normal(prior.weights["0"], prior.log_sigma["0"].exp())).sum()
    ref = float(bern + gauss)
    assert float(mask_kl(net, prior).detach()) == pytest.approx(ref, rel=1e-10)
    assert distribution_kl(post, prior) == pytest.approx(ref, rel=1e-10)
    assert float(np.sum(kl_bernoulli(q.numpy(), p.numpy()))) == pytest.approx(float(bern),
                                                                             rel=1e-10)
    # differentiable: the gradient of the KL in the logits is (q - p)-shaped, zero at the prior
    kl = mask_kl(net, prior)
    kl.backward()
    assert net[0].weight_logit.grad.abs().sum() > 0


def test_infinite_kl_is_refused():
    net, _ = tiny_net()
    prior = mask_distribution(net)
    with torch.no_grad():
        net[0].weight_orig.add_(0.1)
    with pytest.raises(ValueError, match="weights differ from the prior's"):
        mask_kl(net, prior)
    with pytest.raises(ValueError, match="weights differ"):
        distribution_kl(mask_distribution(net), prior)
    net2, _ = tiny_net()
    prior2 = mask_distribution(net2)
    with torch.no_grad():
        net2[0].bias.add_(1.0)
    with pytest.raises(ValueError, match="'0.bias' differs"):
        distribution_kl(mask_distribution(net2), prior2)
    gauss, _ = tiny_net(noise=0.1)
    with pytest.raises(ValueError, match="Gaussian weights and the other point masses"):
        mask_kl(gauss, prior2)


# --- certificates on a network small enough to enumerate ------------------------------------

def enumerable_problem():
    torch.manual_seed(3)
    x = torch.randn(300, 2)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    net, masks = tiny_net(seed=1)
    with torch.no_grad():
        net[0].weight_orig.copy_(torch.tensor([[-1.0, -0.5], [1.0, 0.5]]))
        net[0].bias.zero_()
        net[0].weight_logit.copy_(torch.tensor([[1.5, -0.5], [0.8, 2.0]]))
    return net, masks, x, y


def exact_posterior_error(net, x, y):
    """E_{m ~ Q} err_S(m) by enumerating the 16 masks."""
    w, p = net[0].weight_orig.detach(), torch.sigmoid(net[0].weight_logit.detach())
    total = 0.0
    for bits in range(16):
        m = torch.tensor([(bits >> i) & 1 for i in range(4)], dtype=torch.float32).view(2, 2)
        prob = float((p ** m * (1 - p) ** (1 - m)).prod())
        pred = (x @ (w * m).T).argmax(1)
        total += prob * float((pred != y).float().mean())
    return total


def test_sampled_errors_estimate_the_exact_posterior_error():
    net, _, x, y = enumerable_problem()
    exact = exact_posterior_error(net, x, y)
    whole = sampled_errors(net, x, y, 1000)
    assert whole.shape == (1000, 1)
    assert abs(whole.mean() - exact) < 4 * whole.std() / math.sqrt(whole.size)
    chunks = sampled_errors(net, x, y, 100, examples_per_network=10)
    assert chunks.shape == (100, 30)
    assert abs(chunks.mean() - exact) < 4 * chunks.std() / math.sqrt(chunks.size)


def test_certificate_is_assembled_from_the_bounds_and_covers_the_truth():
    net, _, x, y = enumerable_problem()
    prior = mask_distribution(net)
    with torch.no_grad():
        net[0].weight_logit.add_(torch.tensor([[0.5, 0.0], [0.0, -0.3]]))
    cert = certify(net, (x, y), prior, delta=0.05, n_samples=400, delta_sample=0.01, seed=1)
    assert cert.n == 300 and cert.n_networks == 400 and cert.examples_per_network == 300
    assert cert.kl == pytest.approx(float(mask_kl(net, prior).detach()), rel=1e-9)
    up = sample_convergence_bound(cert.empirical_error, 400, 0.01)
    assert cert.empirical_error_bound == up
    assert cert.maurer == cert.certified_error == maurer_bound(up, cert.kl, 300, 0.05)
    assert cert.mcallester == mcallester_bound(up, cert.kl, 300, 0.05)
    assert cert.catoni == catoni_bound(up, cert.kl, 300, 0.05)
    assert cert.confidence == pytest.approx(0.94)
    assert cert.certified_error >= exact_posterior_error(net, x, y)
    assert "certified error" in str(cert) and cert.to_dict()["kl"] == cert.kl
    # chunked draws: the same bound, more networks, and n cut to a multiple of the chunk
    chunked = certify(net, (x, y), prior, n_samples=20, examples_per_network=7)
    assert chunked.n == 294 and chunked.n_networks == 20 * 42
    # a posterior snapshot is loaded into the model first
    again = certify(net, (x, y), prior, posterior=prior, n_samples=50)
    assert again.kl == 0.0 and torch.equal(net[0].weight_logit.detach().double(),
                                           prior.logits["0"])


def test_certify_bad_input():
    net, _, x, y = enumerable_problem()
    prior = mask_distribution(net)
    with pytest.raises(ValueError, match="delta must be in"):
        certify(net, (x, y), prior, delta=1.0)
    with pytest.raises(ValueError, match="n_samples must be an integer >= 1"):
        certify(net, (x, y), prior, n_samples=0)
    with pytest.raises(ValueError, match="examples_per_network must be <="):
        certify(net, (x, y), prior, examples_per_network=301)


# --- self-bounded training ------------------------------------------------------------------

def test_surrogates_equal_the_bounds_where_both_apply():
    for emp, kl in [(0.1, 3.0), (0.3, 40.0)]:
        e, k = torch.tensor(emp, dtype=torch.float64), torch.tensor(kl, dtype=torch.float64)
        assert float(bound_surrogate(e, k, 500, 0.05, "mcallester")) == pytest.approx(
            mcallester_bound(emp, kl, 500, 0.05), rel=1e-12)
        assert float(bound_surrogate(e, k, 500, 0.05, "catoni")) == pytest.approx(
            catoni_bound(emp, kl, 500, 0.05), rel=1e-12)
    logits = torch.tensor([[2.0, 0.0, -1.0], [-30.0, 0.0, 30.0]])
    y = torch.tensor([0, 0])
    ce = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    want = (torch.clamp(ce, max=math.log(1e4)) / math.log(1e4)).mean()
    assert float(bounded_cross_entropy(logits, y, pmin=1e-4)) == pytest.approx(float(want))


def test_train_with_bound_lowers_the_surrogate_and_keeps_the_rest_fixed():
    torch.manual_seed(0)
    x = torch.randn(20000, 6)
    y = (x[:, :3].sum(1) > 0).long()
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2))
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    for _ in range(100):  # trained weights; the prior's masks know nothing (p = 1/2)
        opt.zero_grad()
        nn.functional.cross_entropy(net(x[:2000]), y[:2000]).backward()
        opt.step()
    masks = stochastic_masks_(net, "magnitude", sparsity=0.5, mix=1.0, estimator="lrt")
    prior = mask_distribution(net)
    bias = net[0].bias.detach().clone()
    before = certify(net, (x, y), prior, n_samples=2, examples_per_network=100)
    rec = train_with_bound(masks, (x, y), prior, steps=150, lr=0.1, batch_size=2000)
    assert rec.n == 20000 and len(rec.surrogate) == 150 and rec.kl[0] == 0.0
    assert np.mean(rec.surrogate[-20:]) < np.mean(rec.surrogate[:20]) - 0.001  # ~3 se
    assert max(abs(d - 0.5) for d in rec.density) < 1e-3
    assert torch.equal(net[0].bias, bias)
    after = certify(net, (x, y), prior, n_samples=2, examples_per_network=100)
    assert after.kl == pytest.approx(float(mask_kl(net, prior).detach()), rel=1e-9)
    assert after.certified_error < before.certified_error - 0.02
    with pytest.raises(ValueError, match="train_weights=True needs Gaussian weights"):
        train_with_bound(masks, (x, y), prior, steps=1, train_weights=True)
    with pytest.raises(ValueError, match="form must be one of"):
        train_with_bound(masks, (x, y), prior, steps=1, form="seeger")
