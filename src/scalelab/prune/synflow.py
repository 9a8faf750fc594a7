"""SynFlow: data-free, iterative pruning by synaptic flow.

The network is "linearised" — every parameter and buffer replaced by its absolute value —
and fed one all-ones input; ``R = sum(f(1))`` is the total synaptic flow and each weight's
score is ``|W * dR/dW|``. For a chain of linear / ReLU layers without biases the scores of
every layer sum to ``R`` (conservation), which is why pruning by them does not collapse a
layer. Pruning is iterative: ``iterations`` rounds with the kept fraction shrinking
exponentially, ``d_r = (1 - sparsity) ** (r / iterations)``, rescoring the masked network
each round.

The work happens on a float64 copy of the model in eval mode (batch norm uses its running
statistics, dropout / drop path are off), so the caller's model, signs and dtype are never
touched (equivalent to the reference code's in-place ``abs`` and sign restoration).

Paper: Tanaka et al., "Pruning neural networks without any data by iteratively conserving
synaptic flow", arXiv 2006.05467.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from .._progress import track
from ..errors import check_fraction, check_int
from .layers import is_masked, prunable_layers
from .masks import topk_masks
from .registry import PruneMethod, register_method
from .scores import first_input_shape


class _Linearised:
    """A float64, eval-mode, all-``abs`` copy of a model, rescored under changing masks."""

    def __init__(self, model: nn.Module, input_shape: tuple[int, ...],
                 dtype: torch.dtype = torch.float64) -> None:
        layers = prunable_layers(model)
        masked = [n for n, m in layers if is_masked(m)]
        if masked:
            raise ValueError(f"synflow: layer {masked[0]!r} is already pruned (call "
                             f"torch.nn.utils.prune.remove first)")
        self.names = [n for n, _ in layers]
        self.net = copy.deepcopy(model).to(dtype).eval()
        with torch.no_grad():
            for p in self.net.parameters():
                p.abs_().requires_grad_(False)
            for b in self.net.buffers():
                if b.is_floating_point():
                    b.abs_()
        modules = dict(self.net.named_modules())
        self.layers = [modules[n] for n in self.names]
        self.abs_weights = [m.weight.detach().clone() for m in self.layers]
        device = self.abs_weights[0].device
        self.x = torch.ones((1, *input_shape), dtype=dtype, device=device)

    def scores(self, masks: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
        weights = []
        with torch.no_grad():
            for name, m, w0 in zip(self.names, self.layers, self.abs_weights, strict=True):
                if masks is None:
                    m.weight.copy_(w0)
                else:  # a same-dtype mask multiplies several times faster than a bool one
                    torch.mul(w0, masks[name].to(w0.dtype), out=m.weight)
                weights.append(m.weight.requires_grad_(True))
        out = self.net(self.x)
        if not torch.is_tensor(out):
            raise ValueError(f"synflow needs a model whose output is a tensor, got "
                             f"{type(out).__name__}")
        flow = out.sum()
        if not torch.isfinite(flow):
            raise ValueError(f"synflow: the synaptic flow R = sum(f(1)) overflowed {self.x.dtype} "
                             f"on this model (too deep or too wide for the all-ones input)")
        grads = torch.autograd.grad(flow, weights, allow_unused=True)
        scores = {}
        for name, w, g in zip(self.names, weights, grads, strict=True):
            w.requires_grad_(False)
            scores[name] = torch.zeros_like(w) if g is None else g.mul_(w.detach()).abs_()
        return scores


def synflow_scores(model: nn.Module, *, input_shape: Iterable[int] | None = None, data=None,
                   masks: Mapping[str, torch.Tensor] | None = None,
                   dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    """One round of SynFlow scores ``|W * dR/dW|``, ``R = sum(|f|(1))``.

    Args:
        input_shape: one input's shape without the batch dimension; default from ``data``'s
            first batch, else the first Linear layer's ``in_features`` (conv nets need one of
            the two).
        data: only read for the input shape.
        masks: ``{layer name: 0/1 mask}`` applied to the linearised weights first.
        dtype: precision of the pass; float64 (the default, as the reference code) resists
            the flow's overflow on deep nets; float32 halves the copy's memory (not faster on
            CPU: benchmarks/prune_speed.py) but overflows sooner.

    Paper: arXiv 2006.05467.
    """
    shape = first_input_shape(model, input_shape, data)
    return _Linearised(model, shape, dtype).scores(masks)


def synflow_masks(model: nn.Module, sparsity: float, *, scope: str = "global",
                  iterations: int = 100, input_shape: Iterable[int] | None = None,
                  data=None, dtype: torch.dtype = torch.float64) -> dict[str, torch.Tensor]:
    """Iterative SynFlow: ``iterations`` rounds of rescoring and exponentially tighter top-k.

    Round ``r`` (1-based) keeps the top ``(1 - sparsity) ** (r / iterations)`` fraction (exact
    count, as :func:`~scalelab.prune.topk_masks`); weights pruned in earlier rounds stay
    pruned. ``input_shape``, ``data`` and ``dtype`` as in :func:`synflow_scores`. Returns
    boolean masks; the model is not modified.

    Paper: arXiv 2006.05467 (100 rounds, exponential schedule).
    """
    sparsity = check_fraction("sparsity", sparsity, high_open=True)
    density = 1.0 - sparsity
    iterations = check_int("iterations", iterations)
    lin = _Linearised(model, first_input_shape(model, input_shape, data), dtype)
    masks = None
    for r in track(range(1, iterations + 1), "synflow rounds", total=iterations):
        scores = lin.scores(masks)
        if masks is not None:
            for name, s in scores.items():
                s.masked_fill_(~masks[name], -torch.inf)  # pruned weights never come back
        step = sparsity if r == iterations else 1.0 - density ** (r / iterations)
        masks = topk_masks(scores, step, scope)
    return masks


register_method(PruneMethod(
    name="synflow", needs_data=False, paper="arXiv 2006.05467",
    scoring="|W dR/dW| of the all-ones flow R through |W|, iterative (data-free)",
    masks=lambda r: synflow_masks(r.model, r.sparsity, scope=r.scope, iterations=r.iterations,
                                  input_shape=r.input_shape, data=r.data),
))
