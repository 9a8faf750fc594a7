"""Building a fine-tuning run: early input checks, the resume rules, the LoRA model, the
LoRA+ optimizer, the schedule, the accelerator.

Everything that can be checked without loading a model (dataset file and columns, model
name, the task/model match, a resume's configuration and data) is checked before any model
loads, so bad input fails in about a second.
"""

from __future__ import annotations

import warnings
from typing import Any

from .config import FinetuneConfig

#: Configuration fields a resume may change: they do not change the numbers of the steps
#: (``grad_accum`` only splits a step's batch, ``compile`` only fuses kernels;
#: ``dataset``/``model`` are compared by the data's fingerprint and the model's resolved
#: location instead of the strings given).
RESUMABLE_CHANGES = ("eval_every", "checkpoint_every", "grad_accum", "encoding", "dataset",
                     "model", "compile")
#: ...and these too when the schedule does not depend on the total length (a constant lr
#: with a warm-up given in steps).
LENGTH_FIELDS = ("steps", "epochs")
_SCHEDULES = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}


def check_inputs(config: FinetuneConfig):
    """Load and validate the dataset and the model name; return ``(data, source)``."""
    from ..data.models import resolve_model
    from ..data.text import load_text_dataset

    data = load_text_dataset(config.dataset, eval_size=config.eval_size,
                             encoding=config.encoding)
    source = resolve_model(config.model)
    if data.task == "causal" and source.kind == "encoder":
        raise ValueError(f"dataset {config.dataset!r} is for causal LMs (prompt,response) but "
                         f"model {config.model!r} is an encoder; use a causal LM (e.g. smollm2)")
    if data.task == "classification" and (config.packing or config.system_prompt):
        flag = "packing" if config.packing else "system_prompt"
        raise ValueError(f"{flag} applies to causal-LM datasets; {config.dataset!r} is a "
                         "classification dataset")
    return data, source


def length_is_resumable(config: FinetuneConfig) -> bool:
    """Whether ``steps``/``epochs`` may change on resume: only when the lr schedule does not
    depend on the run's total length."""
    ratio = config.warmup_ratio or 0.0
    return config.lr_scheduler in (None, "constant") and (config.warmup_steps is not None
                                                          or ratio == 0.0)


def check_resume(config: FinetuneConfig, meta: dict[str, Any] | None, *,
                 fingerprint: str | None = None, model_location: str | None = None) -> None:
    """Refuse to resume a checkpoint made with a configuration or data that change the numbers.

    ``config`` is the resolved configuration of this run; the checkpoint's was resolved the
    same way, so a value given explicitly and equal to the default is the same config.
    """
    if meta is None:
        return
    saved, now = meta.get("config", {}), config.to_dict()
    free = RESUMABLE_CHANGES + (LENGTH_FIELDS if length_is_resumable(config) else ())
    diff = [k for k in now if k not in free and saved.get(k) != now[k]]
    if diff:
        k = diff[0]
        if k in LENGTH_FIELDS:
            raise ValueError(f"cannot resume with {k}={now[k]!r}: the checkpoint's "
                             f"{config.lr_scheduler} schedule (warm-up included) was laid out "
                             f"for {k}={saved.get(k)!r}; only a constant lr with warmup_steps "
                             "lets the length change")
        raise ValueError(f"cannot resume: the checkpoint was made with {k}={saved.get(k)!r}, "
                         f"this run has {k}={now[k]!r} (only {', '.join(free)} may change)")
    old_fp = meta.get("data_fingerprint")
    if fingerprint is not None and old_fp is not None and old_fp != fingerprint:
        raise ValueError(f"cannot resume: the training data differ from the checkpoint's "
                         f"(fingerprint {old_fp[:12]} then, {fingerprint[:12]} now): dataset "
                         f"{config.dataset!r} was changed or is another file")
    if old_fp is None and saved.get("dataset") != now["dataset"]:
        raise ValueError(f"cannot resume: the checkpoint was made with dataset="
                         f"{saved.get('dataset')!r}, this run has {now['dataset']!r}")
    old_model = meta.get("model_location")
    if model_location is not None and old_model is not None and old_model != model_location:
        raise ValueError(f"cannot resume: the checkpoint was made from model {old_model!r}, "
                         f"this run loads {model_location!r}")


def add_adapters(model, config: FinetuneConfig, task: str, labels=()):
    """Wrap ``model`` with PEFT LoRA adapters and initialise them with Init[A] or Init[B].

    The classifier head of a classification model is trained fully (PEFT's
    ``modules_to_save`` for ``SEQ_CLS``) and its config gets the class names as
    ``id2label`` / ``label2id``; a causal LM trains its adapters only.
    """
    from peft import LoraConfig, TaskType, get_peft_model

    from ..lora import init_lora_

    if labels:
        model.config.id2label = {i: str(n) for i, n in enumerate(labels)}
        model.config.label2id = {str(n): i for i, n in enumerate(labels)}
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


def build_optimizer(model, config: FinetuneConfig, task: str = "classification", **kw):
    """AdamW over LoRA+ parameter groups (ratio 1 and one lr everywhere for ``"lora"``).

    ``config`` is resolved for ``task`` first (so an unresolved one gets the task's default
    lrs); extra keywords (e.g. ``fused=True``) go to AdamW.
    """
    import torch

    from ..lora import create_loraplus_optimizer

    cfg = config.resolved(task)
    lr = float(cfg.lr)
    head_lr = None if cfg.head_lr in (None, "official") else float(cfg.head_lr)
    if config.method == "lora":
        return create_loraplus_optimizer(model, torch.optim.AdamW, lr=lr, ratio=1.0,
                                         lr_embedding=lr, head_lr=head_lr if head_lr else lr,
                                         weight_decay=cfg.weight_decay, **kw)
    return create_loraplus_optimizer(model, torch.optim.AdamW, lr=lr, ratio=cfg.ratio,
                                     head_lr=head_lr, weight_decay=cfg.weight_decay, **kw)


def build_scheduler(optimizer, config: FinetuneConfig, total_steps: int | None = None):
    """transformers' schedule for ``config.lr_scheduler`` (``None``: constant) with its
    warm-up, laid out for ``total_steps`` (default ``config.steps`` or 300)."""
    from transformers import get_scheduler

    total = int(total_steps if total_steps is not None else config.total_steps(0))
    name = _SCHEDULES[config.lr_scheduler or "constant"]
    return get_scheduler(name, optimizer, num_warmup_steps=config.warmup_for(total),
                         num_training_steps=total)


def resolve_precision(config: FinetuneConfig) -> str:
    """``"fp32"`` or ``"bf16"``: ``"auto"`` is bf16 on a GPU that supports it, else fp32."""
    if config.precision != "auto":
        return config.precision
    import torch

    return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "fp32"


def make_accelerator(precision: str | None = None):
    """An ``accelerate.Accelerator``; ``torchrun`` / ``accelerate launch`` decide the processes
    (DDP over gloo on CPU).

    The run's precision is not the accelerator's: bf16 autocast is applied by the loss module
    (:func:`.batches.loss_module`), because Accelerate's process-wide state cannot change
    precision between runs of one process. ``precision`` is accepted for compatibility.
    """
    import torch
    from accelerate import Accelerator

    kwargs: dict[str, Any] = {}
    if not torch.cuda.is_available():
        kwargs["cpu"] = True  # so torchrun / accelerate launch on CPU gets DDP over gloo
    return Accelerator(**kwargs)
