"""LoRA+ and LoRA initialisation (arXiv 2402.12354, arXiv 2406.08447).

- :func:`loraplus_param_groups` / :func:`create_loraplus_optimizer`: B factors at
  ``ratio`` times the A factors' learning rate, for PEFT models and scalelab's own layers.
- :class:`LoRALinear` / :func:`add_lora`: a small plain-torch LoRA for users without PEFT.
- :func:`init_lora_`: Init[A] (A random, B = 0) or Init[B] (A = 0, B random).
- :class:`LoraPlusMixin`: LoRA+ groups for any ``transformers.Trainer`` subclass (e.g. TRL's
  ``SFTTrainer``); :class:`LoraPlusTrainer` is the mixin on ``Trainer``, with
  :class:`LoraPlusTrainingArguments`. Loaded lazily, so ``import scalelab.lora`` never
  imports transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .find import lora_layers as lora_layers
from .groups import DEFAULT_RATIO as DEFAULT_RATIO
from .groups import loraplus_param_groups as loraplus_param_groups
from .init import init_lora_ as init_lora_
from .layers import LoRALinear as LoRALinear
from .layers import add_lora as add_lora
from .optim import create_loraplus_optimizer as create_loraplus_optimizer
from .optim import ignores_group_lr as ignores_group_lr

if TYPE_CHECKING:
    from .trainer import LoraPlusMixin as LoraPlusMixin
    from .trainer import LoraPlusTrainer as LoraPlusTrainer
    from .trainer import LoraPlusTrainingArguments as LoraPlusTrainingArguments

_LAZY = ("LoraPlusMixin", "LoraPlusTrainer", "LoraPlusTrainingArguments")

__all__ = [
    "DEFAULT_RATIO",
    "LoRALinear",
    "LoraPlusMixin",
    "LoraPlusTrainer",
    "LoraPlusTrainingArguments",
    "add_lora",
    "create_loraplus_optimizer",
    "ignores_group_lr",
    "init_lora_",
    "lora_layers",
    "loraplus_param_groups",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import trainer

        return getattr(trainer, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
