"""Reference models, one home: the MLPs and ResNets that diagnostics, pruning and the
reproductions build.

- :func:`reference_mlp` — a plain MLP on the Edge of Chaos or at PyTorch's default init;
- :func:`reference_model` — ``"mlp"`` (:func:`reference_mlp`) or ``"resnet"``
  (:class:`~scalelab.nn.ResidualMLP`), the models ``scalelab diagnose`` reads;
- :func:`build_model` — one of :data:`MODEL_FAMILIES` (adds the conv ResNet), seeded, the
  models ``scalelab prune`` and the ``pruning-at-init`` reproduction prune.

The former homes keep working as aliases of these same objects:
``scalelab.diagnostics.reference_mlp`` / ``reference_model`` and
``scalelab.experiments.pruning_at_init.build_model`` / ``MODEL_FAMILIES``.
Papers: arXiv 1902.06853 (EOC init), arXiv 2010.12859 (Stable ResNet), arXiv 2002.08797.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import check_choice, check_int
from .activations import activation_module
from .init import init_eoc_
from .models import ConvResNet, ResidualMLP

#: ``kind`` values of :func:`reference_model`.
REFERENCE_MODELS = ("mlp", "resnet")
#: ``init`` values of :func:`reference_mlp`.
INITS = ("eoc", "standard")
#: ``family`` values of :func:`build_model`.
MODEL_FAMILIES = ("mlp", "resnet", "conv-resnet")


def reference_mlp(in_dim: int, width: int, depth: int, out_dim: int, act: str = "tanh",
                  init: str = "eoc", sigma_b: float | None = None) -> nn.Sequential:
    """``Linear(in, width) -> act -> [Linear(width, width) -> act] x (depth - 1) -> Linear(width, out)``.

    Args:
        in_dim, width, depth, out_dim: sizes; ``depth`` is the number of hidden layers.
        act: an activation name (:func:`scalelab.nn.activation_module`).
        init: ``"eoc"``: every Linear on the Edge of Chaos (:func:`scalelab.nn.init_eoc_`,
            weights N(0, sigma_w^2 / fan_in), biases N(0, sigma_b^2)); ``"standard"``:
            PyTorch's default init (U(+-1/sqrt(fan_in)): sigma_w^2 = 1/3, an ordered-phase
            init for tanh).
        sigma_b: the EOC bias std; default :func:`scalelab.theory.default_sigma_b` (applied
            by :func:`scalelab.theory.edge_of_chaos`).
    Returns:
        An ``nn.Sequential``. arXiv 1902.06853.
    """
    in_dim, width, depth, out_dim = (check_int(n, v) for n, v in (
        ("in_dim", in_dim), ("width", width), ("depth", depth), ("out_dim", out_dim)))
    check_choice("init", init, INITS)
    mods: list[nn.Module] = []
    fan_in = in_dim
    for _ in range(depth):
        mods += [nn.Linear(fan_in, width), activation_module(act)]
        fan_in = width
    model = nn.Sequential(*mods, nn.Linear(width, out_dim))
    if init == "eoc":
        init_eoc_(model, act, sigma_b)
    return model


def reference_model(kind: str, in_dim: int, width: int, depth: int, out_dim: int, *,
                    act: str = "tanh", init: str = "eoc", sigma_b: float | None = None,
                    mode: str = "stable") -> nn.Module:
    """``kind="mlp"``: :func:`reference_mlp`; ``kind="resnet"``: a
    :class:`scalelab.nn.ResidualMLP` with ``depth`` blocks and branch scales ``mode``
    (``init``/``sigma_b`` apply to the MLP only)."""
    check_choice("model", kind, REFERENCE_MODELS)
    if kind == "mlp":
        return reference_mlp(in_dim, width, depth, out_dim, act, init, sigma_b)
    return ResidualMLP(in_dim, width, depth, out_dim, mode=mode, act=act)


def build_model(family: str, in_dim: int, num_classes: int, *, depth: int, width: int,
                init: str = "eoc", act: str = "tanh", seed: int = 0,
                image_shape: tuple[int, int, int] | None = None) -> nn.Module:
    """A reference model for pruning, with weights drawn from ``seed``.

    Args:
        family: ``"mlp"``: :func:`reference_mlp` (``depth`` hidden layers, so ``depth + 1``
            Linear layers); ``init`` is ``"eoc"`` (Edge of Chaos) or ``"standard"``
            (PyTorch's default Linear init, sigma_w^2 = 1/3). ``"resnet"``: a
            :class:`~scalelab.nn.ResidualMLP` with ``depth`` blocks, and ``"conv-resnet"``: a
            :class:`~scalelab.nn.ConvResNet` on flat images of ``image_shape`` (C, H, W);
            for both, ``init`` is the branch scaling, ``"stable"`` (1/sqrt(L), Stable
            ResNet) or ``"standard"`` (1).
        act: activation name.
        seed: ``torch.manual_seed(seed)`` before the weights are drawn.
    Returns:
        The model. arXiv 2002.08797 (the models pruned there).
    """
    check_choice("model", family, MODEL_FAMILIES)
    torch.manual_seed(seed)
    if family == "mlp":
        return reference_model("mlp", in_dim, width, depth, num_classes, act=act, init=init)
    check_choice("init", init, ("stable", "standard"))
    if family == "resnet":
        return reference_model("resnet", in_dim, width, depth, num_classes, act=act, mode=init)
    if image_shape is None:
        raise ValueError("model 'conv-resnet' needs image_shape=(C, H, W), got None")
    return ConvResNet(image_shape[0], width, depth, num_classes, mode=init, act=act,
                      image_shape=image_shape)
