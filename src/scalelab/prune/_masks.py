"""Which weights are prunable, exact top-k masks from scores, and applying them through torch.

Masks go through :func:`torch.nn.utils.prune.custom_from_mask`, so a pruned layer carries
``weight_orig`` (the dense parameter that trains) and ``weight_mask`` (a buffer), and
``weight = weight_orig * weight_mask`` is recomputed before every forward: pruned weights stay
zero through any optimizer step, and :func:`torch.nn.utils.prune.remove` makes it permanent.

Paper: arXiv 2002.08797 (global top-k pruning at initialisation).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from .._errors import check_choice, check_fraction

#: the module types whose ``weight`` is prunable (never their bias)
PRUNABLE_TYPES = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d,
                  nn.ConvTranspose2d, nn.ConvTranspose3d)
SCOPES = ("global", "layer")
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


def _keep_top(flat: torch.Tensor, k: int) -> torch.Tensor:
    """Boolean mask keeping exactly the ``k`` largest entries of ``flat`` (1-D).

    Ties at the threshold are broken by position (earlier entries first), so the result is
    deterministic; NaN scores count as the lowest.
    """
    n = flat.numel()
    keep = torch.zeros(n, dtype=torch.bool, device=flat.device)
    if k <= 0:
        return keep
    if k >= n:
        return keep.fill_(True)
    flat = torch.nan_to_num(flat.double(), nan=-torch.inf)
    # The k-th largest value is the (n - k + 1)-th smallest.
    threshold = torch.kthvalue(flat.cpu(), n - k + 1).values.to(flat.device)
    keep = flat > threshold
    need = k - int(keep.sum())
    if need > 0:
        ties = torch.nonzero(flat == threshold).flatten()[:need]
        keep[ties] = True
    return keep


def topk_masks(scores: Mapping[str, torch.Tensor], sparsity: float,
               scope: str = "global") -> dict[str, torch.Tensor]:
    """Keep the highest-scoring weights: boolean masks shaped like each score tensor.

    Args:
        scores: one score tensor per layer (higher = more worth keeping).
        sparsity: fraction of weights to remove, in [0, 1).
        scope: ``"global"``: one ranking over all layers, keeping exactly
            ``round((1 - sparsity) * N)`` weights of the ``N`` in total; ``"layer"``: the
            same count within each layer separately.

    Ties are broken by position (layer order, then flat index), so equal scores give the
    same masks every time.
    """
    sparsity = check_fraction("sparsity", sparsity, high_open=True)
    check_choice("scope", scope, SCOPES)
    if not scores:
        raise ValueError("scores must hold at least one layer, got none")
    if scope == "layer":
        return {name: _keep_top(s.reshape(-1), round((1.0 - sparsity) * s.numel())).view_as(s)
                for name, s in scores.items()}
    flat = torch.cat([s.detach().reshape(-1).double().cpu() for s in scores.values()])
    keep = _keep_top(flat, round((1.0 - sparsity) * flat.numel()))
    masks, start = {}, 0
    for name, s in scores.items():
        masks[name] = keep[start:start + s.numel()].view(s.shape).to(s.device)
        start += s.numel()
    return masks


def apply_masks_(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Mask each named layer's weight through ``torch.nn.utils.prune.custom_from_mask``.

    Before masking, each layer's dense per-output-neuron squared norms are recorded in a
    ``weight_dense_sqnorm`` buffer, for :func:`~scalelab.prune.rescale_to_eoc_`. A layer that
    is already masked is a ``ValueError`` (call ``torch.nn.utils.prune.remove`` first).
    """
    from ._rescale import neuron_sqnorm

    modules = dict(model.named_modules())
    for name, mask in masks.items():
        module = modules.get(name)
        if module is None or not isinstance(module, PRUNABLE_TYPES):
            raise ValueError(f"masks: {name!r} is not a Linear / Conv layer of the model")
        if tuple(mask.shape) != tuple(module.weight.shape):
            raise ValueError(f"masks[{name!r}] has shape {tuple(mask.shape)}, the weight has "
                             f"{tuple(module.weight.shape)}")
        if is_masked(module):
            raise ValueError(f"layer {name!r} is already pruned; call "
                             f"torch.nn.utils.prune.remove(module, 'weight') first")
    for name, mask in masks.items():
        module = modules[name]
        with torch.no_grad():
            dense = neuron_sqnorm(module, module.weight.detach())
        if hasattr(module, DENSE_BUFFER):
            getattr(module, DENSE_BUFFER).copy_(dense)
        else:
            module.register_buffer(DENSE_BUFFER, dense)
        torch_prune.custom_from_mask(module, "weight", mask.to(module.weight.dtype))
    return model
