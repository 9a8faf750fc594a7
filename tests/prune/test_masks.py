"""prune_at_init: exact sparsity, torch masks that survive training, collapse, bad inputs."""

import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from scalelab import ScalelabWarning
from scalelab.nn import ResidualMLP
from scalelab.prune import METHODS, PruneReport, prune_at_init, topk_masks


def mlp(sizes=(12, 30, 25, 7), act=nn.Tanh):
    layers = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), act()]
    return nn.Sequential(*layers[:-1])


def batch(n=16, d=12, k=7):
    return torch.randn(n, d), torch.randint(0, k, (n,))


def kept(model):
    return sum(int(m.weight_mask.sum()) for m in model.modules() if hasattr(m, "weight_mask"))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("sparsity", [0.0, 0.37, 0.9, 0.995])
def test_global_sparsity_is_exact(method, sparsity):
    model = mlp()
    n = 12 * 30 + 30 * 25 + 25 * 7
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ScalelabWarning)  # collapse may happen at 99.5%
        rep = prune_at_init(model, sparsity, method, data=batch(), rescale=False,
                            iterations=5)
    if method == "sbp-sr":  # an MLP is no Stable ResNet: said so
        assert any("expects a Stable ResNet" in str(w.message) for w in caught)
    assert rep.total == n and rep.kept == round((1 - sparsity) * n) == kept(model)
    assert rep.achieved_sparsity == pytest.approx(1 - round((1 - sparsity) * n) / n)


def test_layer_scope_is_exact_per_layer():
    model = mlp()
    rep = prune_at_init(model, 0.8, "magnitude", scope="layer")
    for ly in rep.layers:
        assert ly.kept == round(0.2 * ly.total)


def test_ties_are_broken_by_position_deterministically():
    scores = {"a": torch.ones(3, 4), "b": torch.ones(5)}
    masks = topk_masks(scores, 0.4)  # keep round(0.6 * 17) = 10 equal scores: the first 10
    flat = torch.cat([masks["a"].flatten(), masks["b"]])
    assert flat.tolist() == [True] * 10 + [False] * 7
    assert torch.equal(flat, torch.cat([m.flatten() for m in topk_masks(scores, 0.4).values()]))


def test_masks_go_through_torch_prune_and_survive_training():
    torch.manual_seed(0)
    model = mlp()
    prune_at_init(model, 0.8, "snip", data=batch())
    for m in model.modules():
        if isinstance(m, nn.Linear):
            assert torch_prune.is_pruned(m) and hasattr(m, "weight_orig")
            assert not hasattr(m, "bias_mask")  # biases are never pruned
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = batch()
    for _ in range(3):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    model(x)  # the forward pre-hook recomputes weight = weight_orig * weight_mask
    for m in model.modules():
        if isinstance(m, nn.Linear):
            assert (m.weight[m.weight_mask == 0] == 0).all()
            assert (m.weight_orig[m.weight_mask == 0] != 0).any()  # weight_orig did train
            mask = m.weight_mask.clone()
            torch_prune.remove(m, "weight")  # permanent: a plain parameter with the zeros
            assert not hasattr(m, "weight_mask") and (m.weight[mask == 0] == 0).all()


def test_layer_collapse_warns_and_strict_raises_before_touching_the_model():
    def net():
        model = mlp()
        with torch.no_grad():
            model[2].weight.mul_(1e-3)  # the middle layer's weights are all tiny
        return model

    with pytest.warns(ScalelabWarning, match="layer collapse.*'2'"):
        rep = prune_at_init(net(), 0.7, "magnitude")
    assert rep.collapsed == ["2"] and rep.layers[1].dead_neurons == 25
    assert "COLLAPSED" in str(rep)
    model = net()
    with pytest.raises(ValueError, match="strict=True"):
        prune_at_init(model, 0.7, "magnitude", strict=True)
    assert not any(hasattr(m, "weight_mask") for m in model.modules())


def test_sbp_sr_checks_the_stable_resnet_scaling():
    x, y = torch.randn(8, 6), torch.randint(0, 3, (8,))
    rep = prune_at_init(ResidualMLP(6, 16, 4, 3, mode="stable"), 0.9, "sbp-sr", data=(x, y))
    assert "Stable ResNet detected (4 blocks" in rep.notes[0]
    with pytest.warns(ScalelabWarning, match="expects a Stable ResNet: 4 residual blocks"):
        prune_at_init(ResidualMLP(6, 16, 4, 3, mode="standard"), 0.9, "sbp-sr", data=(x, y))
    # sbp-sr ranks exactly as global SNIP does
    a, b = ResidualMLP(6, 16, 4, 3, mode="stable"), ResidualMLP(6, 16, 4, 3, mode="stable")
    b.load_state_dict(a.state_dict())
    prune_at_init(a, 0.9, "sbp-sr", data=(x, y))
    prune_at_init(b, 0.9, "snip", data=(x, y))
    assert all(torch.equal(p, q) for p, q in zip(a.buffers(), b.buffers(), strict=True))


def test_conv_model_and_report_table():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3),
                          nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
    x, y = torch.randn(4, 2, 6, 6), torch.randint(0, 5, (4,))
    for method in ("magnitude", "random", "snip", "grasp", "synflow"):
        fresh = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3),
                              nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 5))
        fresh.load_state_dict(model.state_dict())
        rep = prune_at_init(fresh, 0.75, method, data=(x, y), iterations=3)
        assert isinstance(rep, PruneReport) and rep.kept == round(0.25 * rep.total)
        assert [ly.kind for ly in rep.layers] == ["Conv2d", "Conv2d", "Linear"]
    text = str(rep)
    assert "synflow" in text and "Conv2d" in text and "rescaled to the EOC: yes" in text
    assert rep.to_dict()["layers"][0]["shape"] == [8, 2, 3, 3]


@pytest.mark.parametrize("kwargs,match", [
    (dict(sparsity=1.0), "sparsity must be in"),
    (dict(sparsity=-0.1), "sparsity must be in"),
    (dict(sparsity="lots"), "sparsity must be a number"),
    (dict(method="l1"), "method must be one of"),
    (dict(scope="net"), "scope must be one of"),
    (dict(method="snip"), "method='snip' needs data"),
    (dict(method="grasp"), "method='grasp' needs data"),
    (dict(method="snip", data=[]), "it held no batch"),
    (dict(method="snip", data=[1, 2, 3]), "got a batch of type int"),
    (dict(method="synflow", iterations=0), "iterations must be an integer >= 1"),
    (dict(method="synflow", input_shape=(0, 3)), "input_shape must be"),
])
def test_bad_inputs(kwargs, match):
    args = dict(sparsity=0.5, method="magnitude") | kwargs
    with pytest.raises(ValueError, match=match):
        prune_at_init(mlp(), **args)


def test_already_pruned_and_layerless_models_are_refused():
    model = mlp()
    prune_at_init(model, 0.5)
    with pytest.raises(ValueError, match="already pruned"):
        prune_at_init(model, 0.5)
    with pytest.raises(ValueError, match="no nn.Linear / nn.Conv layer"):
        prune_at_init(nn.Sequential(nn.ReLU()), 0.5)


def test_a_dataloader_is_accepted_as_data():
    from torch.utils.data import DataLoader, TensorDataset

    x, y = batch(n=32)
    loader = DataLoader(TensorDataset(x, y), batch_size=8)  # yields [x, y] lists
    a, b = mlp(), mlp()
    b.load_state_dict(a.state_dict())
    prune_at_init(a, 0.6, "snip", data=loader, rescale=False)
    prune_at_init(b, 0.6, "snip", data=(x, y), rescale=False)  # same mean gradient
    agree = sum(int((p.weight_mask == q.weight_mask).sum())
                for p, q in zip(a.modules(), b.modules(), strict=True)
                if hasattr(p, "weight_mask"))
    assert agree >= 0.99 * 1285  # float32 summation order may flip a few near-ties
