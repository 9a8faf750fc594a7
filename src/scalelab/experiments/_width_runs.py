"""One LoRA / LoRA+ fine-tuning run of a pre-trained width-``n`` encoder on tweet sentiment.

The ``loraplus-width`` reproduction's own loop (docs/lora.md, "LoRA+ across width"): PEFT
``get_peft_model`` with LoRA on the attention projections, Init[A]
(:func:`scalelab.lora.init_lora_`), :func:`scalelab.lora.create_loraplus_optimizer`
(``ratio=1`` is plain LoRA), ``transformers.get_scheduler`` (warm-up then decay) and a
seeded batch order. Each finished run is one JSON file in a cache folder, keyed by
everything that determines it, so a protocol can be finished in parts.

Head policy (explicit): the classifier is a linear layer on the mean of the encoder's
last hidden states over the non-padding tokens, freshly initialised per seed and trained
fully at its own learning rate ``head_lr`` in every run, LoRA and LoRA+ alike, so the two
differ only in ``lr_B / lr_A``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import check_choice, check_int, check_positive
from ._width_models import (
    HELD_OUT_TWEETS,
    PretrainSpec,
    encoder_config,
    id_map,
    pretrained_encoder,
    stable_key,
    tokenizer,
)

ATTENTION_TARGETS = ("query", "key", "value", "attention.output.dense")


@dataclass(frozen=True)
class RunSpec:
    """Everything that determines one fine-tuning run (its cache key is a hash of it)."""

    pretrain: PretrainSpec
    method: str  # "lora" (ratio 1) or "loraplus"
    lr: float  # lr of the A factors (and of B for "lora")
    ratio: float = 1.0
    seed: int = 0
    head_lr: float = 3e-3
    steps: int = 150
    batch_size: int = 16
    max_length: int = 48
    eval_size: int = 300
    eval_every: int = 25
    rank: int = 8
    alpha: float = 8.0
    targets: tuple[str, ...] = ATTENTION_TARGETS
    schedule: str = "linear"
    warmup: float = 0.1

    def __post_init__(self) -> None:
        check_choice("method", self.method, ("lora", "loraplus"))
        check_positive("lr", self.lr)
        check_positive("ratio", self.ratio)
        check_positive("head_lr", self.head_lr)
        if self.method == "lora" and self.ratio != 1.0:
            raise ValueError(f"ratio must be 1 for method 'lora', got {self.ratio}")
        for name in ("steps", "batch_size", "max_length", "eval_size", "eval_every", "rank"):
            check_int(name, getattr(self, name))
        if self.eval_size > HELD_OUT_TWEETS:
            raise ValueError(f"eval_size must be <= {HELD_OUT_TWEETS}, got {self.eval_size}")
        check_choice("schedule", self.schedule, ("linear", "cosine"))

    def key(self) -> str:
        return stable_key({"run": dataclasses.asdict(self), "pretrain_key": self.pretrain.key()})

    def label(self) -> str:
        tail = f"-ratio{self.ratio:g}" if self.method == "loraplus" else ""
        return f"w{self.pretrain.width}-{self.method}-lr{self.lr:g}{tail}-s{self.seed}"


def eval_points(steps: int, every: int) -> list[int]:
    """The steps at which a run is evaluated: every ``every`` steps and the last step."""
    pts = list(range(every, steps + 1, every))
    return pts if pts and pts[-1] == steps else pts + [steps]


def batch_order(n_train: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """``(steps, batch_size)`` training indices: seeded permutations, one per epoch."""
    per_epoch = n_train // batch_size
    rows = []
    for step in range(steps):
        epoch, i = divmod(step, per_epoch)
        perm = np.random.default_rng([seed, 7, epoch]).permutation(n_train)
        rows.append(perm[i * batch_size:(i + 1) * batch_size])
    return np.stack(rows)


@lru_cache(maxsize=1)
def _tweets():
    from ..data.text import load_text_dataset

    return load_text_dataset("tweets", eval_size=HELD_OUT_TWEETS)


def _encode(texts, table, max_length: int):
    import torch

    enc = tokenizer()(list(texts), truncation=True, max_length=max_length, padding=True,
                      return_tensors="np")
    ids = table[enc["input_ids"]]
    return torch.from_numpy(ids), torch.from_numpy(enc["attention_mask"].astype(np.int64))


def build_classifier(spec: RunSpec, encoder_folder: Path):
    """The PEFT-wrapped mean-pool classifier of ``spec`` (seeded), encoder weights loaded."""
    import torch
    from peft import LoraConfig, get_peft_model
    from torch import nn
    from transformers import BertModel

    from ..lora import init_lora_

    class MeanPoolClassifier(nn.Module):
        """A linear head on the mean of the last hidden states over non-padding tokens."""

        def __init__(self, bert, num_labels: int):
            super().__init__()
            self.bert = bert
            self.classifier = nn.Linear(bert.config.hidden_size, num_labels)

        def forward(self, input_ids, attention_mask):
            h = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            m = attention_mask.unsqueeze(-1).to(h.dtype)  # (B, T, 1)
            return self.classifier((h * m).sum(1) / m.sum(1).clamp(min=1.0))  # (B, labels)

    p = spec.pretrain
    cfg = encoder_config(p.width, p.depth, head_dim=p.head_dim, vocab_size=p.vocab_size,
                         max_positions=max(p.seq_len, spec.max_length))
    torch.manual_seed(spec.seed)
    bert = BertModel(cfg, add_pooling_layer=False)
    bert.load_state_dict(torch.load(encoder_folder / "encoder.pt", weights_only=True))
    model = MeanPoolClassifier(bert, len(_tweets().labels))
    lora = LoraConfig(r=spec.rank, lora_alpha=spec.alpha, lora_dropout=0.0,
                      target_modules=list(spec.targets), modules_to_save=["classifier"])
    with warnings.catch_warnings():  # PEFT 0.21 reads an attribute transformers 5 deprecates
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*",
                                category=FutureWarning)
        model = get_peft_model(model, lora)
    init_lora_(model, "A", generator=torch.Generator().manual_seed(spec.seed))
    return model


def _evaluate(model, ids_batches) -> tuple[float, float]:
    import torch
    import torch.nn.functional as F

    total, correct, n = 0.0, 0, 0
    model.eval()
    with torch.no_grad():
        for ids, mask, y in ids_batches:
            logits = model(input_ids=ids, attention_mask=mask)
            total += float(F.cross_entropy(logits, y, reduction="sum"))
            correct += int((logits.argmax(-1) == y).sum())
            n += int(y.numel())
    model.train()
    return total / n, correct / n


def finetune_run(spec: RunSpec, pretrain_cache: Path, log=None) -> dict[str, Any]:
    """Run ``spec`` from scratch; the JSON-able record of its eval curve.

    Returns ``{"spec", "key", "label", "eval_steps", "eval_loss", "eval_accuracy",
    "train_loss", "status", "wall_s", "threads"}``; ``eval_loss`` entries after a divergence
    (a non-finite training loss) are ``None`` and ``status`` is ``"diverged"``.
    """
    import torch
    import torch.nn.functional as F
    from transformers import get_scheduler

    from ..lora import create_loraplus_optimizer

    t0 = time.perf_counter()
    folder, _ = pretrained_encoder(spec.pretrain, pretrain_cache, log=log)
    table = id_map(np.load(folder / "kept_ids.npy"), len(tokenizer()))
    data = _tweets()
    evals = sorted(data.eval[:spec.eval_size], key=lambda ex: len(ex[0]))
    ids_batches = []
    for i in range(0, len(evals), 100):
        chunk = evals[i:i + 100]
        ids, mask = _encode([t for t, _ in chunk], table, spec.max_length)
        ids_batches.append((ids, mask, torch.tensor([y for _, y in chunk])))
    model = build_classifier(spec, folder)
    opt = create_loraplus_optimizer(model, torch.optim.AdamW, lr=spec.lr, ratio=spec.ratio,
                                    head_lr=spec.head_lr, weight_decay=0.0)
    sched = get_scheduler(spec.schedule, opt, num_warmup_steps=round(spec.warmup * spec.steps),
                          num_training_steps=spec.steps)
    order = batch_order(len(data.train), spec.batch_size, spec.steps, spec.seed)
    points = eval_points(spec.steps, spec.eval_every)
    losses: list[float | None] = []
    accs: list[float | None] = []
    train_losses: list[float | None] = []
    window: list[float] = []
    status = "ok"
    model.train()
    for step in range(1, spec.steps + 1):
        rows = [data.train[i] for i in order[step - 1]]
        ids, mask = _encode([t for t, _ in rows], table, spec.max_length)
        loss = F.cross_entropy(model(input_ids=ids, attention_mask=mask),
                               torch.tensor([y for _, y in rows]))
        if not math.isfinite(loss.item()):
            status = "diverged"
            break
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        window.append(loss.item())
        if step == points[len(losses)]:
            ev, acc = _evaluate(model, ids_batches)
            if not math.isfinite(ev):
                status = "diverged"
                break
            losses.append(ev)
            accs.append(acc)
            train_losses.append(float(np.mean(window)))
            window = []
    missing = len(points) - len(losses)  # after a divergence
    losses += [None] * missing
    accs += [None] * missing
    train_losses += [None] * missing
    return {"spec": _spec_doc(spec), "key": spec.key(), "label": spec.label(),
            "eval_steps": points, "eval_loss": losses, "eval_accuracy": accs,
            "train_loss": train_losses, "status": status,
            "wall_s": round(time.perf_counter() - t0, 2), "threads": torch.get_num_threads()}


def _spec_doc(spec: RunSpec) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(spec)))


def run_path(spec: RunSpec, runs_dir: Path) -> Path:
    """Where the record of ``spec`` is cached: ``runs_dir / f"{label}-{key}.json"``."""
    return Path(runs_dir) / f"{spec.label()}-{spec.key()}.json"


def read_cached(spec: RunSpec, runs_dir: Path) -> dict[str, Any] | None:
    """The cached record of ``spec``, or ``None`` (missing, unfinished, or for another spec)."""
    path = run_path(spec, runs_dir)
    if not path.is_file():
        return None
    doc = json.loads(path.read_text())
    if doc.get("spec") != _spec_doc(spec) or doc.get("status") not in ("ok", "diverged"):
        return None
    doc["cached"] = True
    return doc


def cached_run(spec: RunSpec, runs_dir: Path, pretrain_cache: Path, log=None) -> dict[str, Any]:
    """The record of ``spec``: read from ``runs_dir`` when it finished before, else run and
    stored there (:func:`run_path`)."""
    doc = read_cached(spec, runs_dir)
    if doc is not None:
        return doc
    doc = finetune_run(spec, pretrain_cache, log=log)
    path = run_path(spec, runs_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, path)
    doc["cached"] = False
    return doc
