"""The fine-tuning configuration: one frozen dataclass, validated on creation.

Default learning rates and the classifier-head policy come from the tuning stage of
``benchmarks/finetune_speedup.py`` on the default task (MiniLM-L6 + tweet sentiment, LoRA r=8
alpha=8 on query/value, batch 16, length 48, 300 steps, 1,000 eval tweets, seed 0; results
in ``benchmarks/results/finetune_speedup.json``): tuned LoRA is best at lr 2e-3 (grid 1e-3,
2e-3, 3e-3, 5e-3); at the default ratio 16, LoRA+ is best at lr 2.5e-4 (grid 2.5e-4, 5e-4,
1e-3) with the classifier head at its own lr 3e-3, which beat the official head rule at
every grid point. (The grid's best LoRA+ overall, ratio 4 at lr 5e-4, is within seed noise
of it.)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .._errors import check_choice, check_int, check_positive

METHODS = ("lora", "loraplus")
INITS = ("A", "B")
VARIANTS = ("lora", "loraplus", "init-a", "init-b")
#: Default base learning rate per method (benchmarks/finetune_speedup.py, tuned on the
#: default task; LoRA+'s at the default ratio 16).
DEFAULT_LR = {"lora": 2e-3, "loraplus": 2.5e-4}
#: LoRA+'s classifier head trains at this lr by default ("head at its own lr": it beat the
#: official rule at every point of the benchmark's grid).
DEFAULT_HEAD_LR = 3e-3
DEFAULT_STEPS = 300
#: Default token budget per example, by dataset (files: 128).
DEFAULT_MAX_LENGTH = {"tweets": 48, "bbc": 128, "chat": 96}


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything that decides a fine-tuning run's numbers.

    Attributes:
        model: ``"minilm"`` / ``"smollm2"``, a local Hugging Face folder, or a hub id.
        dataset: ``"tweets"`` / ``"bbc"`` / ``"chat"`` or a CSV/JSONL file.
        method: ``"lora"`` (one lr for everything) or ``"loraplus"`` (lora_B at lr * ratio).
        lr: base lr; ``None`` means :data:`DEFAULT_LR` of the method.
        ratio: LoRA+'s lr_B / lr_A (ignored, i.e. 1, for ``"lora"``).
        head_lr: lr of the trainable non-LoRA parameters (the classifier head). ``None``:
            the method's default (LoRA: ``lr``; LoRA+: :data:`DEFAULT_HEAD_LR`); a number:
            that lr; ``"official"``: the official LoRA+ rule (matrices at lr, 1-D at lr*ratio).
        rank, alpha, targets, dropout: the LoRA adapter (``targets=None``: PEFT's default
            modules for the architecture, e.g. query/value for BERT, q_proj/v_proj for Llama).
        init: ``"A"`` (A random, B = 0) or ``"B"`` (A = 0, B random), arXiv 2406.08447.
        steps / epochs: the total length (also across a resume); at most one of them;
            neither means :data:`DEFAULT_STEPS`.
        batch_size: global batch (split evenly across processes under DDP/FSDP).
        max_length: tokens per example; ``None``: :data:`DEFAULT_MAX_LENGTH` of the dataset.
        eval_every: evaluate every this many steps (and at the last step).
        eval_size: held-out examples (the default is sized for a 2-minute comparison).
        checkpoint_every: save a checkpoint every this many steps (``None``: at each eval).
        weight_decay, warmup_steps: AdamW weight decay; linear warm-up then a constant lr.
    """

    model: str = "minilm"
    dataset: str = "tweets"
    method: str = "loraplus"
    lr: float | None = None
    ratio: float = 16.0
    head_lr: float | str | None = None
    rank: int = 8
    alpha: float = 8.0
    targets: tuple[str, ...] | None = None
    dropout: float = 0.0
    init: str = "A"
    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 16
    max_length: int | None = None
    seed: int = 0
    eval_every: int = 25
    eval_size: int = 256
    checkpoint_every: int | None = None
    weight_decay: float = 0.0
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        check_choice("method", self.method, METHODS)
        check_choice("init", self.init, INITS)
        if self.lr is not None:
            check_positive("lr", self.lr)
        check_positive("ratio", self.ratio)
        if isinstance(self.head_lr, str):
            if self.head_lr != "official":
                raise ValueError(f"head_lr must be a number > 0 or 'official', got "
                                 f"{self.head_lr!r}")
        elif self.head_lr is not None:
            check_positive("head_lr", self.head_lr)
        check_int("rank", self.rank)
        check_positive("alpha", self.alpha)
        if self.targets is not None:
            if isinstance(self.targets, str) or not self.targets or not all(
                    isinstance(t, str) and t.strip() for t in self.targets):
                raise ValueError(f"targets must be a non-empty list of module names, got "
                                 f"{self.targets!r}")
            object.__setattr__(self, "targets", tuple(self.targets))
        if not (0.0 <= float(self.dropout) < 1.0):
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if self.steps is not None and self.epochs is not None:
            raise ValueError(f"give steps or epochs, not both (steps={self.steps}, "
                             f"epochs={self.epochs})")
        if self.steps is not None:
            check_int("steps", self.steps)
        if self.epochs is not None:
            check_positive("epochs", self.epochs)
        check_int("batch_size", self.batch_size)
        if self.max_length is not None:
            check_int("max_length", self.max_length, minimum=2)
        check_int("seed", self.seed, minimum=0)
        check_int("eval_every", self.eval_every)
        check_int("eval_size", self.eval_size)
        if self.checkpoint_every is not None:
            check_int("checkpoint_every", self.checkpoint_every)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_int("warmup_steps", self.warmup_steps, minimum=0)
        if not self.model or not isinstance(self.model, str):
            raise ValueError(f"model must be a non-empty string, got {self.model!r}")
        if not self.dataset or not isinstance(self.dataset, str):
            raise ValueError(f"dataset must be a non-empty string, got {self.dataset!r}")

    # Resolved values -------------------------------------------------------------------
    @property
    def base_lr(self) -> float:
        """The base lr actually used (``lr`` or the method's default)."""
        return float(self.lr) if self.lr is not None else DEFAULT_LR[self.method]

    @property
    def effective_ratio(self) -> float:
        """lr_B / lr_A: ``ratio`` for LoRA+, 1 for LoRA."""
        return float(self.ratio) if self.method == "loraplus" else 1.0

    @property
    def effective_head_lr(self) -> float | str:
        """The head's lr (a number) or ``"official"``."""
        if self.head_lr is not None:
            return self.head_lr
        return self.base_lr if self.method == "lora" else DEFAULT_HEAD_LR

    def resolved_max_length(self) -> int:
        if self.max_length is not None:
            return int(self.max_length)
        return DEFAULT_MAX_LENGTH.get(self.dataset, 128)

    def total_steps(self, n_train: int) -> int:
        """Total optimizer steps for ``n_train`` training examples."""
        if self.steps is not None:
            return int(self.steps)
        if self.epochs is not None:
            per_epoch = max(1, n_train // min(self.batch_size, n_train))
            return max(1, math.ceil(float(self.epochs) * per_epoch))
        return DEFAULT_STEPS

    def replace(self, **changes: Any) -> FinetuneConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["targets"] = list(self.targets) if self.targets is not None else None
        return d


def variant_config(config: FinetuneConfig, variant: str) -> FinetuneConfig:
    """The configuration of one ``--compare`` variant: ``lora``/``loraplus`` set the method,
    ``init-a``/``init-b`` set the LoRA init (keeping ``config.method``)."""
    check_choice("variant", variant, VARIANTS)
    if variant in METHODS:
        return config.replace(method=variant)
    return config.replace(init=variant[-1].upper())


def parse_variants(spec: str) -> tuple[str, ...]:
    """``"lora,loraplus"`` -> ``("lora", "loraplus")``, checked (at least 2, no repeats)."""
    names = tuple(s.strip().lower() for s in spec.split(",") if s.strip())
    for n in names:
        if n not in VARIANTS:
            raise ValueError(f"compare must list variants from {', '.join(VARIANTS)}; got {n!r}")
    if len(names) < 2 or len(set(names)) != len(names):
        raise ValueError(f"compare needs at least two different variants, got {spec!r}")
    return names
