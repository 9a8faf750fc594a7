"""Pieces the ``stochastic-pruning`` and ``pac-bayes-bound`` reproductions (and ``scalelab
prune --method stochastic`` / ``scalelab certify``) share: the digits MLP, dense training,
error measurements, and mask fine-tuning from a deterministic start.

Paper: arXiv 2110.11804.
"""

from __future__ import annotations

from dataclasses import dataclass

START_METHODS = ("magnitude", "snip", "random")


@dataclass(frozen=True)
class MaskProtocol:
    """How masks are fine-tuned: estimator, temperature, start mix, Adam lr, steps, batch."""

    estimator: str = "concrete"
    temperature: float = 0.5
    mix: float = 0.1
    lr: float = 0.05
    steps: int = 500
    batch_size: int = 128


def digits_mlp(in_dim: int, hidden: tuple[int, ...], classes: int, seed: int):
    """A ReLU MLP with PyTorch's default init, weights drawn from ``seed``."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    sizes = (in_dim, *hidden)
    layers: list = []
    for a, b in zip(sizes[:-1], sizes[1:], strict=True):
        layers += [nn.Linear(a, b), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(sizes[-1], classes))


def train_dense(model, x, y, *, steps: int, lr: float = 1e-3, batch_size: int = 128,
                seed: int = 0) -> float:
    """Adam on cross-entropy over ``(x, y)``; returns the last training loss."""
    from ..data import ArrayDataset
    from ..train import train_classifier

    data = ArrayDataset(x_train=x, y_train=y, x_test=x[:1], y_test=y[:1],
                        num_classes=int(y.max()) + 1, name="split")
    curve = train_classifier(model, data, steps=steps, lr=lr, batch_size=batch_size,
                             optimizer="adam", seed=seed)
    return curve.train_loss[-1]


def error(model, x, y) -> float:
    """0-1 error of a deterministic model (eval mode, no gradients)."""
    import torch

    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(-1) != y).float().mean())


def stochastic_error(model, x, y, *, networks: int, per_network: int, seed: int) -> float:
    """Mean 0-1 error of networks drawn from the model's stochastic masks, one per chunk of
    ``per_network`` examples, ``networks`` draws in all (rounded to whole passes)."""
    from ..bounds import sampled_errors

    n = (x.shape[0] // per_network) * per_network
    passes = max(1, round(networks * per_network / n))
    return float(sampled_errors(model, x[:n], y[:n], passes, examples_per_network=per_network,
                                seed=seed).mean())


def start_masks(model, start: str, sparsity: float, x, y, *, seed: int,
                score_batch: int = 256):
    """Deterministic masks from a registered at-init method on the current (trained) weights;
    SNIP sees the first ``score_batch`` examples."""
    from ..prune import compute_masks

    return compute_masks(model, sparsity, start, data=(x[:score_batch], y[:score_batch]),
                         seed=seed)


def finetune_masks(model, masks, sparsity: float, x, y, proto: MaskProtocol, *, seed: int,
                   weight_noise: float | None = None, progress: str = "mask fine-tuning"):
    """Stochastic masks started from ``masks``, their probabilities fine-tuned on ``(x, y)``.

    Returns ``(StochasticMasks handle, MaskTraining)``; the model carries the masks after.
    """
    from ..prune import stochastic_masks_, train_masks

    sm = stochastic_masks_(model, masks, sparsity=sparsity, estimator=proto.estimator,
                           temperature=proto.temperature, mix=proto.mix,
                           weight_noise=weight_noise)
    rec = train_masks(sm, (x, y), steps=proto.steps, lr=proto.lr, batch_size=proto.batch_size,
                      seed=seed, description=progress)
    return sm, rec


def masked_error(model, masks, x, y) -> float:
    """0-1 error of ``model`` under deterministic ``masks`` (applied to a copy of the weights)."""
    import torch

    from ..prune import prunable_layers

    saved = []
    with torch.no_grad():
        for name, m in prunable_layers(model):
            saved.append(m.weight.detach().clone())
            m.weight.mul_(masks[name].to(m.weight.dtype))
    try:
        return error(model, x, y)
    finally:
        with torch.no_grad():
            for (_, m), w in zip(prunable_layers(model), saved, strict=True):
                m.weight.copy_(w)
