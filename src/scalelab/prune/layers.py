"""Which weights are prunable, whether a layer is masked, and per-neuron squared norms.

The bottom of :mod:`scalelab.prune`: every other module (masks, scores, rescaling, the
method registry, stochastic masks) imports from here and this module imports none of them,
so there is no import circle.

Paper: arXiv 2002.08797 (what is pruned; the per-neuron norms behind the rescaling trick).
"""

from __future__ import annotations

import torch
from torch import nn

#: the module types whose ``weight`` is prunable (never their bias)
PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
                  nn.ConvTranspose2d, nn.ConvTranspose3d)
#: buffer holding each pruned layer's dense per-neuron squared norms (for the rescaling trick)
DENSE_BUFFER = "weight_dense_sqnorm"


def prunable_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(qualified name, module)`` of every Linear / Conv layer, in registration order.

    The output layer is included; biases are never pruned. A model without such a layer is a
    ``ValueError``.
    """
    layers = [(name or type(m).__name__, m) for name, m in model.named_modules()
              if isinstance(m, PRUNABLE_TYPES)]
    if not layers:
        raise ValueError("model has no nn.Linear / nn.Conv layer to prune")
    return layers


def is_masked(module: nn.Module) -> bool:
    """Whether ``module.weight`` already goes through a ``torch.nn.utils.prune`` mask."""
    return hasattr(module, "weight_mask") and hasattr(module, "weight_orig")


def is_stochastic(module: nn.Module) -> bool:
    """Whether ``module.weight`` carries a stochastic mask (from ``stochastic_masks_``)."""
    return is_masked(module) and hasattr(module, "weight_logit")


def _transposed(module: nn.Module) -> bool:
    return isinstance(module, nn.modules.conv._ConvTransposeNd)


def _grouped_view(module: nn.Module, w: torch.Tensor) -> torch.Tensor:
    """A transposed conv's weight (in, out/g, *k) viewed as (g, in/g, out/g, *k)."""
    g = module.groups
    return w.reshape(g, w.shape[0] // g, *w.shape[1:])


def neuron_sqnorm(module: nn.Module, w: torch.Tensor) -> torch.Tensor:
    """Squared norm of each output neuron's (channel's) incoming weights, in float64: ``(out,)``.

    Linear / Conv weights are ``(out, in/groups, *kernel)``; transposed convs
    ``(in, out/groups, *kernel)`` are regrouped so each output channel sums its own inputs.
    """
    w = w.detach().double()
    if not _transposed(module):
        return w.pow(2).reshape(w.shape[0], -1).sum(1)
    v = _grouped_view(module, w).pow(2)  # (g, in/g, out/g, *k)
    dims = [1] + list(range(3, v.dim()))
    return v.sum(dim=dims).reshape(-1)  # (out,)


def scale_neurons_(module: nn.Module, w: torch.Tensor, rho: torch.Tensor) -> None:
    """Multiply each output neuron's incoming weights in ``w`` by ``rho`` (shape ``(out,)``)."""
    rho = rho.to(w.dtype)
    if not _transposed(module):
        w.mul_(rho.view(-1, *([1] * (w.dim() - 1))))
        return
    g = module.groups
    grouped = _grouped_view(module, w).shape  # (g, in/g, out/g, *k)
    factor = rho.view(g, 1, -1, *([1] * (w.dim() - 2))).expand(grouped).reshape(w.shape)
    w.mul_(factor)


def store_dense_sqnorm_(module: nn.Module, w: torch.Tensor) -> None:
    """Write ``neuron_sqnorm(module, w)`` into the module's ``weight_dense_sqnorm`` buffer."""
    dense = neuron_sqnorm(module, w)
    if hasattr(module, DENSE_BUFFER):
        getattr(module, DENSE_BUFFER).copy_(dense)
    else:
        module.register_buffer(DENSE_BUFFER, dense)
