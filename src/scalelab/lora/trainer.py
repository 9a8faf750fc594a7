"""LoRA+ inside ``transformers.Trainer`` and its subclasses (TRL's ``SFTTrainer``, ...).

:class:`LoraPlusMixin` overrides ``create_optimizer`` (rather than taking ``optimizers=``), so
it also works where the Trainer refuses a ready-made optimizer (FSDP, DeepSpeed without an
optimizer in its config), and composes with any Trainer subclass::

    class LoraPlusSFTTrainer(LoraPlusMixin, SFTTrainer): ...

:class:`LoraPlusTrainer` is that mixin on ``Trainer``. This module imports transformers;
``scalelab.lora`` loads it lazily.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import Trainer, TrainingArguments

from ..errors import check_positive
from .groups import DEFAULT_RATIO
from .optim import create_loraplus_optimizer

try:  # transformers >= 5 (Muon/Dion-style factories)
    from transformers.trainer_optimizer import is_optimizer_factory
except ImportError:  # pragma: no cover - older transformers

    def is_optimizer_factory(optimizer_cls_or_factory: Any) -> bool:
        return not (isinstance(optimizer_cls_or_factory, type)
                    and issubclass(optimizer_cls_or_factory, torch.optim.Optimizer))

# Keys some `args.optim` choices put in the kwargs when they build their own parameter
# structure (GaLore/Apollo: "params"; LOMO: "model"; layer-wise: "optimizer_dict").
_OWN_GROUPS_KEYS = ("params", "model", "optimizer_dict")
_SETTINGS = ("loraplus_ratio", "loraplus_lr_embedding", "loraplus_head_lr")


@dataclass
class LoraPlusTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus the three LoRA+ settings read by :class:`LoraPlusMixin`.

    ``learning_rate`` is the A factors' lr and ``weight_decay`` lands on decayable
    parameters only (see :func:`scalelab.lora.loraplus_param_groups`).
    """

    loraplus_ratio: float = field(default=DEFAULT_RATIO,
                                  metadata={"help": "lr_B / lr_A (LoRA+ ratio)."})
    loraplus_lr_embedding: float | None = field(
        default=None, metadata={"help": "lr of embedding LoRA; None means 1e-6 (official)."})
    loraplus_head_lr: float | None = field(
        default=None, metadata={"help": "lr of every trainable non-LoRA parameter (heads, "
                                         "biases, norms); None keeps the official policy."})

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_settings(self.loraplus_ratio, self.loraplus_lr_embedding, self.loraplus_head_lr)


def _check_settings(ratio, lr_embedding, head_lr) -> None:
    check_positive("loraplus_ratio", ratio)
    for name, value in (("loraplus_lr_embedding", lr_embedding),
                        ("loraplus_head_lr", head_lr)):
        if value is not None:
            check_positive(name, value)


class LoraPlusMixin:
    """Makes any ``transformers.Trainer`` subclass build LoRA+ parameter groups.

    Put it first in the bases: ``class T(LoraPlusMixin, SFTTrainer)``. The LoRA+ settings
    come from the constructor (``loraplus_ratio=``, ``loraplus_lr_embedding=``,
    ``loraplus_head_lr=``), else from the same-named fields of ``args`` (a
    :class:`LoraPlusTrainingArguments`, or any args class carrying them, e.g. a TRL config
    subclass), else the defaults ratio 16 / None / None.

    Honours ``args.optim`` (``adamw_torch``, ``adamw_torch_fused``, ``sgd``, ``adafactor``,
    bitsandbytes 8-bit, schedule-free, ...) through ``Trainer.get_optimizer_cls_and_kwargs``
    (or the ``optimizer_cls_and_kwargs=`` constructor argument) and ``args.learning_rate`` /
    ``args.weight_decay``. Optimizers that build their own groups (GaLore, Apollo, LOMO,
    layer-wise, Muon/Dion factories) are refused with a ``ValueError``: they cannot carry
    per-group learning rates. Under FSDP1 the model needs ``use_orig_params=True`` so the LoRA
    parameters stay visible.

    Paper: arXiv 2402.12354 (LoRA+); the grouping rule is in docs/lora.md.
    """

    def __init__(self, *args: Any, loraplus_ratio: float | None = None,
                 loraplus_lr_embedding: float | None = None,
                 loraplus_head_lr: float | None = None, **kwargs: Any) -> None:
        self._loraplus_given = {"loraplus_ratio": loraplus_ratio,
                                "loraplus_lr_embedding": loraplus_lr_embedding,
                                "loraplus_head_lr": loraplus_head_lr}
        _check_settings(loraplus_ratio if loraplus_ratio is not None else DEFAULT_RATIO,
                        loraplus_lr_embedding, loraplus_head_lr)
        super().__init__(*args, **kwargs)

    def loraplus_settings(self) -> dict[str, float | None]:
        """The ratio, embedding lr and head lr this trainer uses (constructor > args > default)."""
        given = getattr(self, "_loraplus_given", {})
        out: dict[str, float | None] = {}
        for name in _SETTINGS:
            value = given.get(name)
            if value is None:
                value = getattr(self.args, name, None)
            out[name] = value
        if out["loraplus_ratio"] is None:
            out["loraplus_ratio"] = DEFAULT_RATIO
        return out

    def create_optimizer(self, model: torch.nn.Module | None = None) -> torch.optim.Optimizer:
        opt_model = self.model if model is None else model
        if self.optimizer is None:
            if getattr(self, "optimizer_cls_and_kwargs", None) is not None:
                optimizer_cls, optimizer_kwargs = self.optimizer_cls_and_kwargs
            else:
                optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(
                    self.args, opt_model)
            own = [k for k in _OWN_GROUPS_KEYS if k in optimizer_kwargs]
            if is_optimizer_factory(optimizer_cls) or own:
                raise ValueError(f"optim={self.args.optim!r} builds its own parameter groups, so "
                                 "LoRA+ learning rates cannot be applied; use adamw_torch, "
                                 "adamw_torch_fused, sgd, adafactor or an 8-bit Adam")
            kwargs = {k: v for k, v in optimizer_kwargs.items() if k not in ("lr", "weight_decay")}
            s = self.loraplus_settings()
            self.optimizer = create_loraplus_optimizer(
                opt_model, optimizer_cls, lr=self.args.learning_rate,
                ratio=s["loraplus_ratio"], lr_embedding=s["loraplus_lr_embedding"],
                head_lr=s["loraplus_head_lr"], weight_decay=self.args.weight_decay, **kwargs)
        return self.optimizer


class LoraPlusTrainer(LoraPlusMixin, Trainer):
    """A ``transformers.Trainer`` whose optimizer has LoRA+ parameter groups
    (:class:`LoraPlusMixin` on ``Trainer``; see there for the settings and the rules)."""
