"""The rescaling trick: put a pruned network back on the Edge of Chaos, neuron by neuron.

Pruning a network initialised on the EOC removes part of each neuron's incoming weight mass,
so ``chi1 = sigma_w^2 E[phi'^2]`` falls below 1 (to about the keep fraction for random
pruning) and signals die with depth. The trick scales each output neuron's (channel's)
surviving incoming weights by ``rho_i = sqrt(sum_j W_ij^2 / sum_j m_ij W_ij^2)`` so that
their squared norm regains its dense value.

Paper: Hayou et al., "Robust Pruning at Initialization", arXiv 2002.08797. The exact constant
is our interpretation (docs/methods.md, Pruning at initialisation): the paper rescales to keep
the variance of the dense one; we restore each neuron's own dense squared norm, recorded at
pruning, which is exact rather than in expectation. The "in expectation" variant is
``mode="expectation"``.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import check_choice, check_positive
from .layers import (
    DENSE_BUFFER,
    is_masked,
    is_stochastic,
    neuron_sqnorm,
    prunable_layers,
    scale_neurons_,
    store_dense_sqnorm_,
)
from .report import LayerRescale

RESCALE_MODES = ("exact", "expectation")
_IDEMPOTENCE_TOL = 1e-6  # factors this close to 1 are set to exactly 1

def record_dense_norms_(model: nn.Module, *, overwrite: bool = False) -> nn.Module:
    """Record each Linear / Conv layer's dense per-neuron squared norms in a buffer.

    :func:`~scalelab.prune.prune_at_init` does this before masking. For a layer already
    masked by ``torch.nn.utils.prune`` the norms come from ``weight_orig`` (the dense weights
    torch keeps). Layers that hold a record keep it unless ``overwrite=True``.
    """
    for _, module in prunable_layers(model):
        if hasattr(module, DENSE_BUFFER) and not overwrite:
            continue
        store_dense_sqnorm_(module, module.weight_orig if is_masked(module) else module.weight)
    return model


def rescale_to_eoc_(model: nn.Module, *, mode: str = "exact",
                    sigma_w: float | None = None) -> dict[str, LayerRescale]:
    """Scale every pruned layer's ``weight_orig`` so each neuron regains its dense squared norm.

    For output neuron (channel) ``i`` with mask ``m`` and dense weights ``W`` recorded at
    pruning, ``rho_i = sqrt(sum_j W_ij^2 / sum_j m_ij W_ij^2)`` multiplies row ``i`` of
    ``weight_orig``. Calling it again changes nothing (factors within 1e-6 of 1 are taken
    as exactly 1). A neuron with no surviving (non-zero) weight is left alone and counted in
    ``dead_neurons``.

    Args:
        model: a model pruned by :func:`~scalelab.prune.prune_at_init` or by
            ``torch.nn.utils.prune`` (then the dense norms are recorded from ``weight_orig``
            on the first call).
        mode: ``"exact"`` (the default: each neuron's own dense squared norm) or
            ``"expectation"`` (the variant ``rho_i = sigma_w / sqrt(sum_j m_ij W_ij^2)``:
            every neuron's squared norm becomes ``sigma_w^2``, which the dense norms match in
            expectation).
        sigma_w: the init's weight scale for ``mode="expectation"``; default the square root of
            each layer's mean dense squared norm per neuron.

    Returns:
        ``{layer name: LayerRescale}`` (factor range and dead neurons) for each pruned layer.

    Paper: arXiv 2002.08797 (rescaling trick; exact constant: interpretation,
    docs/methods.md, Pruning at initialisation).
    """
    check_choice("mode", mode, RESCALE_MODES)
    if sigma_w is not None:
        sigma_w = check_positive("sigma_w", sigma_w)
    layers = [(n, m) for n, m in prunable_layers(model) if is_masked(m)]
    if not layers:
        raise ValueError("rescale_to_eoc_: the model has no pruned layer (no weight_mask); "
                         "prune it first, e.g. with scalelab.prune.prune_at_init")
    stochastic = [n for n, m in layers if is_stochastic(m)]
    if stochastic:
        raise ValueError(f"rescale_to_eoc_: layer {stochastic[0]!r} has a stochastic mask; "
                         f"call scalelab.prune.threshold_masks_ first")
    out: dict[str, LayerRescale] = {}
    for name, module in layers:
        if not hasattr(module, DENSE_BUFFER):
            module.register_buffer(DENSE_BUFFER, neuron_sqnorm(module, module.weight_orig))
        dense = getattr(module, DENSE_BUFFER).double()
        w = module.weight_orig
        kept = neuron_sqnorm(module, w.detach() * module.weight_mask)
        if mode == "exact":
            target = dense
        else:
            s2 = sigma_w ** 2 if sigma_w is not None else float(dense.mean())
            target = torch.full_like(dense, s2)
        alive = kept > 0
        rho = torch.ones_like(kept)
        rho[alive] = torch.sqrt(target[alive] / kept[alive])
        rho[(rho - 1).abs() <= _IDEMPOTENCE_TOL] = 1.0
        with torch.no_grad():
            scale_neurons_(module, w.data, rho.to(w.device))
        # torch recomputes ``weight`` before each forward; refresh it now so it is not stale
        module.weight = w * module.weight_mask
        live = rho[alive]
        out[name] = LayerRescale(
            neurons=int(rho.numel()), dead_neurons=int((~alive).sum()),
            rho_min=float(live.min()) if live.numel() else 1.0,
            rho_max=float(live.max()) if live.numel() else 1.0,
            rho_mean=float(live.mean()) if live.numel() else 1.0,
        )
    return out
