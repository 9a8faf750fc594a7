"""``prune_at_init``: score, mask exactly, say what collapsed, and rescale back to the EOC.

The methods come from the registry (``registry.py``): every entry with ``at_init=True``.

Paper: Hayou, Ton, Doucet, Teh, "Robust Pruning at Initialization", arXiv 2002.08797.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterable

from torch import nn

from ..errors import ScalelabWarning, check_choice, check_fraction, check_int

# The built-in methods register themselves on import; this order is METHODS' order.
# isort: off
from . import scores  # noqa: F401  magnitude, random, snip, grasp
from . import synflow  # noqa: F401  synflow
from . import sbp_sr  # noqa: F401  sbp-sr
# isort: on
from .layers import is_masked, prunable_layers
from .masks import SCOPES, apply_masks_
from .registry import DATA_HELP, LossFn, MaskRequest, get_method, list_methods
from .report import PruneReport, mask_report
from .rescale import rescale_to_eoc_

#: the methods prune_at_init offers, in registration order (the registry's at-init entries)
METHODS = tuple(m.name for m in list_methods(at_init=True))
NEEDS_DATA = tuple(m.name for m in list_methods(at_init=True) if m.needs_data)


def _at_init_names() -> list[str]:
    return [m.name for m in list_methods(at_init=True)]


def _or_list(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " or " + names[-1]


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
    offered = _at_init_names()
    if method in {m.name for m in list_methods(at_init=False)}:
        raise ValueError(f"method must be one of {', '.join(map(repr, offered))}; got "
                         f"{method!r}, which trains and is not a pruning-at-init method (see "
                         f"scalelab.prune.get_method({method!r}))")
    check_choice("method", method, offered)
    entry = get_method(method)
    check_choice("scope", scope, SCOPES)
    iterations = check_int("iterations", iterations)
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    layers = prunable_layers(model)
    masked = [n for n, m in layers if is_masked(m)]
    if masked:
        raise ValueError(f"model is already pruned (layer {masked[0]!r} has a weight_mask); "
                         f"prune_at_init needs a dense model")
    if entry.needs_data and data is None:
        free = [m.name for m in list_methods(at_init=True) if not m.needs_data]
        raise ValueError(f"method={method!r} needs data: {DATA_HELP}; or use "
                         f"{_or_list(free)}, which need none")
    notes = entry.check(model) if entry.check is not None else []
    start = time.perf_counter()
    masks = entry.masks(MaskRequest(model=model, sparsity=sparsity, scope=scope, data=data,
                                    loss_fn=loss_fn, seed=seed, iterations=iterations,
                                    input_shape=input_shape))
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
    return mask_report(model, masks, method=method, scope=scope, sparsity=sparsity,
                       rescaled=rescaled if rescale else None, seconds=seconds, notes=notes)

