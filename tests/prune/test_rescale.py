"""The EOC rescaling trick: neuron norms restored exactly, idempotent, chi1 back to 1."""

import math

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from scalelab.nn import init_eoc_
from scalelab.prune import apply_masks_, prune_at_init, rescale_to_eoc_
from scalelab.theory import edge_of_chaos


def incoming_sqnorms(module: nn.Module, w: torch.Tensor) -> list[float]:
    """Each output neuron's squared incoming norm, by an explicit loop over neurons."""
    w = w.detach().double()
    if isinstance(module, nn.ConvTranspose2d):  # weight (in, out/g, kh, kw)
        g, n_in = module.groups, w.shape[0] // module.groups
        per = w.shape[1]
        return [float(w[(o // per) * n_in:(o // per + 1) * n_in, o % per].pow(2).sum())
                for o in range(per * g)]
    return [float(w[o].pow(2).sum()) for o in range(w.shape[0])]


LAYERS = [
    lambda: nn.Linear(40, 30),
    lambda: nn.Conv2d(6, 8, 3),
    lambda: nn.ConvTranspose2d(4, 6, 3, groups=2),
]


@pytest.mark.parametrize("make", LAYERS, ids=["linear", "conv", "conv_transpose_grouped"])
def test_each_neuron_regains_its_dense_squared_norm(make):
    torch.manual_seed(0)
    model = nn.Sequential(make())
    layer = model[0]
    dense = incoming_sqnorms(layer, layer.weight)
    rep = prune_at_init(model, 0.7, "random", rescale=True)
    after = incoming_sqnorms(layer, layer.weight)  # the effective, masked weight
    assert rep.layers[0].dead_neurons == 0
    assert after == pytest.approx(dense, rel=1e-5)
    # calling it again changes nothing, bit for bit
    before = layer.weight_orig.detach().clone()
    again = rescale_to_eoc_(model)
    assert torch.equal(layer.weight_orig, before)
    assert again["0"].rho_min == again["0"].rho_max == 1.0


def test_dead_neurons_are_left_alone_and_reported():
    layer = nn.Linear(5, 3)
    w0 = layer.weight.detach().clone()
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[1] = False  # neuron 1 keeps nothing
    mask[2, :3] = False
    model = nn.Sequential(layer)
    apply_masks_(model, {"0": mask})
    out = rescale_to_eoc_(model)["0"]
    assert out.dead_neurons == 1 and out.neurons == 3
    torch.testing.assert_close(layer.weight_orig[1], w0[1])  # untouched
    torch.testing.assert_close(layer.weight_orig[0], w0[0])  # nothing pruned: rho = 1
    rho = math.sqrt(float(w0[2].pow(2).sum() / w0[2, 3:].pow(2).sum()))
    torch.testing.assert_close(layer.weight_orig[2], w0[2] * rho)
    assert out.rho_max == pytest.approx(rho)


def test_expectation_variant_and_torch_pruned_models():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(50, 20))
    prune_at_init(model, 0.5, "magnitude", rescale=False)
    rescale_to_eoc_(model, mode="expectation", sigma_w=1.7)
    assert incoming_sqnorms(model[0], model[0].weight) == pytest.approx([1.7 ** 2] * 20, rel=1e-5)
    # a model masked by torch itself: the dense norms come from weight_orig on the first call
    other = nn.Linear(50, 20)
    dense = incoming_sqnorms(other, other.weight)
    torch_prune.l1_unstructured(other, "weight", amount=0.6)
    rescale_to_eoc_(nn.Sequential(other))
    assert incoming_sqnorms(other, other.weight) == pytest.approx(dense, rel=1e-5)


def test_rescale_bad_inputs():
    with pytest.raises(ValueError, match="no pruned layer"):
        rescale_to_eoc_(nn.Sequential(nn.Linear(3, 3)))
    model = nn.Sequential(nn.Linear(3, 3))
    prune_at_init(model, 0.5)
    with pytest.raises(ValueError, match="mode must be one of"):
        rescale_to_eoc_(model, mode="variance")
    with pytest.raises(ValueError, match="sigma_w must be"):
        rescale_to_eoc_(model, mode="expectation", sigma_w=-1.0)


WIDTH = 1000
KEEP = 0.1


def layer_chi1(layer: nn.Linear, q: float, samples: int = 32) -> float:
    """Monte Carlo chi1 of one tanh layer at the EOC fixed point: E||J u||^2 / E||u||^2.

    J = W diag(phi'(h)) with pre-activations h ~ N(0, q*) i.i.d. (the infinite-width law of a
    layer's input on the EOC) and u ~ N(0, I); independent of scalelab's maps.
    """
    g = torch.Generator().manual_seed(1)
    h = torch.randn(samples, WIDTH, generator=g) * math.sqrt(q)
    u = torch.randn(samples, WIDTH, generator=g)
    ju = ((1 - torch.tanh(h) ** 2) * u) @ layer.weight.detach().T  # (samples, WIDTH)
    return float(ju.pow(2).sum() / u.pow(2).sum())


def eoc_tanh(seed=0):
    model = nn.Sequential(nn.Linear(WIDTH, WIDTH), nn.Tanh(), nn.Linear(WIDTH, WIDTH))
    return init_eoc_(model, generator=torch.Generator().manual_seed(seed))


def test_pruned_eoc_tanh_chi1_monte_carlo():
    q = edge_of_chaos("tanh", 0.2).q  # init_eoc_'s default sigma_b for tanh
    dense = layer_chi1(eoc_tanh()[2], q)
    assert dense == pytest.approx(1.0, abs=0.05)  # the oracle itself finds the EOC
    results = {}
    for method in ("random", "magnitude"):
        for rescale in (False, True):
            model = eoc_tanh()
            prune_at_init(model, 1 - KEEP, method, rescale=rescale, seed=3)
            results[method, rescale] = layer_chi1(model[2], q)
    # rescaled: back on the EOC (Monte Carlo, width 1000: within 5%)
    assert results["random", True] == pytest.approx(1.0, abs=0.05)
    assert results["magnitude", True] == pytest.approx(1.0, abs=0.05)
    # random pruning alone: chi1 ~ the keep fraction
    assert results["random", False] == pytest.approx(KEEP, abs=0.02)
    # magnitude keeps the largest weights: chi1 = the share of a Gaussian's second moment
    # beyond its (1 - keep/2) quantile, 2 (z phi(z) + 1 - Phi(z)), between keep and 1
    z = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor(1 - KEEP / 2)).item()
    share = 2 * (z * math.exp(-z * z / 2) / math.sqrt(2 * math.pi) + KEEP / 2)
    assert results["magnitude", False] == pytest.approx(share, abs=0.04)
    assert KEEP < results["magnitude", False] < 1.0
