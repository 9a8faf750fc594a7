"""create_loraplus_optimizer: exact reduction to LoRA, the B/A step ratio, weight decay, kwargs."""

import copy

import pytest
import torch
from torch import nn

from _lora_models import MLP, peft_tiny
from scalelab import ScalelabWarning
from scalelab.lora import (
    LoRALinear,
    add_lora,
    create_loraplus_optimizer,
    ignores_group_lr,
    loraplus_param_groups,
)


def _train(model, optimizer, batches, loss_fn):
    for x, y in batches:
        optimizer.zero_grad()
        loss_fn(model(x), y).backward()
        optimizer.step()


def _mlp_batches(n=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(8, 12, generator=g), torch.randint(0, 5, (8,), generator=g))
            for _ in range(n)]


def _token_batches(n=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randint(0, 50, (4, 7), generator=g), torch.randint(0, 3, (4,), generator=g))
            for _ in range(n)]


def _nonzero_B(model):
    """Give B factors values so both factors get gradients from the first step."""
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name or "lora_embedding_B" in name:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def _assert_same_params(a, b):
    for (name, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), name


def _differs(a, b):
    return any(not torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))


@pytest.mark.parametrize("kind", ["add_lora", "peft"])
def test_ratio_one_is_plain_lora_step_for_step(kind):
    """ratio=1 (and lr_embedding=lr) equals one-group AdamW, bit for bit, after 6 steps."""
    if kind == "add_lora":
        base = add_lora(MLP(), ["fc1", "fc2"], r=4)
        base.head.requires_grad_(True)  # a trainable head and biases join the comparison
        batches = _mlp_batches()
    else:
        base = peft_tiny(bias="all")  # embedding LoRA, conv, head in modules_to_save, biases
        batches = _token_batches()
    _nonzero_B(base)
    lr, loss = 3e-3, nn.functional.cross_entropy
    runs = {}
    for ratio in (1.0, 2.0):
        plus = copy.deepcopy(base)
        _train(plus, create_loraplus_optimizer(plus, lr=lr, ratio=ratio, lr_embedding=lr),
               batches, loss)
        runs[ratio] = plus
    plain = copy.deepcopy(base)
    trainable = [p for p in plain.parameters() if p.requires_grad]
    _train(plain, torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0), batches, loss)
    _assert_same_params(runs[1.0], plain)
    assert _differs(runs[2.0], plain)  # the comparison can tell the ratio apart


def test_sgd_step_moves_B_ratio_times_A():
    torch.manual_seed(0)
    layer = LoRALinear(nn.Linear(32, 16), r=4)
    _nonzero_B(layer)
    x = torch.randn(10, 32)
    before = {n: p.detach().clone() for n, p in layer.named_parameters() if p.requires_grad}
    lr, ratio = 0.05, 7.0
    opt = create_loraplus_optimizer(layer, torch.optim.SGD, lr=lr, ratio=ratio)
    layer(x).pow(2).sum().backward()
    grads = {n: p.grad.clone() for n, p in layer.named_parameters() if p.requires_grad}
    opt.step()
    step = {n: ((before[n] - p.detach()).norm() / grads[n].norm()).item()
            for n, p in layer.named_parameters() if p.requires_grad}
    assert step["lora_A"] == pytest.approx(lr, rel=1e-5)
    assert step["lora_B"] / step["lora_A"] == pytest.approx(ratio, rel=1e-5)


def test_weight_decay_reaches_decayable_params_only():
    """AdamW with zero gradients moves a decayed param by exactly -lr * wd * p, others not at all."""
    model = add_lora(MLP(), ["fc1"], r=4)
    model.head.requires_grad_(True)
    model.norm.requires_grad_(True)
    _nonzero_B(model)
    lr, ratio, wd = 0.01, 4.0, 0.3
    opt = create_loraplus_optimizer(model, lr=lr, ratio=ratio, weight_decay=wd)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    expect = {"fc1.lora_A": lr, "fc1.lora_B": lr * ratio, "head.weight": lr}
    for name, p in model.named_parameters():
        if name in expect:
            assert torch.allclose(p, before[name] * (1 - expect[name] * wd), rtol=0, atol=1e-7)
            assert not torch.equal(p, before[name])
        else:  # biases, norm weights, frozen base weights
            assert torch.equal(p, before[name]), name


def test_weight_decay_default_is_zero_whatever_the_optimizer_default():
    opt = create_loraplus_optimizer(add_lora(MLP(), "fc1"), torch.optim.AdamW, lr=1e-3)
    assert torch.optim.AdamW([torch.zeros(1, requires_grad=True)]).defaults["weight_decay"] > 0
    assert all(g["weight_decay"] == 0.0 for g in opt.param_groups)


def test_keyword_routing():
    model = add_lora(MLP(), "fc1")
    model.head.requires_grad_(True)
    opt = create_loraplus_optimizer(model, torch.optim.Adam, lr=2e-3, ratio=5.0, betas=(0.8, 0.9),
                                    eps=1e-6, weight_decay=0.05, head_lr=1e-2)
    assert isinstance(opt, torch.optim.Adam)
    assert opt.defaults["lr"] == 2e-3 and opt.defaults["betas"] == (0.8, 0.9)
    assert opt.defaults["eps"] == 1e-6 and opt.defaults["weight_decay"] == 0  # Adam's own default
    want = loraplus_param_groups(model, lr=2e-3, ratio=5.0, weight_decay=0.05, head_lr=1e-2)
    got = [{k: g[k] for k in ("name", "lr", "weight_decay")} for g in opt.param_groups]
    assert got == [{k: g[k] for k in ("name", "lr", "weight_decay")} for g in want]
    assert all(g["betas"] == (0.8, 0.9) for g in opt.param_groups)


class Prodigy(torch.optim.SGD):
    """Stands in for prodigyopt.Prodigy (ignores per-group lr), without the dependency."""


class DAdaptAdam(torch.optim.SGD):
    pass


class Declared(torch.optim.SGD):
    ignores_group_lr = True


@pytest.mark.parametrize("cls", [Prodigy, DAdaptAdam, Declared])
def test_lr_free_optimizers_are_refused_or_warned(cls):
    model = add_lora(MLP(), "fc1")
    assert ignores_group_lr(cls)
    with pytest.raises(ValueError, match=f"optimizer_cls={cls.__name__} ignores per-group"):
        create_loraplus_optimizer(model, cls, lr=1e-3)
    with pytest.warns(ScalelabWarning, match="allow_lr_free=True"):
        opt = create_loraplus_optimizer(model, cls, lr=1e-3, allow_lr_free=True)
    assert isinstance(opt, cls)


def test_ordinary_optimizers_are_not_lr_free():
    for cls in (torch.optim.AdamW, torch.optim.SGD, torch.optim.Adagrad, torch.optim.RMSprop):
        assert not ignores_group_lr(cls)


def test_errors():
    model = add_lora(MLP(), "fc1")
    with pytest.raises(ValueError, match="lr must be a finite number > 0, got 0"):
        create_loraplus_optimizer(model, lr=0)
    with pytest.raises(ValueError, match="ratio must be a finite number > 0, got -1"):
        create_loraplus_optimizer(model, lr=1e-3, ratio=-1)
    with pytest.raises(ValueError, match="optimizer_cls must be an optimizer class"):
        create_loraplus_optimizer(model, "adamw", lr=1e-3)
    with pytest.raises(ValueError, match="found no LoRA parameters in MLP"):
        create_loraplus_optimizer(MLP(), lr=1e-3)
