"""Pruning scores at initialisation, one function per method: higher score = keep.

Every function returns ``{layer name: score tensor shaped like its weight}`` for the layers of
:func:`~scalelab.prune.prunable_layers` (every Linear / Conv weight, never biases), and leaves
the model's weights, gradients and mode as it found them. SynFlow lives in ``synflow.py``.
Each score is registered as a pruning method at the bottom of this module.

Papers: SNIP, Lee et al. arXiv 1810.02340; GraSP, Wang et al. arXiv 2002.07376; SynFlow,
Tanaka et al. arXiv 2006.05467; their robustness on the EOC, Hayou et al. arXiv 2002.08797.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
from torch import nn

from ..errors import check_positive
from ..nn import model_device
from .layers import is_masked, prunable_layers
from .registry import DATA_HELP as DATA_HELP
from .registry import LossFn as LossFn
from .registry import score_method


def iter_batches(data, device: torch.device | None = None) -> Iterator[tuple[torch.Tensor, ...]]:
    """Yield ``(x, y)`` pairs from ``data``: one ``(x, y)`` batch or an iterable of them.

    ``ValueError`` when ``data`` is missing, holds no batch, or a batch is not a pair of
    tensors. Tensors are moved to ``device`` when given.
    """
    if data is None:
        raise ValueError(f"data must be {DATA_HELP}, got None")
    if isinstance(data, (tuple, list)) and len(data) == 2 and torch.is_tensor(data[0]):
        data = [data]
    count = 0
    for batch in data:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2
                and torch.is_tensor(batch[0]) and torch.is_tensor(batch[1])):
            raise ValueError(f"data must be {DATA_HELP}; got a batch of type "
                             f"{type(batch).__name__}")
        x, y = batch
        count += 1
        yield (x.to(device), y.to(device)) if device is not None else (x, y)
    if count == 0:
        raise ValueError(f"data must be {DATA_HELP}; it held no batch")


@contextlib.contextmanager
def _differentiable(weights: list[torch.Tensor]):
    """Let autograd reach every weight (frozen ones too), restoring ``requires_grad`` after."""
    flags = [w.requires_grad for w in weights]
    try:
        for w in weights:
            w.requires_grad_(True)
        yield
    finally:
        for w, f in zip(weights, flags, strict=True):
            w.requires_grad_(f)


def _unmasked_weights(model: nn.Module, method: str) -> tuple[list[str], list[torch.Tensor]]:
    layers = prunable_layers(model)
    masked = [n for n, m in layers if is_masked(m)]
    if masked:
        raise ValueError(f"{method}: layer {masked[0]!r} is already pruned; gradient scores need "
                         f"dense weights (call torch.nn.utils.prune.remove first)")
    return [n for n, _ in layers], [m.weight for _, m in layers]


def _grads(loss: torch.Tensor, weights: list[torch.Tensor], **kw) -> list[torch.Tensor]:
    grads = torch.autograd.grad(loss, weights, allow_unused=True, **kw)
    return [torch.zeros_like(w) if g is None else g for g, w in zip(grads, weights, strict=True)]


def _mean_gradient(model: nn.Module, weights: list[torch.Tensor], batches, loss_fn: LossFn,
                   temperature: float = 1.0) -> list[torch.Tensor]:
    """Gradient of the loss averaged over ``batches``, one tensor per weight (no graph kept)."""
    total = [torch.zeros_like(w) for w in weights]
    n = 0
    for x, y in batches:
        loss = loss_fn(model(x) / temperature, y)
        for t, g in zip(total, _grads(loss, weights), strict=True):
            t.add_(g)
        n += 1
    return [t / n for t in total]


def magnitude_scores(model: nn.Module) -> dict[str, torch.Tensor]:
    """``|W|`` for every prunable weight (the effective, masked weight if already pruned)."""
    return {name: m.weight.detach().abs() for name, m in prunable_layers(model)}


def random_scores(model: nn.Module, *, seed: int = 0) -> dict[str, torch.Tensor]:
    """Independent U(0, 1) scores, drawn layer by layer from a generator seeded with ``seed``.

    Keeping the top ``k`` of them keeps a uniformly random subset of ``k`` weights.
    """
    g = torch.Generator().manual_seed(int(seed))
    return {name: torch.rand(m.weight.shape, generator=g, dtype=torch.float64).to(
        m.weight.device) for name, m in prunable_layers(model)}


def snip_scores(model: nn.Module, data, loss_fn: LossFn | None = None) -> dict[str, torch.Tensor]:
    """SNIP connection sensitivity ``|W * dL/dW|`` at the current weights.

    Args:
        data: an ``(x, y)`` batch or an iterable of them; the gradient is averaged over all
            batches (pass one batch, or ``itertools.islice(loader, n)``, to bound the cost).
        loss_fn: ``loss_fn(outputs, y)``; default cross-entropy.

    The model runs in the mode it is in (SNIP's reference code uses train mode).
    Paper: arXiv 1810.02340; as the sensitivity of arXiv 2002.08797.
    """
    loss_fn = loss_fn or nn.functional.cross_entropy
    names, weights = _unmasked_weights(model, "snip")
    with _differentiable(weights):
        grads = _mean_gradient(model, weights, iter_batches(data, model_device(model)), loss_fn)
    return {n: (w.detach() * g).abs() for n, w, g in zip(names, weights, grads, strict=True)}


def grasp_scores(model: nn.Module, data, loss_fn: LossFn | None = None, *,
                 temperature: float = 200.0) -> dict[str, torch.Tensor]:
    """GraSP scores ``W * (H g)``: keeping the highest preserves the gradient flow best.

    ``g`` is the loss gradient averaged over ``data`` and ``H g`` the Hessian-gradient product
    (double backward), both with the outputs divided by ``temperature`` as in the reference
    code (T = 200). The paper's score is ``S(-W) = -W * (H g)``, removing the highest; ours is
    its negative, so that for every method the highest scores are kept.

    Args:
        data: an ``(x, y)`` batch or an iterable of them (read into memory: two passes).
        loss_fn: ``loss_fn(outputs, y)``; default cross-entropy.
        temperature: logits divisor, > 0.

    Paper: arXiv 2002.07376.
    """
    temperature = check_positive("temperature", temperature)
    loss_fn = loss_fn or nn.functional.cross_entropy
    names, weights = _unmasked_weights(model, "grasp")
    batches = list(iter_batches(data, model_device(model)))
    with _differentiable(weights):
        g = _mean_gradient(model, weights, batches, loss_fn, temperature)
        hg = [torch.zeros_like(w) for w in weights]
        for x, y in batches:
            grads = _grads(loss_fn(model(x) / temperature, y), weights, create_graph=True)
            z = sum((gi * gr).sum() for gi, gr in zip(g, grads, strict=True))
            if not z.requires_grad:  # the loss is linear in the weights: H g = 0
                continue
            for t, h in zip(hg, _grads(z, weights), strict=True):
                t.add_(h.detach())
    return {n: w.detach() * h / len(batches) for n, w, h in zip(names, weights, hg, strict=True)}


def first_input_shape(model: nn.Module, input_shape: Iterable[int] | None = None,
                      data=None) -> tuple[int, ...]:
    """The shape of one input (no batch dimension): ``input_shape``, else ``data``'s first batch,
    else the first Linear layer's ``in_features``; ``ValueError`` when none applies."""
    if input_shape is not None:
        try:
            shape = tuple(int(s) for s in input_shape)
        except (TypeError, ValueError):
            raise ValueError(f"input_shape must be a sequence of positive ints, got "
                             f"{input_shape!r}") from None
        if not shape or min(shape) < 1:
            raise ValueError(f"input_shape must be a non-empty sequence of positive ints, got "
                             f"{input_shape!r}")
        return shape
    if data is not None:
        x, _ = next(iter_batches(data))
        return tuple(x.shape[1:])
    name, first = prunable_layers(model)[0]
    if isinstance(first, nn.Linear):
        return (first.in_features,)
    raise ValueError(f"the model's first layer {name!r} is a {type(first).__name__}: pass "
                     f"input_shape=(C, H, W) (one input, no batch dimension) or data")


# The registry entries of the one-shot scores (registration order = METHODS order).
score_method("magnitude", lambda r: magnitude_scores(r.model), needs_data=False,
             scoring="|W| (the largest weights survive)")
score_method("random", lambda r: random_scores(r.model, seed=r.seed), needs_data=False,
             scoring="independent U(0, 1) per weight: a uniformly random subset")
score_method("snip", lambda r: snip_scores(r.model, r.data, r.loss_fn), needs_data=True,
             scoring="|W dL/dW| (connection sensitivity)", paper="arXiv 1810.02340")
score_method("grasp", lambda r: grasp_scores(r.model, r.data, r.loss_fn), needs_data=True,
             scoring="W (H g): keep what preserves the gradient flow", paper="arXiv 2002.07376")
