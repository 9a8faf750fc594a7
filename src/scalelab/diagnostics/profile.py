"""Propagation profile: what a network does to signals, layer by layer, on a batch of inputs.

Forward hooks record each layer's output (the pre-activations of the next nonlinearity),
one backward pass records the gradient flowing back into it. The three statistics are the
mean-field quantities of arXiv 1902.06853 / Schoenholz et al. 2017, measured on one network:
the variance ``q`` (per-unit second moment), the correlation ``c`` between inputs, and the
size of the backpropagated gradient.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ._utils import as_batch, check_model, eval_mode, first_tensor

#: The modules that count as layers by default: affine maps whose outputs are pre-activations.
DEFAULT_LAYER_TYPES: tuple[type[nn.Module], ...] = (
    nn.Linear, nn.Bilinear, nn.Conv1d, nn.Conv2d, nn.Conv3d,
    nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
)


@dataclass(frozen=True)
class LayerStats:
    """One layer's statistics on a batch (``index`` counts layers in forward order from 0).

    ``variance``: the mean over examples of ``||y(x)||^2 / width`` — the per-unit second
    moment ``q`` of the variance map (uncentred, as the mean-field theory has it).
    ``correlation``: the mean over pairs ``a < b`` of ``<y_a, y_b> / (||y_a|| ||y_b||)`` —
    the ``c`` of the correlation map (NaN for a batch of one).
    ``grad_norm``: the Frobenius norm, over the batch, of the gradient of the backward
    objective with respect to the layer's output.
    ``width``: the number of features of one example's output (all dimensions but the batch).
    """

    index: int
    name: str
    module_type: str
    width: int
    variance: float
    correlation: float
    grad_norm: float


def select_layers(model: nn.Module, layers=None) -> list[tuple[str, nn.Module]]:
    """The ``(name, module)`` pairs that count as layers (in registration order).

    ``layers``: None (every :data:`DEFAULT_LAYER_TYPES` module), a module type or a tuple of
    types (e.g. a transformer's block class), or an iterable of module names and/or modules.
    """
    named = list(model.named_modules())
    if layers is None:
        layers = DEFAULT_LAYER_TYPES
    if isinstance(layers, type) or (isinstance(layers, tuple) and layers
                                    and all(isinstance(t, type) for t in layers)):
        chosen = [(n, m) for n, m in named if isinstance(m, layers)]
        if not chosen:
            types = layers if isinstance(layers, tuple) else (layers,)
            raise ValueError(f"layers: the model has no module of type "
                             f"{', '.join(t.__name__ for t in types)}; pass layers= (module "
                             f"types, names or modules)")
        return chosen
    if isinstance(layers, (str, nn.Module)) or not isinstance(layers, Iterable):
        layers = [layers]
    by_name, by_id = dict(named), {id(m): n for n, m in named}
    chosen = []
    for item in layers:
        if isinstance(item, str):
            if item not in by_name:
                raise ValueError(f"layers: no module named {item!r} in the model (names look "
                                 f"like {', '.join(repr(n) for n, _ in named[1:4])})")
            chosen.append((item, by_name[item]))
        elif isinstance(item, nn.Module) and id(item) in by_id:
            chosen.append((by_id[id(item)], item))
        else:
            raise ValueError(f"layers: {item!r} is neither a module name nor a submodule of "
                             f"the model")
    if not chosen:
        raise ValueError("layers must name at least one module, got an empty list")
    return chosen


def kernel_summary(K) -> tuple[float, float]:
    """``(mean variance, mean pairwise correlation)`` of a covariance matrix (n, n): the
    infinite-width counterpart of a :class:`LayerStats`' ``variance`` and ``correlation``
    (e.g. for :func:`scalelab.theory.nngp_kernels`; correlation NaN for n = 1)."""
    import numpy as np

    K = np.asarray(K, dtype=float)
    q = np.diag(K)
    n = K.shape[0]
    if n < 2:
        return float(q.mean()), math.nan
    iu = np.triu_indices(n, 1)
    return float(q.mean()), float(np.mean(K[iu] / np.sqrt(q[iu[0]] * q[iu[1]])))


def _stats(y: torch.Tensor) -> tuple[int, float, float]:
    """(width, mean q, mean pairwise correlation) of one layer output (B, ...)."""
    flat = y.detach().reshape(y.shape[0], -1).double()  # (B, width)
    width = flat.shape[1]
    gram = flat @ flat.T / width  # (B, B)
    q = torch.diagonal(gram)
    variance = float(q.mean())
    b = flat.shape[0]
    if b < 2:
        return width, variance, math.nan
    norm = torch.sqrt(torch.clamp(q, min=0.0))
    denom = norm[:, None] * norm[None, :]
    corr = torch.where(denom > 0, gram / torch.where(denom > 0, denom, 1.0),
                       torch.full_like(gram, math.nan))
    iu = torch.triu_indices(b, b, 1)
    return width, variance, float(torch.nanmean(corr[iu[0], iu[1]]))


def propagation_profile(model: nn.Module, x, *, y=None, loss_fn=None, layers=None,
                        seed: int = 0) -> list[LayerStats]:
    """Per-layer variance, mean pairwise input correlation and gradient norm on a batch.

    Args:
        model: any ``nn.Module`` (MLP, CNN, transformer, ...). It runs in eval mode (each
            submodule's mode is restored afterwards); parameter ``.grad`` is not touched.
        x: a batch of inputs (B, ...), B >= 2 for correlations.
        y: targets for the backward pass. None (default): the backward objective is
            ``<g, f(x)>`` with ``g ~ N(0, I)`` drawn from ``seed`` — a random output
            direction, the backward signal of Schoenholz et al. 2017 (interpretation: the
            papers study gradients of a generic loss; a fixed Gaussian cotangent makes the
            gradient statistics independent of the outputs' values).
        loss_fn: ``loss_fn(output, y) -> scalar`` when ``y`` is given (default cross-entropy).
        layers: which modules count as layers (see :func:`select_layers`); default every
            Linear / Bilinear / Conv / ConvTranspose module — the affine maps whose outputs
            are pre-activations. For a transformer pass its block type (e.g.
            ``layers=(GPT2Block,)``) to profile the residual stream.
    Returns:
        One :class:`LayerStats` per layer call, in the order the forward pass runs them (a
        module called twice appears twice; one never called does not appear). A layer's
        output that is a tuple (Hugging Face blocks) is profiled through its first tensor;
        each example's output is flattened to one feature vector.

    arXiv 1902.06853 (signal propagation); Schoenholz et al. 2017 (gradient statistics).
    """
    check_model(model)
    chosen = select_layers(model, layers)
    x = as_batch(model, x)
    records: list[tuple[str, nn.Module, torch.Tensor, tuple[int, float, float]]] = []

    def hook_for(name: str):
        def hook(module: nn.Module, _inp, out):
            t = first_tensor(out)
            records.append((name, module, t, _stats(t)))
            # hand the rest of the network a copy, so that an in-place op after the layer
            # (ReLU(inplace=True)) cannot rewrite the recorded tensor's value or its graph
            return t.clone() if out is t else None
        return hook

    handles = [m.register_forward_hook(hook_for(n)) for n, m in chosen]
    try:
        with eval_mode(model), torch.enable_grad():
            out = first_tensor(model(x))
            if y is None:
                g = torch.Generator(device="cpu").manual_seed(int(seed))
                cot = torch.randn(out.shape, generator=g, dtype=torch.float64)
                objective = (out * cot.to(out.device, out.dtype)).sum()
            else:
                objective = (loss_fn or F.cross_entropy)(out, y)
    finally:
        for h in handles:
            h.remove()
    if not records:
        raise ValueError("propagation_profile: none of the selected layers ran in the forward "
                         "pass; pass layers= naming modules the model calls")
    grads = _output_grads(objective, [r[2] for r in records])
    result = []
    for i, ((name, module, _t, (width, var, corr)), grad) in enumerate(
            zip(records, grads, strict=True)):
        gnorm = math.nan if grad is None else float(grad.detach().double().norm())
        result.append(LayerStats(i, name, type(module).__name__, width, var, corr, gnorm))
    return result


def _output_grads(objective: torch.Tensor, outs: Sequence[torch.Tensor]):
    """d objective / d out for each recorded output (None where it does not depend on it)."""
    need = [i for i, t in enumerate(outs) if t.requires_grad]
    grads: list[torch.Tensor | None] = [None] * len(outs)
    if need and objective.requires_grad:
        got = torch.autograd.grad(objective, [outs[i] for i in need], allow_unused=True)
        for i, g in zip(need, got, strict=True):
            grads[i] = g
    return grads
