"""Building a fine-tuning run: early input checks, the LoRA model, the LoRA+ optimizer.

Everything that can be checked without loading a model (dataset file and columns, model
name, the task/model match, a resume's configuration) is checked by :func:`check_inputs`
first, so bad input fails in about a second.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from .config import FinetuneConfig

#: Configuration fields a resume may change (they do not change the numbers of the steps).
RESUMABLE_CHANGES = ("steps", "epochs", "eval_every", "checkpoint_every")


def check_inputs(config: FinetuneConfig):
    """Load and validate the dataset and the model name; return ``(data, source)``."""
    from ..data.models import resolve_model
    from ..data.text import load_text_dataset

    data = load_text_dataset(config.dataset, eval_size=config.eval_size)
    source = resolve_model(config.model)
    if data.task == "causal" and source.kind == "encoder":
        raise ValueError(f"dataset {config.dataset!r} is for causal LMs (prompt,response) but "
                         f"model {config.model!r} is an encoder; use a causal LM (e.g. smollm2)")
    return data, source


def check_resume(config: FinetuneConfig, meta: dict[str, Any] | None) -> None:
    """Refuse to resume a checkpoint made with a configuration that changes the numbers."""
    if meta is None:
        return
    saved, now = meta.get("config", {}), config.to_dict()
    diff = [k for k in now if k not in RESUMABLE_CHANGES and saved.get(k) != now[k]]
    if diff:
        k = diff[0]
        raise ValueError(f"cannot resume: the checkpoint was made with {k}={saved.get(k)!r}, "
                         f"this run has {k}={now[k]!r} (only {', '.join(RESUMABLE_CHANGES)} "
                         "may change)")


def add_adapters(model, config: FinetuneConfig, task: str):
    """Wrap ``model`` with PEFT LoRA adapters and initialise them with Init[A] or Init[B].

    The classifier head of a classification model is trained fully (PEFT's
    ``modules_to_save`` for ``SEQ_CLS``); a causal LM trains its adapters only.
    """
    from peft import LoraConfig, TaskType, get_peft_model

    from ..lora import init_lora_

    lora = LoraConfig(
        r=config.rank, lora_alpha=config.alpha, lora_dropout=config.dropout,
        target_modules=list(config.targets) if config.targets else None,
        task_type=TaskType.SEQ_CLS if task == "classification" else TaskType.CAUSAL_LM,
    )
    try:
        with warnings.catch_warnings():  # PEFT 0.21 reads an attribute transformers 5 deprecates
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*",
                                    category=FutureWarning)
            model = get_peft_model(model, lora)
    except ValueError as e:
        first = str(e).strip().splitlines()[0]
        raise ValueError(f"targets {config.targets!r} do not fit this model: {first}") from None
    init_lora_(model, scheme=config.init)
    return model


def build_optimizer(model, config: FinetuneConfig):
    """AdamW over LoRA+ parameter groups (ratio 1 and one lr everywhere for ``"lora"``)."""
    import torch

    from ..lora import create_loraplus_optimizer

    lr = config.base_lr
    head = config.effective_head_lr
    head_lr = None if head == "official" else float(head)
    if config.method == "lora":
        return create_loraplus_optimizer(model, torch.optim.AdamW, lr=lr, ratio=1.0,
                                         lr_embedding=lr, head_lr=head_lr,
                                         weight_decay=config.weight_decay)
    return create_loraplus_optimizer(model, torch.optim.AdamW, lr=lr, ratio=config.ratio,
                                     head_lr=head_lr, weight_decay=config.weight_decay)


def build_scheduler(optimizer, config: FinetuneConfig):
    """Linear warm-up over ``warmup_steps``, then a constant lr."""
    import torch

    w = config.warmup_steps
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / (w + 1)) if w else 1.0)


def make_accelerator():
    """An ``accelerate.Accelerator``: bf16 autocast on a GPU that supports it, fp32 on CPU.

    Under ``accelerate launch`` its own settings (mixed precision, DDP/FSDP) win.
    """
    import torch
    from accelerate import Accelerator

    kwargs: dict[str, Any] = {}
    if not torch.cuda.is_available():
        kwargs["cpu"] = True  # so torchrun / accelerate launch on CPU gets DDP over gloo
    if "ACCELERATE_MIXED_PRECISION" not in os.environ:
        bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
        kwargs["mixed_precision"] = "bf16" if bf16 else "no"
    return Accelerator(**kwargs)
