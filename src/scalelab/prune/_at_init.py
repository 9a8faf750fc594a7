"""``prune_at_init``: score, mask exactly, say what collapsed, and rescale back to the EOC.

Paper: Hayou, Ton, Doucet, Teh, "Robust Pruning at Initialization", arXiv 2002.08797.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterable

from torch import nn

from .._errors import ScalelabWarning, check_choice, check_fraction, check_int
from ._masks import SCOPES, apply_masks_, is_masked, prunable_layers, topk_masks
from ._report import LayerReport, PruneReport
from ._rescale import neuron_sqnorm, rescale_to_eoc_
from ._scores import (
    DATA_HELP,
    LossFn,
    grasp_scores,
    magnitude_scores,
    random_scores,
    snip_scores,
)
from ._synflow import synflow_masks

METHODS = ("magnitude", "random", "snip", "grasp", "synflow", "sbp-sr")
NEEDS_DATA = ("snip", "grasp", "sbp-sr")


def _stable_resnet_notes(model: nn.Module) -> list[str]:
    """SBP-SR expects 1/sqrt(L) branches: check the ScaledResidual scales, warn otherwise."""
    from ..nn import block_controller, residual_blocks

    blocks = residual_blocks(model)
    if not blocks:
        warnings.warn("sbp-sr expects a Stable ResNet (residual branches scaled by 1/sqrt(L)) "
                      "but no ScaledResidual block was found, so the scaling cannot be checked; "
                      "build it with scalelab.nn.ResidualMLP/ConvResNet(mode='stable') or "
                      "scalelab.nn.scale_residual_(model, 'stable')", ScalelabWarning,
                      stacklevel=3)
        return ["sbp-sr: no residual blocks detected; Stable ResNet scaling not checked"]
    depth = len(blocks)
    want = 1.0 / math.sqrt(depth)
    scales = [float(block_controller(b).scale) for b in blocks]
    if all(math.isclose(s, want, rel_tol=1e-6) for s in scales):
        return [f"sbp-sr: Stable ResNet detected ({depth} blocks, scale 1/sqrt({depth}) = "
                f"{want:.4g})"]
    warnings.warn(f"sbp-sr expects a Stable ResNet: {depth} residual blocks should have scale "
                  f"1/sqrt({depth}) = {want:.4g}, found {min(scales):.4g}..{max(scales):.4g}; "
                  f"use mode='stable' or scalelab.nn.scale_residual_(model, 'stable')",
                  ScalelabWarning, stacklevel=3)
    return [f"sbp-sr: residual scales {min(scales):.4g}..{max(scales):.4g}, not the Stable "
            f"ResNet's {want:.4g}"]


def _scores(model, method, data, loss_fn, seed):
    if method == "magnitude":
        return magnitude_scores(model)
    if method == "random":
        return random_scores(model, seed=seed)
    if method == "grasp":
        return grasp_scores(model, data, loss_fn)
    return snip_scores(model, data, loss_fn)  # snip and sbp-sr


def prune_at_init(model: nn.Module, sparsity: float, method: str = "magnitude", *, data=None,
                  loss_fn: LossFn | None = None, scope: str = "global", rescale: bool = True,
                  strict: bool = False, input_shape: Iterable[int] | None = None,
                  seed: int = 0, iterations: int = 100) -> PruneReport:
    """Prune ``model`` at initialisation, in place, and report what happened.

    Scores every Linear / Conv weight (output layer included, biases never), keeps the
    highest-scoring ones — exactly ``round((1 - sparsity) * N)`` of the ``N`` weights with
    ``scope="global"``, that count per layer with ``scope="layer"`` — and masks the rest
    through ``torch.nn.utils.prune`` (``weight_orig`` trains, ``weight_mask`` keeps pruned
    weights at zero; ``torch.nn.utils.prune.remove`` makes it permanent).

    Args:
        model: any module with Linear / Conv layers, not pruned yet.
        sparsity: fraction of the weights to remove, in [0, 1).
        method: ``"magnitude"`` (|W|), ``"random"``, ``"snip"`` (|W dL/dW|), ``"grasp"``
            (W Hg), ``"synflow"`` (iterative, data-free) or ``"sbp-sr"`` (SNIP scores, global,
            on a Stable ResNet with 1/sqrt(L) branches — checked on ScaledResidual blocks
            when present, a warning otherwise).
        data: an ``(x, y)`` batch or an iterable of them; needed by snip, grasp and sbp-sr
            (``ValueError`` without); synflow reads only its input shape.
        loss_fn: ``loss_fn(outputs, y)`` for snip / grasp / sbp-sr; default cross-entropy.
        scope: ``"global"`` (one ranking over all layers) or ``"layer"``.
        rescale: apply :func:`~scalelab.prune.rescale_to_eoc_` after masking (every method).
        strict: a layer left with no weight (layer collapse) is a ``ValueError`` raised
            before the model is touched; by default a ``ScalelabWarning``.
        input_shape: SynFlow's input shape without batch dimension (conv nets; default from
            ``data`` or the first Linear's ``in_features``).
        seed: seed of the random scores.
        iterations: SynFlow's rounds (100 in the paper).

    Returns:
        A :class:`~scalelab.prune.PruneReport`.

    Paper: arXiv 2002.08797 (pruning at init, EOC, rescaling, SBP-SR); the scores' papers are
    cited in their functions.
    """
    sparsity = check_fraction("sparsity", sparsity, high_open=True)
    check_choice("method", method, METHODS)
    check_choice("scope", scope, SCOPES)
    iterations = check_int("iterations", iterations)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    layers = prunable_layers(model)
    masked = [n for n, m in layers if is_masked(m)]
    if masked:
        raise ValueError(f"model is already pruned (layer {masked[0]!r} has a weight_mask); "
                         f"prune_at_init needs a dense model")
    if method in NEEDS_DATA and data is None:
        raise ValueError(f"method={method!r} needs data: {DATA_HELP}; or use magnitude, "
                         f"random or synflow, which need none")
    notes = _stable_resnet_notes(model) if method == "sbp-sr" else []
    start = time.perf_counter()
    if method == "synflow":
        masks = synflow_masks(model, sparsity, scope=scope, iterations=iterations,
                              input_shape=input_shape, data=data)
    else:
        masks = topk_masks(_scores(model, method, data, loss_fn, seed), sparsity, scope)
    collapsed = [n for n, _ in layers if not bool(masks[n].any())]
    if collapsed:
        msg = (f"layer collapse: {method} at sparsity {sparsity:g} ({scope}) leaves "
               f"{len(collapsed)} layer(s) with no weight, so no signal gets through: "
               f"{', '.join(map(repr, collapsed))}")
        if strict:
            raise ValueError(msg + " (strict=True)")
        warnings.warn(msg, ScalelabWarning, stacklevel=2)
    apply_masks_(model, masks)
    rescaled = rescale_to_eoc_(model) if rescale else {}
    seconds = time.perf_counter() - start
    reports = []
    for name, module in layers:
        mask = masks[name]
        dead = int((neuron_sqnorm(module, mask.float()) == 0).sum())
        reports.append(LayerReport(name=name, kind=type(module).__name__,
                                   shape=tuple(module.weight.shape), total=mask.numel(),
                                   kept=int(mask.sum()), dead_neurons=dead,
                                   rescale=rescaled.get(name)))
    return PruneReport(method=method, scope=scope, sparsity=sparsity,
                       total=sum(r.total for r in reports), kept=sum(r.kept for r in reports),
                       layers=reports, rescaled=bool(rescale), seconds=seconds, notes=notes)
