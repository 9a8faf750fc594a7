"""Reference networks: a residual MLP and a small conv ResNet of any depth, and MLP / ResNet
references in NTK parametrisation (:class:`NTKMLP`, :class:`NTKResidualMLP`) whose tangent
kernels meet :func:`scalelab.theory.ntk_kernel` / :func:`~scalelab.theory.resnet_ntk`.

Both use the block of Stable ResNet / Depth-µP / the depth-limit papers,
``y_l = y_{l-1} + lambda_l W_l phi(y_{l-1})``, with ``lambda_l`` from
:func:`~scalelab.nn.branch_scales` and drop path on the branch. Their blocks are the
``.blocks`` ModuleList of :class:`~scalelab.nn.ScaledResidual`, so
:func:`~scalelab.nn.block_sensitivities` and :func:`~scalelab.nn.depth_mup_param_groups`
find them. A Stable ResNet in one line: ``ResidualMLP(784, 256, 64, 10, mode="stable")``.

Papers: arXiv 2010.12859, arXiv 2310.02244, arXiv 2302.00453 (initialisation conventions).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils import skip_init

from ..errors import check_fraction, check_int, check_positive
from .activations import activation_module as activation_module  # its home: .activations
from .residual import ScaledResidual, branch_scales, per_block


def _default_sigma_w(act) -> float:
    return math.sqrt(2.0) if act == "relu" else 1.0


def _resolve(depth, mode, scales, a, alpha, base_depth, drop_probs):
    depth = check_int("depth", depth)
    if scales is None:
        scales = branch_scales(depth, mode, a=a, alpha=alpha, base_depth=base_depth)
    scales = per_block("scales", scales, depth, lambda n, v: check_positive(n, v, allow_zero=True))
    probs = per_block("drop_probs", drop_probs, depth, check_fraction)
    return depth, scales, probs


class ResidualMLP(nn.Module):
    """``Linear(in, width) -> L x [y + lambda_l W_l act(y)] -> Linear(width, out)``.

    Args:
        in_dim, width, depth, out_dim: sizes; ``depth`` is the number of residual blocks.
        mode, a, alpha, base_depth: branch multipliers, as in :func:`branch_scales`
            (``mode="stable"`` is Stable ResNet, ``"depth_mup"`` Depth-µP's ``a/sqrt(L)``).
        act: the branch's activation (a name, module or callable).
        scales: explicit per-block multipliers (overrides ``mode``).
        drop_probs: drop-path probability, one for all blocks or one per block.
        sigma_w: block weights ~ N(0, sigma_w^2 / width); default sqrt(2) for ReLU, else 1.
        bias: whether block linears have a bias (zero at init).

    Init: input weights ~ N(0, 1/in_dim), readout ~ N(0, 1/width), their biases zero.
    ``features(x)`` returns the residual stream after the last block.

    Papers: arXiv 2010.12859, arXiv 2310.02244.
    """

    def __init__(self, in_dim: int, width: int, depth: int, out_dim: int, mode: str = "stable",
                 act="relu", *, a: float = 1.0, alpha: float = 1.0, base_depth: int = 1,
                 scales: Sequence[float] | None = None,
                 drop_probs: float | Sequence[float] = 0.0, sigma_w: float | None = None,
                 bias: bool = False) -> None:
        super().__init__()
        in_dim, width, out_dim = (check_int(n, v) for n, v in
                                  (("in_dim", in_dim), ("width", width), ("out_dim", out_dim)))
        depth, scales, probs = _resolve(depth, mode, scales, a, alpha, base_depth, drop_probs)
        sigma_w = check_positive("sigma_w", _default_sigma_w(act) if sigma_w is None else sigma_w)
        self.input = nn.Linear(in_dim, width)
        self.blocks = nn.ModuleList()
        for s, p in zip(scales, probs, strict=True):
            lin = skip_init(nn.Linear, width, width, bias=bias)  # weights drawn just below
            nn.init.normal_(lin.weight, std=sigma_w / math.sqrt(width))
            if bias:
                nn.init.zeros_(lin.bias)
            self.blocks.append(ScaledResidual(nn.Sequential(activation_module(act), lin), s, p))
        self.output = nn.Linear(width, out_dim)
        for lin in (self.input, self.output):
            nn.init.normal_(lin.weight, std=1.0 / math.sqrt(lin.in_features))
            nn.init.zeros_(lin.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        y = self.input(x)  # (B, width)
        for block in self.blocks:
            y = block(y)
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.features(x))


class ConvResNet(nn.Module):
    """A small conv ResNet: ``3x3 stem -> L x [y + lambda_l conv3x3(act(y))] -> avg pool -> linear``.

    Resolution and channel count stay fixed (``width`` channels), so any depth works.

    Args:
        in_channels, width, depth, num_classes: sizes.
        image_shape: ``(C, H, W)`` to reshape flat inputs ``(B, C*H*W)`` (e.g. the digit
            loaders' vectors); None expects ``(B, C, H, W)``.
        mode, a, alpha, base_depth, act, scales, drop_probs: as in :class:`ResidualMLP`.
        sigma_w: block convs ~ N(0, sigma_w^2 / (9 * width)); default sqrt(2) for ReLU, else 1.

    Papers: arXiv 2010.12859 (conv Stable ResNet).
    """

    def __init__(self, in_channels: int, width: int, depth: int, num_classes: int,
                 mode: str = "stable", act="relu", *, image_shape: Sequence[int] | None = None,
                 a: float = 1.0, alpha: float = 1.0, base_depth: int = 1,
                 scales: Sequence[float] | None = None,
                 drop_probs: float | Sequence[float] = 0.0,
                 sigma_w: float | None = None) -> None:
        super().__init__()
        in_channels, width, num_classes = (check_int(n, v) for n, v in (
            ("in_channels", in_channels), ("width", width), ("num_classes", num_classes)))
        depth, scales, probs = _resolve(depth, mode, scales, a, alpha, base_depth, drop_probs)
        sigma_w = check_positive("sigma_w", _default_sigma_w(act) if sigma_w is None else sigma_w)
        if image_shape is not None:
            image_shape = tuple(int(v) for v in image_shape)
            if len(image_shape) != 3 or image_shape[0] != in_channels:
                raise ValueError(f"image_shape must be (in_channels={in_channels}, H, W), "
                                 f"got {image_shape!r}")
        self.image_shape = image_shape
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1)
        nn.init.normal_(self.stem.weight, std=1.0 / math.sqrt(9 * in_channels))
        nn.init.zeros_(self.stem.bias)
        self.blocks = nn.ModuleList()
        for s, p in zip(scales, probs, strict=True):
            conv = skip_init(nn.Conv2d, width, width, 3, padding=1, bias=False)
            nn.init.normal_(conv.weight, std=sigma_w / math.sqrt(9 * width))
            self.blocks.append(ScaledResidual(nn.Sequential(activation_module(act), conv), s, p))
        self.head = nn.Linear(width, num_classes)
        nn.init.normal_(self.head.weight, std=1.0 / math.sqrt(width))
        nn.init.zeros_(self.head.bias)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        if self.image_shape is not None:
            x = x.reshape(x.shape[0], *self.image_shape)  # (B, C, H, W)
        y = self.stem(x)  # (B, width, H, W)
        for block in self.blocks:
            y = block(y)
        return y.mean(dim=(2, 3))  # (B, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class NTKLinear(nn.Module):
    """``y = (sigma_w / sqrt(in)) x W^T + sigma_b b`` with ``W, b ~ N(0, 1)``: NTK parametrisation.

    The trained parameters are the unit-variance ``W`` and ``b``; the multipliers sit in the
    forward pass, so the tangent kernel has a width limit (Jacot et al. 2018). No bias when
    ``sigma_b = 0``. The forward pass equals an ``nn.Linear`` with weights
    ``N(0, sigma_w^2 / in)`` and biases ``N(0, sigma_b^2)``.
    """

    def __init__(self, in_features: int, out_features: int, *, sigma_w: float = 1.0,
                 sigma_b: float = 0.0) -> None:
        super().__init__()
        self.in_features, self.out_features = check_int("in_features", in_features), \
            check_int("out_features", out_features)
        self.sigma_w = check_positive("sigma_w", sigma_w)
        self.sigma_b = check_positive("sigma_b", sigma_b, allow_zero=True)
        self.weight = nn.Parameter(torch.randn(self.out_features, self.in_features))
        self.bias = nn.Parameter(torch.randn(self.out_features)) if self.sigma_b > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = (self.sigma_w / math.sqrt(self.in_features)) * (x @ self.weight.T)  # (B, out)
        return y if self.bias is None else y + self.sigma_b * self.bias

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"sigma_w={self.sigma_w:g}, sigma_b={self.sigma_b:g}")


class NTKMLP(nn.Module):
    """The MLP of :func:`scalelab.theory.ntk_kernel` at finite width: ``depth`` NTKLinear layers.

    ``NTKLinear(in, width) -> act -> [NTKLinear(width, width) -> act] x (depth - 2) ->
    NTKLinear(width, out)``; ``depth`` counts linear layers (``depth=1`` is one
    ``NTKLinear(in, out)``), the convention of ``nngp_kernel`` / ``ntk_kernel``. As the width
    grows its empirical NTK per output (:func:`scalelab.diagnostics.empirical_ntk`) tends to
    ``ntk_kernel(act, sigma_w, sigma_b, depth, X)``, with O(1/sqrt(width)) fluctuations.

    Args:
        act: a name, module or callable (:func:`activation_module`).
        sigma_w, sigma_b: the layers' multipliers (the same for every layer).
        dtype: parameter dtype (float64 keeps the Monte Carlo's rounding far below its noise).
    Paper: Jacot et al. 2018; arXiv 1905.13654.
    """

    def __init__(self, in_dim: int, width: int, depth: int, out_dim: int = 1, act="relu", *,
                 sigma_w: float = 1.0, sigma_b: float = 0.0,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        in_dim, width, depth, out_dim = (check_int(n, v) for n, v in (
            ("in_dim", in_dim), ("width", width), ("depth", depth), ("out_dim", out_dim)))
        dims = [in_dim] + [width] * (depth - 1) + [out_dim]
        mods: list[nn.Module] = []
        for i in range(depth):
            if i:
                mods.append(activation_module(act))
            mods.append(NTKLinear(dims[i], dims[i + 1], sigma_w=sigma_w, sigma_b=sigma_b))
        self.layers = nn.Sequential(*mods).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class NTKResidualMLP(nn.Module):
    """The ResNet of :func:`scalelab.theory.resnet_ntk` at finite width, NTK parametrisation.

    ``Y_0 = W_in x / sqrt(d)``, ``Y_l = Y_{l-1} + alpha_l W_l act(Y_{l-1}) / sqrt(n)``, every
    weight ``N(0, 1)``, no biases; ``forward`` returns the readout ``V Y_L / sqrt(n)``
    (``out_dim`` outputs), whose NTK tends to ``resnet_ntk(...) + resnet_kernel(...)`` (the
    readout's own gradient adds ``Q_L``); ``features`` returns ``Y_L``.

    Args:
        scales: the ``alpha_l`` (one per block, e.g. :func:`branch_scales` output); default
            ``1/sqrt(depth)``.
        act, dtype: as in :class:`NTKMLP`.
    Papers: arXiv 1905.13654, arXiv 2302.00453, arXiv 2310.01683.
    """

    def __init__(self, in_dim: int, width: int, depth: int, out_dim: int = 1, act="relu", *,
                 scales: Sequence[float] | None = None,
                 dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        depth, scales, _ = _resolve(depth, "stable", scales, 1.0, 1.0, 1, 0.0)
        self.input = NTKLinear(check_int("in_dim", in_dim), check_int("width", width))
        self.blocks = nn.ModuleList(
            ScaledResidual(nn.Sequential(activation_module(act), NTKLinear(width, width)), s)
            for s in scales)
        self.output = NTKLinear(width, check_int("out_dim", out_dim))
        self.to(dtype)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        y = self.input(x)  # (B, width)
        for block in self.blocks:
            y = block(y)
        return y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(self.features(x))
