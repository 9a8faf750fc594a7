"""Exact top-k masks from scores, and applying (or undoing) them through torch.

Masks go through :func:`torch.nn.utils.prune.custom_from_mask`, so a pruned layer carries
``weight_orig`` (the dense parameter that trains) and ``weight_mask`` (a buffer), and
``weight = weight_orig * weight_mask`` is recomputed before every forward: pruned weights stay
zero through any optimizer step, and :func:`torch.nn.utils.prune.remove` makes it permanent.

Which weights are prunable lives in ``layers.py`` (re-exported here for older imports).

Paper: arXiv 2002.08797 (global top-k pruning at initialisation).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from ..errors import check_choice, check_fraction
from .layers import DENSE_BUFFER as DENSE_BUFFER
from .layers import PRUNABLE_TYPES as PRUNABLE_TYPES
from .layers import is_masked as is_masked
from .layers import prunable_layers as prunable_layers
from .layers import store_dense_sqnorm_

SCOPES = ("global", "layer")


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
        store_dense_sqnorm_(module, module.weight.detach())
        torch_prune.custom_from_mask(module, "weight", mask.to(module.weight.dtype))
    return model


def unmask_(module: nn.Module) -> torch.Tensor:
    """Undo ``torch.nn.utils.prune`` on ``module.weight`` without baking the mask in.

    Unlike :func:`torch.nn.utils.prune.remove` (which keeps ``weight_orig * weight_mask``),
    ``weight`` becomes the dense ``weight_orig`` parameter again, pruned entries included, so
    a different mask can go on. Returns the mask that was in place (a copy).
    ``ValueError`` when the layer is not masked.
    """
    if not is_masked(module):
        raise ValueError(f"{type(module).__name__}.weight has no torch.nn.utils.prune mask "
                         f"to undo")
    for key, hook in list(module._forward_pre_hooks.items()):
        if isinstance(hook, torch_prune.BasePruningMethod) and hook._tensor_name == "weight":
            del module._forward_pre_hooks[key]
    orig = module._parameters.pop("weight_orig")
    mask = module._buffers.pop("weight_mask").detach().clone()
    if "weight" in module.__dict__:
        del module.__dict__["weight"]  # the plain tensor the pruning hook kept recomputing
    module.register_parameter("weight", orig)
    return mask
