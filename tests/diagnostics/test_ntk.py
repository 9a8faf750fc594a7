"""empirical_ntk (torch.func) against hand-written Jacobians, and wide random nets in NTK
parametrisation against the infinite-width kernels (Monte Carlo, stated tolerances)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from scalelab.diagnostics import empirical_ntk, layer_tangent_kernels
from scalelab.nn import NTKMLP, NTKLinear, NTKResidualMLP, torch_nngp_kernel
from scalelab.theory import nngp_kernel, ntk_kernel, resnet_kernel, resnet_ntk

X = np.random.default_rng(11).normal(size=(5, 4))


def jacobian_by_hand(model, x):
    """(N, C, P): one autograd.grad per example and output (the definition of J)."""
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for i in range(x.shape[0]):
        out = model(x[i:i + 1]).reshape(-1)
        per_k = []
        for k in range(out.shape[0]):
            gs = torch.autograd.grad(out[k], params, retain_graph=True, allow_unused=True)
            per_k.append(torch.cat([(torch.zeros_like(p) if g is None else g).reshape(-1)
                                    for p, g in zip(params, gs, strict=True)]))
        rows.append(torch.stack(per_k))
    return torch.stack(rows).double()


def small_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 7), nn.Tanh(), nn.Linear(7, 6), nn.ReLU(),
                         nn.Linear(6, 3)).double()


def test_empirical_ntk_is_j_jt():
    net = small_net()
    x = torch.from_numpy(X)
    J = jacobian_by_hand(net, x)
    want_per = torch.einsum("akp,bkp->abk", J, J).numpy()
    np.testing.assert_allclose(empirical_ntk(net, x), want_per.sum(-1), rtol=1e-12)
    np.testing.assert_allclose(empirical_ntk(net, X, per_output=True), want_per, rtol=1e-12)
    for chunk in (1, 2, 3):  # blocks change nothing
        np.testing.assert_allclose(empirical_ntk(net, x, chunk=chunk), want_per.sum(-1),
                                   rtol=1e-12)
    np.testing.assert_allclose(empirical_ntk(net, x, max_elements=1), want_per.sum(-1),
                               rtol=1e-12)


def test_empirical_ntk_is_the_sum_of_the_layer_tangent_kernels():
    """Peer: layer_tangent_kernels' exact nn.Linear formula (no Jacobian is formed there)."""
    net = small_net()
    x = torch.from_numpy(X)
    total = sum(K for _, K in layer_tangent_kernels(net, x))
    np.testing.assert_allclose(empirical_ntk(net, x), total, rtol=1e-10)


class _Branchy(nn.Module):
    """Data-dependent control flow: vmap refuses it, the autograd loop takes over."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Linear(4, 3).double(), nn.Linear(4, 3).double()

    def forward(self, x):
        return self.a(x) if float(x.sum()) > 0 else torch.tanh(self.b(x))


def test_models_vmap_cannot_run_fall_back_to_a_loop():
    torch.manual_seed(1)
    net = _Branchy()
    x = torch.from_numpy(X)
    J = jacobian_by_hand(net, x)
    np.testing.assert_allclose(empirical_ntk(net, x, chunk=2),
                               torch.einsum("akp,bkp->ab", J, J).numpy(), rtol=1e-12)


def test_ntk_linear_is_a_scaled_linear_layer():
    torch.manual_seed(2)
    lin = NTKLinear(4, 3, sigma_w=1.7, sigma_b=0.4).double()
    x = torch.from_numpy(X)
    want = x @ (1.7 / 2 * lin.weight).T + 0.4 * lin.bias
    torch.testing.assert_close(lin(x), want, rtol=1e-14, atol=1e-14)
    assert NTKLinear(4, 3, sigma_b=0.0).bias is None
    assert "sigma_w=1.7" in repr(lin)


def _mean_error(make, want, reps, x):
    errs = []
    for seed in range(reps):
        torch.manual_seed(seed)
        K = empirical_ntk(make(), x)
        errs.append(np.linalg.norm(K - want) / np.linalg.norm(want))
    return float(np.mean(errs))


@pytest.mark.parametrize("act", ["relu", "tanh"])
def test_wide_random_nets_approach_ntk_kernel_like_one_over_sqrt_width(act):
    """6 NTKMLPs (3 linear layers, float64) per width. Tolerance: the mean relative Frobenius
    error at width 2048 below 0.1 (measured ~0.04), and the error ratio between widths 128 and
    2048 (16x) within [2, 8] (1/sqrt(width) predicts 4)."""
    sw, sb = 1.5, 0.3
    want = ntk_kernel(act, sw, sb, 3, X)
    x = torch.from_numpy(X)
    errs = {w: _mean_error(lambda w=w: NTKMLP(4, w, 3, 1, act, sigma_w=sw, sigma_b=sb,
                                              dtype=torch.float64), want, 6, x)
            for w in (128, 2048)}
    assert errs[2048] < 0.1, errs
    assert 2.0 < errs[128] / errs[2048] < 8.0, errs
    # the test can tell: the NNGP alone (last layer trained only) is far from the empirical NTK
    nngp = nngp_kernel(act, sw, sb, 3, X)
    assert _mean_error(lambda: NTKMLP(4, 2048, 3, 1, act, sigma_w=sw, sigma_b=sb,
                                      dtype=torch.float64), nngp, 2, x) > 0.3


def test_wide_residual_net_matches_resnet_ntk_plus_its_readout():
    """NTKResidualMLP (4 blocks of 1/sqrt(L), width 1024, float64), 4 nets: mean relative
    error below 0.08 (measured ~0.05) to resnet_ntk + resnet_kernel (the readout's share)."""
    x = torch.from_numpy(X)
    want = resnet_ntk("relu", 4, X) + resnet_kernel("relu", 4, X)
    make = lambda: NTKResidualMLP(4, 1024, 4, 1, "relu", dtype=torch.float64)  # noqa: E731
    assert _mean_error(make, want, 4, x) < 0.08
    assert _mean_error(make, resnet_ntk("relu", 4, X), 2, x) > 0.2  # the readout term matters


def test_torch_nngp_kernel_lives_in_nn_and_matches_numpy():
    x = torch.from_numpy(X).requires_grad_(True)
    k = torch_nngp_kernel("relu", 1.3, 0.2, 4)(x, x)
    np.testing.assert_allclose(k.detach().numpy(), nngp_kernel("relu", 1.3, 0.2, 4, X),
                               rtol=1e-9)
    k.sum().backward()
    assert torch.all(torch.isfinite(x.grad))
    from scalelab.privacy import torch_nngp_kernel as lood_kernel  # the LOOD spec adapter

    got = lood_kernel({"act": "relu", "sigma_w": 1.3, "sigma_b": 0.2, "depth": 4})(x, x)
    torch.testing.assert_close(got, k)
    with pytest.raises(ValueError, match="closed forms"):
        torch_nngp_kernel("tanh", 1.0, 0.0, 2)


@pytest.mark.parametrize("call,match", [
    (lambda: empirical_ntk(small_net(), X, chunk=0), "chunk"),
    (lambda: empirical_ntk(nn.ReLU(), X), "trainable"),
    (lambda: empirical_ntk(torch.jit.script(small_net()), X), "TorchScript"),
    (lambda: empirical_ntk(small_net(), [[math.nan] * 4]), "finite"),
    (lambda: empirical_ntk("net", X), "nn.Module"),
])
def test_bad_inputs_are_one_line_value_errors(call, match):
    with pytest.raises(ValueError, match=match) as e:
        call()
    assert "\n" not in str(e.value)
