"""Scaled residual blocks: Stable ResNet and Depth-µP branch multipliers.

A residual block computes ``y_l = y_{l-1} + lambda_l F_l(y_{l-1})``. The branch multipliers
``lambda_l`` come from :func:`branch_scales`; :class:`ScaledResidual` wraps any branch module;
:func:`scale_residual_` converts the blocks of an existing ResNet-style model in place.

Papers: Stable ResNet, Hayou et al. arXiv 2010.12859; Depth-µP, Yang et al. arXiv 2310.02244;
stochastic depth on the branch, arXiv 2106.03091.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from ..errors import check_choice, check_fraction, check_int, check_positive
from .drop_path import drop_path

SCALE_MODES = ("standard", "stable", "decreasing", "depth_mup")


def branch_scales(depth: int, mode: str = "standard", a: float = 1.0, alpha: float = 1.0,
                  base_depth: int = 1) -> list[float]:
    """The ``depth`` branch multipliers ``lambda_1 .. lambda_L`` of a residual network.

    Args:
        depth: number of residual blocks ``L``.
        mode: ``"standard"`` (1, a plain ResNet), ``"stable"`` (``1/sqrt(L)``, Stable ResNet's
            uniform scaling), ``"decreasing"`` (``l^(-alpha)``, square-summable for
            ``alpha > 1/2``) or ``"depth_mup"`` (``sqrt(base_depth / L)``, Depth-µP's
            ``a / sqrt(L)`` normalised so that the base depth is the standard network).
        a: a constant multiplier applied to every mode (default 1 gives the values above;
            Depth-µP's tunable block multiplier).
        alpha: exponent of the decreasing mode; must be > 1/2 (the family is an
            interpretation of "square-summable", docs/residual.md).
        base_depth: the depth at which ``depth_mup`` equals ``a`` (used by that mode only).

    Returns:
        A list of ``depth`` floats.

    Papers: arXiv 2010.12859 (stable, decreasing), arXiv 2310.02244 (depth_mup).
    """
    depth = check_int("depth", depth)
    check_choice("mode", mode, SCALE_MODES)
    a = check_positive("a", a)
    base_depth = check_int("base_depth", base_depth)
    if mode == "standard":
        scales = [1.0] * depth
    elif mode == "stable":
        scales = [1.0 / math.sqrt(depth)] * depth
    elif mode == "decreasing":
        alpha = check_positive("alpha", alpha)
        if alpha <= 0.5:
            raise ValueError(f"alpha must be > 0.5 for mode='decreasing' (square-summable "
                             f"l^(-alpha)), got {alpha!r}")
        scales = [float(k) ** (-alpha) for k in range(1, depth + 1)]
    else:
        scales = [math.sqrt(base_depth / depth)] * depth
    return [a * s for s in scales]


def scaled_residual(x: torch.Tensor, branch_out: torch.Tensor, scale: float,
                    drop_prob: float = 0.0, training: bool = False,
                    scale_by_keep: bool = True) -> torch.Tensor:
    """``x + scale * drop_path(branch_out, drop_prob, training, scale_by_keep)`` (the block's
    combine step; ``scale_by_keep`` as in :func:`~scalelab.nn.drop_path`)."""
    return x + scale * drop_path(branch_out, drop_prob, training, scale_by_keep)


def _check_bool(name: str, value) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


class ScaledResidual(nn.Module):
    """``x + scale * branch(x)``, with drop path (drop probability ``drop_prob``) on the branch.

    ``scale``, ``drop_prob`` and ``scale_by_keep`` are plain attributes, so
    :func:`scale_residual_` or a user may change them after construction. At ``scale = 0``
    the branch is not evaluated. ``scale_by_keep`` picks drop path's convention
    (:func:`~scalelab.nn.drop_path`): True (default) divides kept branches by ``1 - drop_prob``
    in training and evaluates the full branch; False keeps unscaled masks in training and
    evaluates the mean network, ``x + scale * (1 - drop_prob) * branch(x)`` (arXiv 2106.03091).

    Papers: arXiv 2010.12859 (scale), arXiv 2106.03091 (drop path).
    """

    def __init__(self, branch: nn.Module, scale: float, drop_prob: float = 0.0,
                 scale_by_keep: bool = True) -> None:
        super().__init__()
        self.branch = branch
        self.scale = check_positive("scale", scale, allow_zero=True)
        self.drop_prob = check_fraction("drop_prob", drop_prob)
        self.scale_by_keep = _check_bool("scale_by_keep", scale_by_keep)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # a tensor scale (a dual number in block_sensitivities) must reach the branch even at 0
        if not torch.is_tensor(self.scale) and self.scale == 0.0:
            return x
        return scaled_residual(x, self.branch(x), self.scale, self.drop_prob, self.training,
                               self.scale_by_keep)

    def extra_repr(self) -> str:
        extra = "" if self.scale_by_keep else ", scale_by_keep=False"
        return f"scale={self.scale:.6g}, drop_prob={self.drop_prob:g}{extra}"


class _BranchTail:
    """Forward hook on the last module of a converted block's branch: scale, then drop path."""

    def __init__(self, scale: float, drop_prob: float, scale_by_keep: bool = True) -> None:
        self.scale = scale
        self.drop_prob = drop_prob
        self.scale_by_keep = scale_by_keep

    def __call__(self, module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
        return self.scale * drop_path(output, self.drop_prob, module.training,
                                      self.scale_by_keep)


_TAIL_ATTR = "_scalelab_branch_tail"


def _torchvision_tail(block: nn.Module) -> str | None:
    """Name of the last branch layer of a torchvision-style BasicBlock/Bottleneck, else None."""
    name = type(block).__name__
    if getattr(block, "se", None) is not None:
        return None  # a squeeze-excitation after the last norm: not the plain pattern
    if name == "BasicBlock" and all(hasattr(block, k) for k in ("conv1", "bn1", "conv2", "bn2")):
        return "bn2"
    if name == "Bottleneck" and all(hasattr(block, k) for k in ("conv3", "bn3")):
        return "bn3"
    return None


def residual_blocks(model: nn.Module) -> list[nn.Module]:
    """The residual blocks of ``model`` that scalelab controls, in registration order.

    These are :class:`ScaledResidual` modules and blocks converted by :func:`scale_residual_`.
    """
    return [m for m in model.modules()
            if isinstance(m, ScaledResidual) or hasattr(m, _TAIL_ATTR)]


def block_controller(block: nn.Module):
    """The object holding ``scale``, ``drop_prob`` and ``scale_by_keep`` for ``block`` (the
    block or its hook)."""
    if isinstance(block, ScaledResidual):
        return block
    if hasattr(block, _TAIL_ATTR):
        return getattr(block, _TAIL_ATTR)
    raise ValueError(f"block must be a ScaledResidual or a block converted by scale_residual_, "
                     f"got {type(block).__name__}")


def _convert(block: nn.Module, tail_name: str) -> None:
    tail = getattr(block, tail_name, None)
    if not isinstance(tail, nn.Module):
        raise ValueError(f"branch_tails: {type(block).__name__} has no submodule {tail_name!r}")
    if hasattr(block, _TAIL_ATTR):
        return
    hook = _BranchTail(1.0, 0.0)
    tail.register_forward_hook(hook)
    setattr(block, _TAIL_ATTR, hook)


def scale_residual_(model: nn.Module, mode: str = "stable", *, a: float = 1.0, alpha: float = 1.0,
                    base_depth: int = 1, drop_probs: float | Sequence[float] = 0.0,
                    branch_tails: Mapping[type, str] | None = None,
                    scale_by_keep: bool = True) -> list[nn.Module]:
    """Give every residual block of ``model`` the branch multipliers of ``mode``, in place.

    Blocks are found in registration order and counted to give the depth ``L`` passed to
    :func:`branch_scales`. Recognised blocks:

    - :class:`ScaledResidual`: its ``scale`` and ``drop_prob`` are set.
    - torchvision-style ``BasicBlock`` / ``Bottleneck`` (class name plus ``conv1/bn1/conv2/bn2``
      or ``conv3/bn3``): the branch ends in ``bn2`` / ``bn3`` and the shortcut is added after
      it, so a forward hook on that layer multiplies its output by the scale (with drop path).
      The state dict is unchanged, so pretrained weights still load. Drop path is active
      while that layer is in training mode (``model.train()``).
    - any class in ``branch_tails`` ({BlockClass: "name of the branch's last submodule"}),
      for blocks of the same pattern: ``out = tail(...)`` is the whole branch and
      ``out + shortcut`` follows.

    Cannot convert (documented in docs/residual.md): blocks whose branch ends in a
    functional op after its last submodule (e.g. ``F.relu(bn(x)) + x`` where the ReLU is
    functional — point ``branch_tails`` at a module instead), blocks with a squeeze-excitation
    or other gate after the last norm (unless named in ``branch_tails``), blocks with two
    residual additions (transformer layers: wrap each sublayer in :class:`ScaledResidual`),
    and post-activation blocks whose shortcut goes through the tail.

    Args:
        mode, a, alpha, base_depth: as in :func:`branch_scales`.
        drop_probs: one drop probability for every block, or one per block.
        branch_tails: extra block classes and their branch's last submodule name.
        scale_by_keep: drop path's convention for every block (:func:`~scalelab.nn.drop_path`):
            True, inverted scaling; False, unscaled masks and the mean network at evaluation.

    Returns:
        The list of blocks found (``ValueError`` when there are none).

    Papers: arXiv 2010.12859, arXiv 2310.02244.
    """
    tails = dict(branch_tails or {})
    scale_by_keep = _check_bool("scale_by_keep", scale_by_keep)
    found: list[nn.Module] = []
    for m in model.modules():
        if isinstance(m, ScaledResidual) or hasattr(m, _TAIL_ATTR):
            found.append(m)
            continue
        tail = next((t for cls, t in tails.items() if isinstance(m, cls)), None)
        tail = tail or _torchvision_tail(m)
        if tail is not None:
            _convert(m, tail)
            found.append(m)
    if not found:
        raise ValueError("model has no residual blocks scalelab recognises (ScaledResidual, "
                         "torchvision-style BasicBlock/Bottleneck); pass "
                         "branch_tails={BlockClass: 'last_branch_layer'}")
    scales = branch_scales(len(found), mode, a=a, alpha=alpha, base_depth=base_depth)
    probs = per_block("drop_probs", drop_probs, len(found), check_fraction)
    for block, s, p in zip(found, scales, probs, strict=True):
        ctl = block_controller(block)
        ctl.scale, ctl.drop_prob, ctl.scale_by_keep = s, p, scale_by_keep
    return found


def per_block(name: str, value, depth: int, check: Callable) -> list[float]:
    """A scalar broadcast to ``depth`` values, or a length-``depth`` sequence, each checked."""
    if isinstance(value, (int, float)):
        return [check(name, value)] * depth
    values = list(value)
    if len(values) != depth:
        raise ValueError(f"{name} must have one value per block ({depth}), got {len(values)}")
    return [check(f"{name}[{i}]", v) for i, v in enumerate(values)]


