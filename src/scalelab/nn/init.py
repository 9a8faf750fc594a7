"""Edge-of-Chaos initialisation for torch modules (arXiv 1902.06853).

``eoc_normal_(tensor, act, sigma_b)`` fills a weight like ``torch.nn.init.normal_`` with
std ``sigma_w / sqrt(fan_in)``, sigma_w from :func:`scalelab.theory.edge_of_chaos`.
``init_eoc_(model)`` does it for every Linear / Conv layer and draws biases from
N(0, sigma_b^2), finding the activation from the model's activation modules.
"""

from __future__ import annotations

import math
import warnings

import torch
from torch import nn

from ..errors import ScalelabWarning, check_positive
from ..theory import EOCPoint, as_activation, edge_of_chaos
from .activations import module_activation

_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d,
           nn.ConvTranspose3d)


def _eoc_point(act, sigma_b: float | None) -> EOCPoint:
    a = as_activation(act)
    pt = edge_of_chaos(a, sigma_b)  # sigma_b=None: edge_of_chaos applies default_sigma_b
    if not pt.stable:
        warnings.warn(f"the EOC point of {a.name!r} at sigma_b={pt.sigma_b} repels (q*={pt.q:.4g}"
                      f" is an unstable fixed point): variances drift off the EOC with depth; "
                      f"a larger sigma_b gives a stable point", ScalelabWarning, stacklevel=3)
    return pt


def _fan_in(tensor: torch.Tensor) -> int:
    if tensor.dim() < 2:
        raise ValueError(f"tensor must have at least 2 dimensions (a weight), got shape "
                         f"{tuple(tensor.shape)}")
    return int(tensor.shape[1] * (tensor[0][0].numel() if tensor.dim() > 2 else 1))


def eoc_normal_(tensor: torch.Tensor, act, sigma_b: float | None = None, *,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``tensor`` with N(0, sigma_w^2 / fan_in), sigma_w on the Edge of Chaos.

    Args:
        tensor: a weight of shape (fan_out, fan_in, *kernel) (fan_in = in features x kernel).
        act: activation name, :class:`~scalelab.theory.Activation` or callable.
        sigma_b: the bias std the layer will get; default
            :func:`~scalelab.theory.default_sigma_b` (0 for ReLU-like).
    Returns:
        ``tensor``, filled in place (no autograd history).
    """
    pt = _eoc_point(act, sigma_b)
    std = pt.sigma_w / math.sqrt(_fan_in(tensor))
    with torch.no_grad():
        return tensor.normal_(0.0, std, generator=generator)


def detect_activation(model: nn.Module):
    """The single activation used by ``model``'s modules, as an Activation; ValueError if none
    or several (activations applied functionally in ``forward`` cannot be seen)."""
    found: dict[str, object] = {}
    for m in model.modules():
        act = module_activation(m)
        # nn.Identity ("linear") is a placeholder in most models, not the activation
        if act is not None and act.name != "linear":
            found.setdefault(repr(act), act)
    if len(found) == 1:
        return next(iter(found.values()))
    if not found:
        raise ValueError("init_eoc_: could not detect the activation of the model (no nn.Tanh, "
                         "nn.ReLU, nn.GELU, nn.SiLU, nn.ELU, nn.LeakyReLU, ... module; one "
                         "applied in forward() is invisible): pass act=")
    raise ValueError(f"init_eoc_: the model uses several activations ({', '.join(found)}): "
                     f"pass act=")


def init_eoc_(model: nn.Module, act=None, sigma_b: float | None = None, *,
              generator: torch.Generator | None = None) -> nn.Module:
    """Initialise every Linear / Conv layer of ``model`` on the Edge of Chaos, in place.

    Weights ~ N(0, sigma_w^2 / fan_in), biases ~ N(0, sigma_b^2) (zero when sigma_b = 0).
    Other modules (norms, embeddings) are left alone.

    Args:
        act: the activation; default: detected from the model's activation modules
            (``nn.Tanh``, ``nn.ReLU``, ``nn.GELU(approximate=...)``, ``nn.SiLU``,
            ``nn.ELU(alpha)``, ``nn.LeakyReLU(slope)``, ``nn.Softplus(beta)``, ``nn.SELU``,
            ``nn.Sigmoid``); a ValueError says so when it cannot be detected.
        sigma_b: bias std; default :func:`~scalelab.theory.default_sigma_b`.
    Returns:
        ``model``. A repelling EOC point (``stable=False``) gives a ScalelabWarning.
    arXiv 1902.06853.
    """
    a = detect_activation(model) if act is None else as_activation(act)
    pt = _eoc_point(a, sigma_b)
    return init_gaussian_(model, pt.sigma_w, pt.sigma_b, generator=generator)


def init_gaussian_(model: nn.Module, sigma_w: float, sigma_b: float, *,
                   generator: torch.Generator | None = None) -> nn.Module:
    """Every Linear / Conv layer: W ~ N(0, sigma_w^2 / fan_in), b ~ N(0, sigma_b^2), in place.

    The initialisation the EOC analysis assumes, at any (sigma_w, sigma_b) — e.g. a point in
    the ordered or chaotic phase, for comparison with :func:`init_eoc_`.
    """
    sigma_w = check_positive("sigma_w", sigma_w)
    sigma_b = check_positive("sigma_b", sigma_b, allow_zero=True)
    layers = [m for m in model.modules() if isinstance(m, _LAYERS)]
    if not layers:
        raise ValueError("the model has no nn.Linear / nn.Conv layer to initialise")
    with torch.no_grad():
        for m in layers:
            w = m.weight
            fan_in = _fan_in(w) if not isinstance(m, nn.modules.conv._ConvTransposeNd) else \
                int(w.shape[0] * w[0][0].numel())
            w.normal_(0.0, sigma_w / math.sqrt(fan_in), generator=generator)
            if m.bias is not None:
                if sigma_b > 0:
                    m.bias.normal_(0.0, sigma_b, generator=generator)
                else:
                    m.bias.zero_()
    return model
