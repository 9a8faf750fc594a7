"""propagation_profile, layer_alignment / layer tangent kernels, output_field."""

import math

import numpy as np
import pytest
import torch
from torch import nn
from torch.autograd.functional import jacobian
from torch.func import functional_call

from scalelab.diagnostics import (
    centered_alignment,
    kernel_summary,
    layer_alignment,
    layer_tangent_kernels,
    output_field,
    propagation_profile,
)
from scalelab.nn import reference_mlp
from scalelab.theory import correlation_map, edge_of_chaos, nngp_kernels, variance_map


# --- centred alignment ----------------------------------------------------------------------
def _labels(n=12, c=3, seed=0):
    y = np.random.default_rng(seed).integers(0, c, n)
    return y, np.eye(c)[y]


def test_centered_alignment_bounds_scaling_and_perfect_kernel():
    y, Y = _labels()
    rng = np.random.default_rng(1)
    for _ in range(20):
        A = rng.normal(size=(12, 5))
        K = A @ A.T
        a = centered_alignment(K, Y)
        assert -1.0 <= a <= 1.0
        assert centered_alignment(7.5 * K, Y) == pytest.approx(a, abs=1e-12)
        assert centered_alignment(K + 3.0, Y) == pytest.approx(a, abs=1e-12)  # centring
    assert centered_alignment(Y @ Y.T, Y) == pytest.approx(1.0, abs=1e-12)
    assert centered_alignment(-(Y @ Y.T), Y) == pytest.approx(-1.0, abs=1e-12)
    assert math.isnan(centered_alignment(np.ones((12, 12)), Y))  # centred kernel is zero


def test_centered_alignment_matches_its_definition():
    _, Y = _labels(8, 2)
    A = np.random.default_rng(2).normal(size=(8, 8))
    K = A @ A.T
    H = np.eye(8) - np.ones((8, 8)) / 8
    kc, tc = H @ K @ H, H @ Y @ Y.T @ H
    want = np.sum(kc * tc) / np.linalg.norm(kc) / np.linalg.norm(tc)
    assert centered_alignment(K, Y) == pytest.approx(want, rel=1e-12)


# --- layer tangent kernels against brute-force Jacobians ------------------------------------
class Mixed(nn.Module):
    """Registered in the reverse of forward order; a Conv (generic path), a tanh-fed Linear
    (shortcut), a LayerNorm, a Linear followed by an in-place ReLU, and an unused layer."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(6, 3)
        self.norm = nn.LayerNorm(6)
        self.mid = nn.Linear(8, 6)
        self.conv = nn.Conv1d(1, 2, 3)
        self.unused = nn.Linear(2, 2)

    def forward(self, x):  # (B, 6)
        h = torch.tanh(self.conv(x[:, None, :])).flatten(1)  # (B, 2 * 4)
        h = torch.relu_(self.mid(h))  # in place: the Linear shortcut must step aside
        return self.head(self.norm(h))


def _brute_force(model, x):
    params = dict(model.named_parameters())
    out = {}
    for mname, m in model.named_modules():
        names = [f"{mname}.{p}" for p, _ in m.named_parameters(recurse=False)]
        if not names:
            continue

        def f(*ps, names=names):
            return functional_call(model, dict(zip(names, ps, strict=True)), (x,))

        jac = jacobian(f, tuple(params[n] for n in names))
        G = torch.cat([j.reshape(x.shape[0], -1, j[0, 0].numel()) for j in jac], dim=2)
        out[mname] = torch.einsum("ikp,jkp->ij", G, G).numpy()  # sum over outputs k
    return out


@pytest.mark.parametrize("kwargs", [{}, {"linear_shortcut": False}, {"max_elements": 64}],
                         ids=["shortcut", "generic", "chunked"])
def test_layer_tangent_kernels_match_jacobians(kwargs):
    torch.manual_seed(0)
    model = Mixed().double()
    x = torch.randn(7, 6, dtype=torch.float64)
    got = layer_tangent_kernels(model, x, **kwargs)
    assert [n for n, _ in got] == ["conv", "mid", "norm", "head"]  # forward order, no 'unused'
    want = _brute_force(model, x)
    for name, K in got:
        np.testing.assert_allclose(K, want[name], rtol=1e-10, atol=1e-10)


def test_linear_shortcut_matches_generic_on_an_mlp():
    torch.manual_seed(1)
    model = reference_mlp(5, 16, 3, 4, "tanh", "eoc").double()
    x = torch.randn(9, 5, dtype=torch.float64)
    fast = layer_tangent_kernels(model, x)
    slow = layer_tangent_kernels(model, x, linear_shortcut=False)
    for (n1, a), (n2, b) in zip(fast, slow, strict=True):
        assert n1 == n2
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12)


def test_alignment_is_one_when_the_kernel_is_the_label_kernel():
    """f(x) = W x + b on one-hot inputs x = Y: K_W = C Y Y^T, K_b = C 11^T (centred away)."""
    y, Y = _labels(10, 4)
    model = nn.Linear(4, 3).double()
    x = torch.tensor(Y, dtype=torch.float64)
    assert layer_alignment(model, x, torch.tensor(y)) == [pytest.approx(1.0, abs=1e-12)]


def test_alignment_labels_scaling_and_range():
    torch.manual_seed(2)
    model = reference_mlp(5, 12, 3, 3, "tanh", "eoc").double()
    x = torch.randn(16, 5, dtype=torch.float64)
    y, Y = _labels(16, 3, seed=3)
    a = layer_alignment(model, x, y)
    assert len(a) == 4 and all(-1 <= v <= 1 for v in a)
    assert layer_alignment(model, x, Y) == pytest.approx(a, abs=1e-12)  # one-hot == labels
    scaled = nn.Sequential(model, nn.Linear(3, 3, bias=False)).double()
    with torch.no_grad():
        scaled[1].weight.copy_(5.0 * torch.eye(3))
    scaled[1].weight.requires_grad_(False)  # K_l of every other layer scales by 25
    assert layer_alignment(scaled, x, y) == pytest.approx(a, abs=1e-10)
    with pytest.raises(ValueError, match="one label per example"):
        layer_alignment(model, x, y[:5])
    with pytest.raises(ValueError, match="integer labels"):
        layer_alignment(model, x, np.full(16, 0.5))


# --- propagation profile --------------------------------------------------------------------
def test_profile_follows_the_maps_on_an_eoc_tanh_mlp():
    """Width 1000, 8 hidden layers on the EOC, 4 inputs of equal norm, 2 nets averaged:
    variance within 8% and mean correlation within 0.06 of the maps at every hidden layer."""
    d, depth, sb = 20, 8, 0.2
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, d, generator=g)
    x = x / x.norm(dim=1, keepdim=True) * 1.5 * math.sqrt(d)
    runs = []
    for seed in range(2):
        torch.manual_seed(seed)
        prof = propagation_profile(reference_mlp(d, 1000, depth, 1, "tanh", "eoc", sb), x)
        runs.append([(p.variance, p.correlation) for p in prof])
    measured = np.mean(runs, axis=0)[:depth]  # hidden layers (the readout has width 1)
    pt = edge_of_chaos("tanh", sb)
    X = x.double().numpy()
    q = pt.sigma_b**2 + pt.sigma_w**2 * 1.5**2
    c = (pt.sigma_b**2 + pt.sigma_w**2 * X @ X.T / d)[np.triu_indices(4, 1)] / q
    for layer in range(depth):
        assert measured[layer, 0] == pytest.approx(q, rel=0.08)
        assert measured[layer, 1] == pytest.approx(np.mean(c), abs=0.06)
        c, q = correlation_map("tanh", pt.sigma_w, sb, q, c), variance_map("tanh", pt.sigma_w,
                                                                           sb, q)
    # and the kernel summary of nngp_kernels is the same prediction
    ks = nngp_kernels("tanh", pt.sigma_w, sb, depth, X)
    assert kernel_summary(ks[-1])[0] == pytest.approx(variance_map(
        "tanh", pt.sigma_w, sb, kernel_summary(ks[-2])[0]), rel=1e-9)


def test_profile_gradients_statistics_and_side_effects():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(inplace=True), nn.Linear(8, 3)).double()
    model.train()
    x = torch.randn(5, 4, dtype=torch.float64)
    prof = propagation_profile(model, x, seed=11)
    assert [p.name for p in prof] == ["0", "2"] and all(p.module_type == "Linear" for p in prof)
    assert model.training and all(p.grad is None for p in model.parameters())
    g = torch.randn((5, 3), generator=torch.Generator().manual_seed(11), dtype=torch.float64)
    assert prof[1].grad_norm == pytest.approx(float(g.norm()), rel=1e-12)  # d<g, f>/df = g
    h = model[0](x).detach()  # before the in-place ReLU
    assert prof[0].variance == pytest.approx(float((h**2).mean()), rel=1e-12)
    cos = torch.nn.functional.cosine_similarity(h[:, None], h[None], dim=2)
    iu = torch.triu_indices(5, 5, 1)
    assert prof[0].correlation == pytest.approx(float(cos[iu[0], iu[1]].mean()), rel=1e-10)
    grad_h = (g @ model[2].weight.detach()) * (h > 0)
    assert prof[0].grad_norm == pytest.approx(float(grad_h.norm()), rel=1e-10)
    y = torch.tensor([0, 1, 2, 0, 1])
    prof_y = propagation_profile(model, x, y=y)
    out = model(x)
    want = torch.autograd.grad(torch.nn.functional.cross_entropy(out, y), out)[0]
    assert prof_y[1].grad_norm == pytest.approx(float(want.norm()), rel=1e-10)


def test_profile_on_cnn_and_transformer_blocks():
    cnn = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Conv2d(4, 4, 3),
                        nn.Flatten(), nn.Linear(4 * 36, 2))
    prof = propagation_profile(cnn, torch.randn(3, 1, 8, 8))
    assert [p.module_type for p in prof] == ["Conv2d", "Conv2d", "Linear"]
    assert prof[0].width == 4 * 64 and all(np.isfinite(p.grad_norm) for p in prof)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(16, 2, 32, dropout=0.1,
                                                           batch_first=True), 3,
                                enable_nested_tensor=False)
    prof = propagation_profile(enc, torch.randn(4, 5, 16), layers=(nn.TransformerEncoderLayer,))
    assert [p.name for p in prof] == ["layers.0", "layers.1", "layers.2"]
    assert all(p.width == 5 * 16 and np.isfinite(p.correlation) for p in prof)
    assert [p.name for p in propagation_profile(enc, torch.randn(2, 5, 16),
                                                layers=["layers.1"])] == ["layers.1"]


@pytest.mark.parametrize("call,match", [
    (lambda m: propagation_profile(m, torch.randn(2, 3), layers=["nope"]), "no module named"),
    (lambda m: propagation_profile(m, torch.randn(2, 3), layers=(nn.Conv2d,)), "no module of"),
    (lambda m: propagation_profile("model", torch.randn(2, 3)), "torch.nn.Module"),
    (lambda m: propagation_profile(m, torch.zeros(0, 3)), "batch dimension"),
    (lambda m: propagation_profile(m, torch.full((2, 3), math.nan)), "finite"),
    (lambda m: layer_tangent_kernels(m, torch.randn(2, 3), max_elements=0), "max_elements"),
    (lambda m: output_field(m, resolution=1), "resolution"),
    (lambda m: output_field(m, output_index=9, plane=(np.zeros(3), np.ones(3), np.ones(3))),
     "output_index"),
    (lambda m: output_field(m), "2-D inputs"),
    (lambda m: output_field(m, plane=(np.zeros(3), np.ones(2), np.ones(3))), "share one shape"),
])
def test_bad_inputs_are_one_line_value_errors(call, match):
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match=match) as e:
        call(model)
    assert "\n" not in str(e.value)


# --- output field ---------------------------------------------------------------------------
def test_output_field_grid_orientation_and_plane():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)).double()
    F = output_field(model, resolution=5, output_index=1)
    assert F.shape == (5, 5) and F.dtype == np.float64
    with torch.no_grad():
        for i, j in [(0, 0), (1, 3), (4, 2)]:  # F[i, j] = f(s = j/4, t = i/4)
            want = model(torch.tensor([[j / 4, i / 4]], dtype=torch.float64))[0, 1]
            assert F[i, j] == pytest.approx(float(want), rel=1e-12)
    deep = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 1))
    pts = torch.randn(3, 6)
    G = output_field(deep, resolution=3, plane=(pts[0], pts[1] - pts[0], pts[2] - pts[0]))
    with torch.no_grad():
        ref = deep(pts)[:, 0]
    np.testing.assert_allclose([G[0, 0], G[0, 2], G[2, 0]], ref.numpy(), rtol=1e-5, atol=1e-6)


def test_diagnose_network_theory_follows_the_maps_and_the_measurement():
    """diagnose_network's theory overlay is the variance map iterated from the first layer's
    closed form; a width-800 EOC tanh MLP measures it within 10% (one seed)."""
    from scalelab.diagnostics import Diagnosis, diagnose_network

    d, depth, sb = 12, 4, 0.3
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, d, generator=g)
    x = x / x.norm(dim=1, keepdim=True) * math.sqrt(d)  # |x|^2 / d = 1
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    torch.manual_seed(0)
    net = reference_mlp(d, 800, depth, 3, "tanh", "eoc", sb)
    diag = diagnose_network(net, x, y, eoc_act="tanh", sigma_b=sb, resolution=5,
                            profile_inputs=4)
    assert isinstance(diag, Diagnosis) and diag.profile_examples == 4 and diag.plane is True
    pt = edge_of_chaos("tanh", sb)
    q = pt.sigma_b**2 + pt.sigma_w**2  # first Linear layer, |x|^2/d = 1
    want = []
    for _ in range(depth + 1):
        want.append(q)
        q = variance_map("tanh", pt.sigma_w, sb, q)
    assert diag.profile_theory["variance"] == pytest.approx(want, rel=1e-6)
    measured = [p.variance for p in diag.profile[:depth]]  # hidden layers (readout width 3)
    assert measured == pytest.approx(want[:depth], rel=0.10)
    assert diag.alignment["layers"] == ["0", "2", "4", "6", "8"]
    assert all(-1 <= v <= 1 for v in diag.alignment["values"])
    assert diag.field.shape == (5, 5) and diag.summary()["output_field"]["resolution"] == 5
    # No theory unless asked, no alignment when switched off; 2-D inputs map input space.
    plain = diagnose_network(reference_mlp(2, 8, 2, 2, "relu", "standard"), torch.rand(5, 2),
                             torch.tensor([0, 1, 0, 1, 0]), alignment=False, resolution=3)
    assert plain.profile_theory is None and plain.alignment is None and plain.plane is False
    assert "alignment" not in plain.summary()
    with pytest.raises(ValueError, match=r"cannot take inputs of shape \(7,\)"):
        diagnose_network(net, torch.randn(4, 7), torch.zeros(4, dtype=torch.long))
