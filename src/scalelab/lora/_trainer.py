"""``LoraPlusTrainer``: a ``transformers.Trainer`` that builds LoRA+ parameter groups itself.

It overrides ``create_optimizer`` (rather than taking ``optimizers=``), so it also works where
the Trainer refuses a ready-made optimizer (FSDP, DeepSpeed without an optimizer in its
config). This module imports transformers; ``scalelab.lora`` loads it lazily.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import Trainer, TrainingArguments

from .._errors import check_positive
from ._optim import create_loraplus_optimizer

try:  # transformers >= 5 (Muon/Dion-style factories)
    from transformers.trainer_optimizer import is_optimizer_factory
except ImportError:  # pragma: no cover - older transformers

    def is_optimizer_factory(optimizer_cls_or_factory: Any) -> bool:
        return not (isinstance(optimizer_cls_or_factory, type)
                    and issubclass(optimizer_cls_or_factory, torch.optim.Optimizer))

# Keys some `args.optim` choices put in the kwargs when they build their own parameter
# structure (GaLore/Apollo: "params"; LOMO: "model"; layer-wise: "optimizer_dict").
_OWN_GROUPS_KEYS = ("params", "model", "optimizer_dict")


@dataclass
class LoraPlusTrainingArguments(TrainingArguments):
    """``TrainingArguments`` plus the three LoRA+ settings read by :class:`LoraPlusTrainer`.

    ``learning_rate`` is the A factors' lr and ``weight_decay`` lands on decayable
    parameters only (see :func:`scalelab.lora.loraplus_param_groups`).
    """

    loraplus_ratio: float = field(default=16.0, metadata={"help": "lr_B / lr_A (LoRA+ ratio)."})
    loraplus_lr_embedding: float | None = field(
        default=None, metadata={"help": "lr of embedding LoRA; None means 1e-6 (official)."})
    loraplus_head_lr: float | None = field(
        default=None, metadata={"help": "lr of every trainable non-LoRA parameter (heads, "
                                         "biases, norms); None keeps the official policy."})

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive("loraplus_ratio", self.loraplus_ratio)
        for name in ("loraplus_lr_embedding", "loraplus_head_lr"):
            if getattr(self, name) is not None:
                check_positive(name, getattr(self, name))


class LoraPlusTrainer(Trainer):
    """A ``transformers.Trainer`` whose optimizer has LoRA+ parameter groups.

    Honours ``args.optim`` (``adamw_torch``, ``adamw_torch_fused``, ``sgd``, ``adafactor``,
    bitsandbytes 8-bit, schedule-free, ...) through ``Trainer.get_optimizer_cls_and_kwargs``
    (or the ``optimizer_cls_and_kwargs=`` constructor argument) and ``args.learning_rate`` /
    ``args.weight_decay``; reads ``loraplus_ratio``, ``loraplus_lr_embedding`` and
    ``loraplus_head_lr`` from ``args`` (a :class:`LoraPlusTrainingArguments`; plain
    ``TrainingArguments`` get the defaults 16.0 / None / None). Optimizers that build their own
    groups (GaLore, Apollo, LOMO, layer-wise, Muon/Dion factories) are refused with a
    ``ValueError``: they cannot carry per-group learning rates. Under FSDP1 the model needs
    ``use_orig_params=True`` so the LoRA parameters stay visible.

    Paper: arXiv 2402.12354 (LoRA+).
    """

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
            self.optimizer = create_loraplus_optimizer(
                opt_model, optimizer_cls, lr=self.args.learning_rate,
                ratio=getattr(self.args, "loraplus_ratio", 16.0),
                lr_embedding=getattr(self.args, "loraplus_lr_embedding", None),
                head_lr=getattr(self.args, "loraplus_head_lr", None),
                weight_decay=self.args.weight_decay, **kwargs)
        return self.optimizer
