"""Fine-tuning stochastic masks: minimise the expected loss over the keep-probabilities.

:func:`train_masks` runs Adam on the mask logits (the weights stay as they are unless
``train_weights=True``), with the expected density projected back to its target after every
step. The ``"stochastic"`` registry entry (start mask, fine-tune, threshold) lives here too.

Paper: arXiv 2110.11804 (probabilistic fine-tuning of pruning masks).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from .._progress import track
from ..errors import check_int, check_positive
from .registry import MaskRequest, PruneMethod, register_method
from .scores import iter_batches
from .stochastic import StochasticMasks, remove_stochastic_masks_, stochastic_masks_


@dataclass
class MaskTraining:
    """What :func:`train_masks` did: per-step loss and expected density, and the wall time."""

    steps: int
    loss: list[float] = field(default_factory=list)
    density: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _batches(data, batch_size: int, generator: torch.Generator, device):
    """Endless minibatches: sampled from one ``(x, y)`` pair, or cycling through an iterable."""
    if isinstance(data, (tuple, list)) and len(data) == 2 and torch.is_tensor(data[0]):
        x, y = data
        n = x.shape[0]
        while True:
            idx = torch.randint(0, n, (min(batch_size, n),), generator=generator)
            yield x[idx].to(device), y[idx].to(device)
    batches = list(iter_batches(data, device))
    while True:
        yield from batches


def _device(masks: StochasticMasks) -> torch.device:
    return masks.layers[0][1].weight_orig.device


def train_masks(masks: StochasticMasks, data, *, steps: int, lr: float = 0.05,
                batch_size: int = 128, loss_fn: Callable | None = None, seed: int = 0,
                train_weights: bool = False, weight_lr: float = 1e-3,
                objective: Callable[[torch.Tensor], torch.Tensor] | None = None,
                callback: Callable[[int, float], None] | None = None,
                description: str = "mask fine-tuning") -> MaskTraining:
    """Fine-tune stochastic masks with Adam on the expected loss, density held at the target.

    Each step draws a minibatch, runs the model in training mode (a relaxed mask, or the
    local reparametrisation, per :func:`~scalelab.prune.stochastic_masks_`'s estimator),
    steps Adam on the logits (and Gaussian log standard deviations, if any) and projects the
    expected density back to the target (:meth:`StochasticMasks.project_`), so after every
    step ``sum p_i`` equals the target count to float precision.

    Args:
        masks: the handle :func:`~scalelab.prune.stochastic_masks_` returned.
        data: ``(x, y)`` tensors (minibatches drawn with replacement) or an iterable of
            batches (cycled).
        steps: Adam steps; lr: the logits' learning rate.
        loss_fn: ``loss_fn(outputs, y)``; default cross-entropy.
        seed: seeds the minibatches.
        train_weights: also train the weights under the masks (``weight_orig``) at
            ``weight_lr``; by default they are frozen for the duration.
        objective: ``objective(loss) -> scalar`` replaces the loss (e.g. a bound surrogate).
        callback: ``callback(step, loss)`` after each projected step.

    Returns:
        A :class:`MaskTraining` record (model left in eval mode).
    """
    steps = check_int("steps", steps)
    lr = check_positive("lr", lr)
    batch_size = check_int("batch_size", batch_size)
    loss_fn = loss_fn or nn.functional.cross_entropy
    weights = masks.weights()
    flags = [w.requires_grad for w in weights]
    groups = [{"params": masks.parameters(), "lr": lr}]
    if train_weights:
        groups.append({"params": weights, "lr": check_positive("weight_lr", weight_lr)})
    opt = torch.optim.Adam(groups)
    handle = masks.attach(opt)
    gen = torch.Generator().manual_seed(int(seed))
    batches = _batches(data, batch_size, gen, _device(masks))
    record = MaskTraining(steps=steps)
    start = time.perf_counter()
    try:
        for w in weights:
            w.requires_grad_(train_weights)
        masks.model.train()
        for step in track(range(steps), description, total=steps):
            x, y = next(batches)
            loss = loss_fn(masks.model(x), y)
            target = objective(loss) if objective is not None else loss
            opt.zero_grad(set_to_none=True)
            target.backward()
            opt.step()  # the step post hook projects the density
            record.loss.append(float(loss.detach()))
            record.density.append(masks.expected_density())
            if callback is not None:
                callback(step, record.loss[-1])
    finally:
        handle.remove()
        for w, f in zip(weights, flags, strict=True):
            w.requires_grad_(f)
        masks.model.eval()
    record.seconds = time.perf_counter() - start
    return record


def _stochastic_method_masks(req: MaskRequest) -> dict[str, torch.Tensor]:
    """Start mask, fine-tune the probabilities on ``req.data``, keep the top-k: the model is
    left dense as it came."""
    from .masks import topk_masks

    opts = dict(req.options)
    init = opts.pop("init", "magnitude")
    train = {k: opts.pop(k) for k in ("lr", "batch_size", "loss_fn") if k in opts}
    if req.loss_fn is not None:
        train.setdefault("loss_fn", req.loss_fn)
    masks = stochastic_masks_(req.model, init, sparsity=req.sparsity, scope=req.scope,
                              data=req.data, loss_fn=req.loss_fn, seed=req.seed, **opts)
    try:
        train_masks(masks, req.data, steps=req.iterations, seed=req.seed, **train)
    finally:
        logits = remove_stochastic_masks_(req.model)
    return topk_masks(logits, req.sparsity, req.scope)


register_method(PruneMethod(
    name="stochastic", needs_data=True, at_init=False, paper="arXiv 2110.11804",
    scoring="trained Bernoulli keep-probabilities (from a deterministic start mask), top-k",
    masks=_stochastic_method_masks,
))
