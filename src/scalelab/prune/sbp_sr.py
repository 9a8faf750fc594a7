"""SBP-SR: sensitivity-based pruning (SNIP's scores, global top-k) of a Stable ResNet.

The registry entry checks the residual scaling it can see before scoring: every
``ScaledResidual`` block must have scale ``1/sqrt(L)``, else a ``ScalelabWarning``; a model
with no detectable block also gets one. The check goes into ``PruneReport.notes``.

Paper: Hayou, Ton, Doucet, Teh, "Robust Pruning at Initialization", arXiv 2002.08797.
"""

from __future__ import annotations

import math
import warnings

from torch import nn

from ..errors import ScalelabWarning
from .registry import score_method
from .scores import snip_scores


def stable_resnet_notes(model: nn.Module) -> list[str]:
    """SBP-SR expects 1/sqrt(L) branches: check the ScaledResidual scales, warn otherwise.

    Called by :func:`~scalelab.prune.prune_at_init` (the warning points at its caller).
    """
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


score_method("sbp-sr", lambda r: snip_scores(r.model, r.data, r.loss_fn), needs_data=True,
             scoring="SNIP's |W dL/dW|, global, on a Stable ResNet (1/sqrt(L) branches)",
             check=stable_resnet_notes, paper="arXiv 2002.08797")
