"""A small, seeded full-batch/minibatch classifier loop for reproductions on real digits.

Not the fine-tuning engine (that is :mod:`scalelab.train` on Accelerate); this is the loop
the deep-network reproductions share, so each does not write its own.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import check_int, check_positive


@dataclass
class TrainCurve:
    """Per-step training loss, plus test loss/accuracy at the end (``nan`` if it diverged)."""

    train_loss: list[float] = field(default_factory=list)
    test_loss: float = math.nan
    test_accuracy: float = math.nan
    diverged: bool = False
    stopped_early: bool = False  # an epoch_callback asked to stop


def train_classifier(model, data, *, steps: int, lr: float, batch_size: int = 128,
                     optimizer: str | Callable = "sgd", seed: int = 0, param_groups=None,
                     momentum: float = 0.0, epoch_callback: Callable | None = None,
                     steps_per_epoch: int | None = None) -> TrainCurve:
    """Train ``model`` on ``data`` (an :class:`~scalelab.data.ArrayDataset`) with cross-entropy.

    Args:
        optimizer: ``"sgd"``, ``"adam"`` or a callable ``(params_or_groups, lr) -> Optimizer``.
        param_groups: optional parameter groups (e.g. from ``depth_mup_param_groups``);
            default all parameters at ``lr``.
        epoch_callback: optional ``callback(epoch, epoch_losses) -> bool | None``, called
            after the last step of every epoch (``epoch`` counts from 1; ``epoch_losses`` are
            that epoch's minibatch losses). The parameters' ``.grad`` then still hold the
            last step's gradient. A True return stops training (``stopped_early=True``).
            E.g. a :class:`scalelab.diagnostics.LGIRecorder`.
        steps_per_epoch: steps per "epoch" for the callback (minibatches are drawn with
            replacement, so an epoch is a count of steps); default ``ceil(n / batch_size)``.
    Stops early, with ``diverged=True``, as soon as the loss is not finite.
    """
    import torch
    import torch.nn.functional as F

    steps = check_int("steps", steps)
    lr = check_positive("lr", lr)
    batch_size = check_int("batch_size", batch_size)
    params = param_groups if param_groups is not None else model.parameters()
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=momentum)
    elif optimizer == "adam":
        opt = torch.optim.Adam(params, lr=lr)
    elif callable(optimizer):
        opt = optimizer(params, lr)
    else:
        raise ValueError(f"optimizer must be 'sgd', 'adam' or a callable, got {optimizer!r}")
    g = torch.Generator().manual_seed(seed)
    n = data.x_train.shape[0]
    per_epoch = (math.ceil(n / min(batch_size, n)) if steps_per_epoch is None
                 else check_int("steps_per_epoch", steps_per_epoch))
    curve = TrainCurve()
    model.train()
    for step in range(1, steps + 1):
        idx = torch.randint(0, n, (min(batch_size, n),), generator=g)
        loss = F.cross_entropy(model(data.x_train[idx]), data.y_train[idx])
        if not torch.isfinite(loss):
            curve.diverged = True
            curve.train_loss.append(math.nan)
            break
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        curve.train_loss.append(loss.item())
        if epoch_callback is not None and step % per_epoch == 0:
            stop = epoch_callback(step // per_epoch, curve.train_loss[-per_epoch:])
            model.train()  # the callback may have evaluated the model
            if stop:
                curve.stopped_early = True
                break
    model.eval()
    if not curve.diverged:
        with torch.no_grad():
            logits = model(data.x_test)
            tl = F.cross_entropy(logits, data.y_test)
            curve.test_loss = float(tl) if torch.isfinite(tl) else math.nan
            curve.test_accuracy = float((logits.argmax(1) == data.y_test).float().mean())
    return curve
