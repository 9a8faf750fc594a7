"""depth_mup_param_groups: partition, the lr/eps rule, the base-depth reduction (exact), the
coordinate check across depth, and the width rule read from mup-style ``infshape``s."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from scalelab.nn import ResidualMLP, depth_mup_optimizer, depth_mup_param_groups


def _by_name(groups):
    return {g["name"]: g for g in groups}


def test_groups_partition_and_rule():
    m = ResidualMLP(8, 16, 16, 3, mode="depth_mup", bias=True)
    groups = depth_mup_param_groups(m, lr=0.1, depth=16)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in m.parameters()) and len(ids) == len(set(ids))
    g = _by_name(groups)
    assert set(g) == {"blocks", "other"}
    assert {id(p) for p in g["blocks"]["params"]} == {id(p) for p in m.blocks.parameters()}
    assert g["blocks"]["lr"] == pytest.approx(0.1 / 4) and g["other"]["lr"] == 0.1
    assert g["blocks"]["eps"] == pytest.approx(1e-8 / 4) and g["other"]["eps"] == 1e-8
    g = _by_name(depth_mup_param_groups(m, lr=0.1, depth=16, base_depth=4, scale_eps=False))
    assert g["blocks"]["lr"] == pytest.approx(0.05) and g["blocks"]["eps"] == 1e-8
    g = _by_name(depth_mup_param_groups(m, lr=0.1, depth=16, optimizer="sgd"))
    assert g["blocks"]["lr"] == 0.1 and "eps" not in g["blocks"]
    m.input.weight.requires_grad_(False)  # frozen parameters are left out
    ids = {id(p) for gr in depth_mup_param_groups(m, lr=0.1, depth=16) for p in gr["params"]}
    assert id(m.input.weight) not in ids


def test_errors():
    with pytest.raises(ValueError, match="no trainable residual-block"):
        depth_mup_param_groups(nn.Linear(2, 2), lr=0.1, depth=4)
    m = ResidualMLP(4, 8, 2, 2)
    with pytest.raises(ValueError, match="optimizer must be one of"):
        depth_mup_param_groups(m, lr=0.1, depth=2, optimizer="lion")
    with pytest.raises(ValueError, match="lr"):
        depth_mup_param_groups(m, lr=-1, depth=2)
    with pytest.raises(ValueError, match="width='mup' needs mup.set_base_shapes"):
        depth_mup_param_groups(m, lr=0.1, depth=2, width="mup")


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_base_depth_equals_standard_parametrisation_step_for_step(optimizer):
    # At depth == base_depth Depth-µP's multiplier is 1 and every group has lr (and eps):
    # training must match a plain ResNet with a single-group optimizer bit for bit.
    torch.manual_seed(3)
    mup = ResidualMLP(10, 24, 4, 5, mode="depth_mup", base_depth=4, bias=True)
    torch.manual_seed(3)
    sp = ResidualMLP(10, 24, 4, 5, mode="standard", bias=True)
    assert all(torch.equal(a, b) for a, b in zip(mup.parameters(), sp.parameters(), strict=True))
    opt_mup = depth_mup_optimizer(mup, lr=1e-2, depth=4, base_depth=4, optimizer=optimizer)
    cls = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
    opt_sp = cls(sp.parameters(), lr=1e-2)
    for step in range(5):
        x, y = torch.randn(16, 10), torch.randint(0, 5, (16,))
        for model, opt in ((mup, opt_mup), (sp, opt_sp)):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
        assert all(torch.equal(a, b) for a, b in zip(mup.parameters(), sp.parameters(),
                                                     strict=True)), step


def _feature_change(depth, rule, seed, lr=1e-3):
    torch.manual_seed(seed)
    m = ResidualMLP(32, 128, depth, 10, mode="depth_mup")
    x, y = torch.randn(64, 32), torch.randint(0, 10, (64,))
    groups = depth_mup_param_groups(m, lr=lr, depth=depth) if rule else m.parameters()
    opt = torch.optim.Adam(groups, lr=lr)
    with torch.no_grad():
        before = m.features(x)
    F.cross_entropy(m(x), y).backward()
    opt.step()
    with torch.no_grad():
        return float((m.features(x) - before).pow(2).mean().sqrt())


def test_coordinate_check_one_adam_step_flat_across_depth():
    # mup-style coordinate check: RMS change of the final features after one Adam step
    # (mean of 2 seeds). Adam's first step moves every block weight by ~lr, and the L blocks
    # add up coherently behind their 1/sqrt(L) multipliers: ~sqrt(L) growth at a global lr
    # (x5.7 from depth 4 to 128), flat with block lr / sqrt(L). Measured: ratio 1.3 with the
    # rule, 6.4 without; the test allows < 1.6 and > 4.
    depths = (4, 16, 64, 128)
    with_rule = [sum(_feature_change(L, True, s) for s in range(2)) / 2 for L in depths]
    without = [sum(_feature_change(L, False, s) for s in range(2)) / 2 for L in depths]
    assert max(with_rule) / min(with_rule) < 1.6, with_rule
    assert without[-1] / without[0] > 4.0, without
    assert without[-1] / without[0] > 2.5 * with_rule[-1] / with_rule[0]


class _FakeInfShape:
    """The three methods of mup's InfShape that MuAdam/MuSGD read (duck-typed)."""

    def __init__(self, ninf, width_mult, fan_ratio=1.0):
        self._n, self._w, self._r = ninf, width_mult, fan_ratio

    def ninf(self):
        return self._n

    def width_mult(self):
        return self._w

    def fanin_fanout_mult_ratio(self):
        return self._r


def test_width_rule_from_mup_infshapes():
    # mup's rules, written out: Adam: matrix-like (2 infinite dims) lr / width_mult, weight
    # decay * width_mult, others unchanged. SGD: vector-like lr * width_mult, matrix-like
    # lr / (fan-in mult / fan-out mult).
    m = ResidualMLP(4, 8, 4, 2, mode="depth_mup")
    m.input.weight.infshape = _FakeInfShape(1, 2.0)
    m.input.bias.infshape = _FakeInfShape(1, 2.0)
    m.output.weight.infshape = _FakeInfShape(1, 2.0)
    m.output.bias.infshape = _FakeInfShape(0, 1.0)
    for b in m.blocks:
        b.branch[1].weight.infshape = _FakeInfShape(2, 2.0, fan_ratio=1.0)
    g = _by_name(depth_mup_param_groups(m, lr=0.1, depth=4, weight_decay=0.01))
    assert g["blocks_matrix_like_x0.5"]["lr"] == pytest.approx(0.1 / 2 / 2)
    assert g["blocks_matrix_like_x0.5"]["weight_decay"] == pytest.approx(0.02)
    assert g["other_vector_like_x1"]["lr"] == pytest.approx(0.1)
    assert len(g["other_vector_like_x1"]["params"]) == 4
    g = _by_name(depth_mup_param_groups(m, lr=0.1, depth=4, optimizer="sgd"))
    assert g["blocks_matrix_like_x1"]["lr"] == pytest.approx(0.1)
    assert g["other_vector_like_x2"]["lr"] == pytest.approx(0.2)
    assert g["other_fixed_x1"]["lr"] == pytest.approx(0.1)
    assert len(depth_mup_param_groups(m, lr=0.1, depth=4, width="none")) == 2
    del m.output.bias.infshape
    with pytest.raises(ValueError, match="some but not all"):
        depth_mup_param_groups(m, lr=0.1, depth=4)
    assert math.isclose(sum(len(x["params"]) for x in depth_mup_param_groups(
        m, lr=0.1, depth=4, width="none")), len(list(m.parameters())))
