"""Depth-µP parameter groups: per-group learning rates (and Adam eps) that transfer across depth.

Depth-µP (Tensor Programs VI) puts each block behind the multiplier ``a / sqrt(L)`` — the
``"depth_mup"`` mode of :func:`~scalelab.nn.branch_scales` — and scales the block weights'
learning rate: Adam ``lr / sqrt(L)``, SGD ``lr`` (no depth factor). Input and output layers
keep ``lr``.

Width: scalelab does not implement width-µP itself; it interoperates with microsoft's
``mup`` package (not a dependency, never imported). If ``mup.set_base_shapes`` has been
called on the model, every parameter carries an ``infshape`` and the groups are split
further by mup's own width rule (that of ``mup.MuAdam`` / ``mup.MuSGD``). Pass the groups to
a PLAIN ``torch.optim.Adam`` / ``SGD`` — a mup optimizer would apply the width rule twice.

Paper: Yang, Yu, Zhu, Hayou, arXiv 2310.02244; width-µP: arXiv 2203.03466.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from ..errors import check_choice, check_int, check_positive

OPTIMIZERS = ("adam", "sgd")
WIDTH_RULES = ("auto", "mup", "none")


def _width_factor(p, optimizer: str) -> tuple[str, float]:
    """mup's per-parameter (kind, lr factor): MuAdam and MuSGD's rules, read off ``p.infshape``."""
    shape = p.infshape
    ninf = shape.ninf()
    if ninf > 2:
        raise ValueError(f"width='mup': a parameter of shape {tuple(p.shape)} has {ninf} infinite "
                         "dimensions; mup supports at most 2")
    if optimizer == "adam":
        return ("matrix_like", 1.0 / shape.width_mult()) if ninf == 2 else ("vector_like", 1.0)
    if ninf == 2:
        return "matrix_like", 1.0 / shape.fanin_fanout_mult_ratio()
    if ninf == 1:
        return "vector_like", float(shape.width_mult())
    return "fixed", 1.0


def depth_mup_param_groups(model, *, lr: float, depth: int, base_depth: int = 1,
                           optimizer: str = "adam", eps: float = 1e-8, scale_eps: bool = True,
                           weight_decay: float = 0.0, width: str = "auto",
                           blocks: Iterable | None = None) -> list[dict]:
    """Parameter groups implementing Depth-µP's learning-rate rule (a pure builder).

    Args:
        model: a network whose residual blocks are :class:`~scalelab.nn.ScaledResidual` or
            converted by :func:`~scalelab.nn.scale_residual_` (or pass ``blocks``).
        lr: the base learning rate (the one tuned at ``base_depth``).
        depth: the number of residual blocks ``L``.
        base_depth: the depth at which every group has ``lr`` (Depth-µP then equals the
            standard parametrisation); the factor is ``sqrt(L / base_depth)``.
        optimizer: ``"adam"`` (block lr ``lr / sqrt(L/base_depth)``) or ``"sgd"`` (no factor).
        eps: Adam's epsilon for the non-block groups.
        scale_eps: Adam only — block weights get ``eps / sqrt(L/base_depth)``
            (interpretation, lower confidence: docs/methods.md, Depth-µP); False keeps ``eps``.
        weight_decay: base weight decay (mup's width rule scales it like the lr's inverse).
        width: ``"auto"`` applies mup's width rule when every trainable parameter has an
            ``infshape`` (set by ``mup.set_base_shapes``) and none when no parameter has one;
            ``"mup"`` requires it; ``"none"`` ignores it.
        blocks: modules whose parameters are block weights (default: the model's residual
            blocks, :func:`~scalelab.nn.residual_blocks`).

    Returns:
        A list of dicts with ``"params"``, ``"lr"``, ``"weight_decay"``, ``"name"`` (``"blocks"``
        or ``"other"``, suffixed with mup's kind and width factor under the width rule) and,
        for Adam, ``"eps"``. Every trainable parameter is in exactly one group; biases and
        norms inside a block count as block weights; everything outside the blocks
        (input, output layer, embeddings, final norm) is ``"other"``.

    Paper: arXiv 2310.02244 (depth rule); arXiv 2203.03466 (width rule, via ``mup``).
    """
    from .residual import residual_blocks

    lr = check_positive("lr", lr)
    depth = check_int("depth", depth)
    base_depth = check_int("base_depth", base_depth)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    eps = check_positive("eps", eps)
    weight_decay = check_positive("weight_decay", weight_decay, allow_zero=True)
    check_choice("width", width, WIDTH_RULES)
    blocks = list(residual_blocks(model) if blocks is None else blocks)
    block_ids = {id(p) for b in blocks for p in b.parameters() if p.requires_grad}
    if not block_ids:
        raise ValueError("model has no trainable residual-block parameters (blocks are "
                         "ScaledResidual modules or converted by scale_residual_); pass blocks=")
    trainable = [p for p in model.parameters() if p.requires_grad]
    has_shape = [hasattr(p, "infshape") for p in trainable]
    if width == "auto":
        if any(has_shape) and not all(has_shape):
            raise ValueError("width='auto': some but not all parameters have mup's infshape; "
                             "call mup.set_base_shapes on the whole model or pass width='none'")
        width = "mup" if all(has_shape) else "none"
    if width == "mup" and not all(has_shape):
        raise ValueError("width='mup' needs mup.set_base_shapes(model, ...) first (parameters "
                         "lack infshape)")
    ratio = math.sqrt(depth / base_depth)
    depth_lr = {"blocks": 1.0 / ratio if optimizer == "adam" else 1.0, "other": 1.0}
    depth_eps = {"blocks": 1.0 / ratio if scale_eps else 1.0, "other": 1.0}
    groups: dict[tuple[str, str, float], dict] = {}
    for p in trainable:
        part = "blocks" if id(p) in block_ids else "other"
        kind, wf = _width_factor(p, optimizer) if width == "mup" else ("", 1.0)
        key = (part, kind, wf)
        if key not in groups:
            name = part if not kind else f"{part}_{kind}_x{wf:g}"
            g = {"params": [], "lr": lr * depth_lr[part] * wf,
                 "weight_decay": weight_decay / wf, "name": name}
            if optimizer == "adam":
                g["eps"] = eps * depth_eps[part]
            groups[key] = g
        groups[key]["params"].append(p)
    return list(groups.values())


def depth_mup_optimizer(model, *, lr: float, depth: int, base_depth: int = 1,
                        optimizer: str = "adam", **kwargs):
    """A torch ``Adam`` / ``SGD`` over :func:`depth_mup_param_groups` (kwargs go to the builder
    where it takes them — ``eps``, ``scale_eps``, ``weight_decay``, ``width``, ``blocks`` — and
    to the optimizer otherwise, e.g. ``betas`` or ``momentum``)."""
    import torch

    names = ("eps", "scale_eps", "weight_decay", "width", "blocks")
    builder_kw = {k: kwargs.pop(k) for k in names if k in kwargs}
    groups = depth_mup_param_groups(model, lr=lr, depth=depth, base_depth=base_depth,
                                    optimizer=optimizer, **builder_kw)
    cls = torch.optim.Adam if optimizer == "adam" else torch.optim.SGD
    return cls(groups, lr=lr, **kwargs)
