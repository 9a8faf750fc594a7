"""The fine-tuning configuration: one frozen dataclass that holds every default, validated on
creation, and resolved per task family before a run.

Defaults that depend on the task family (:data:`TASK_DEFAULTS`):

- **Classification** (an encoder or decoder with a fresh classifier head): the learning
  rates come from the tuning stage of ``benchmarks/finetune_speedup.py`` on the default task
  (MiniLM-L6 + tweet sentiment, LoRA r=8 alpha=8 on query/value, batch 16, length 48, 300
  steps at a constant lr, 1,000 eval tweets, seed 0): tuned LoRA is best at lr 2e-3 (grid
  1e-3, 2e-3, 3e-3, 5e-3); at ratio 16, LoRA+ is best at lr 2.5e-4 (grid 2.5e-4, 5e-4, 1e-3)
  with the classifier head at its own lr 3e-3, which beat the official head rule at every
  grid point. The schedule is the one they were tuned under: constant, no warm-up.
- **Causal LM** (SFT of a decoder; no head): LoRA lr 2e-4 with a linear decay after a 2%
  warm-up, the recipe of the LoRA paper's GPT-2 runs (arXiv 2106.09685, Table 11: lr 2e-4,
  linear schedule, 500 warm-up steps of ~26k); LoRA+ at ratio 16 with lr 1e-4, half the
  vanilla lr, the LoRA+ authors' advice for a large ratio (arXiv 2402.12354; their GPT-2
  scripts used lr 2e-4 at ratio 10). Not tuned by us: see docs/finetune.md.

Everything else has one default, the dataclass field's. ``None`` in a field means "the
task family's default"; :meth:`FinetuneConfig.resolved` fills those in, and a checkpoint,
``run.json`` and ``config.yaml`` hold the resolved values.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import check_choice, check_int, check_positive
from ..lora.groups import DEFAULT_RATIO

METHODS = ("lora", "loraplus")
INITS = ("A", "B")
VARIANTS = ("lora", "loraplus", "init-a", "init-b")
SCHEDULERS = ("constant", "linear", "cosine")
PRECISIONS = ("auto", "fp32", "bf16")
TASKS = ("classification", "causal")
DEFAULT_STEPS = 300
#: Default token budget per example, by dataset (files: 128 for classification, 256 causal).
DEFAULT_MAX_LENGTH = {"tweets": 48, "bbc": 128, "chat": 128}


@dataclass(frozen=True)
class TaskDefaults:
    """The defaults of one task family (see the module docstring for their sources)."""

    lr: dict[str, float]
    head_lr: dict[str, float | None]  # None: the base lr (or: no head)
    lr_scheduler: str
    warmup_ratio: float
    max_length: int  # for the user's files


TASK_DEFAULTS = {
    "classification": TaskDefaults(lr={"lora": 2e-3, "loraplus": 2.5e-4},
                                   head_lr={"lora": None, "loraplus": 3e-3},
                                   lr_scheduler="constant", warmup_ratio=0.0, max_length=128),
    "causal": TaskDefaults(lr={"lora": 2e-4, "loraplus": 1e-4},
                           head_lr={"lora": None, "loraplus": None},
                           lr_scheduler="linear", warmup_ratio=0.02, max_length=256),
}
#: Back-compatible names for the classification defaults.
DEFAULT_LR = TASK_DEFAULTS["classification"].lr
DEFAULT_HEAD_LR = TASK_DEFAULTS["classification"].head_lr["loraplus"]

#: Options of a run that are not numbers of the training (a config file may set them too).
RUN_OPTIONS = ("compare", "out", "resume", "overwrite", "merge", "quiet", "json")
_FLOAT_FIELDS = ("lr", "ratio", "alpha", "dropout", "epochs", "weight_decay", "warmup_ratio")
_INT_FIELDS = ("rank", "steps", "batch_size", "grad_accum", "max_length", "seed", "eval_every",
               "eval_size", "checkpoint_every", "warmup_steps")


@dataclass(frozen=True)
class FinetuneConfig:
    """Everything that decides a fine-tuning run's numbers (``None``: the task's default).

    Attributes:
        model: ``"minilm"`` / ``"smollm2"``, a local Hugging Face folder, or a hub id.
        dataset: ``"tweets"`` / ``"bbc"`` / ``"chat"`` or a CSV/JSONL file.
        method: ``"lora"`` (one lr for everything) or ``"loraplus"`` (lora_B at lr * ratio).
        lr: base lr (LoRA's lr; LoRA+'s lr of A).
        ratio: LoRA+'s lr_B / lr_A (ignored, i.e. 1, for ``"lora"``).
        head_lr: lr of the trainable non-LoRA parameters (a classifier head): a number, or
            ``"official"`` (the official LoRA+ rule: matrices at lr, 1-D at lr * ratio).
        rank, alpha, targets, dropout: the LoRA adapter (``targets=None``: PEFT's default
            modules for the architecture, e.g. query/value for BERT, q_proj/v_proj for Llama).
        init: ``"A"`` (A random, B = 0) or ``"B"`` (A = 0, B random), arXiv 2406.08447.
        steps / epochs: the total length (also across a resume); at most one of them;
            neither means :data:`DEFAULT_STEPS`.
        batch_size: the global batch of one optimizer step (split evenly across processes
            and ``grad_accum`` micro-batches: neither changes the numbers).
        grad_accum: micro-batches per optimizer step (less memory, same numbers).
        max_length: tokens per example.
        eval_every: evaluate every this many steps (and at the last step).
        eval_size: held-out examples.
        checkpoint_every: save a checkpoint every this many steps (``None``: at each eval).
        weight_decay: AdamW weight decay (decayable parameters only).
        lr_scheduler: ``"constant"``, ``"linear"`` or ``"cosine"`` decay (transformers'
            schedulers), after a linear warm-up of ``warmup_steps`` or ``warmup_ratio`` of
            the total steps (at most one of them).
        precision: ``"fp32"``, ``"bf16"`` (bf16 autocast, on CPU and GPU) or ``"auto"`` (bf16
            on a GPU that supports it, else fp32; a run records what it used).
        chat_template: causal LMs: render examples with the tokenizer's chat template when
            it has one (else the fallback format of :mod:`scalelab.train.chat`).
        system_prompt: causal LMs: a system turn for conversations that have none.
        packing: causal LMs: padding-free batches (examples concatenated in one row,
            positions restarting per example, attention never crossing examples).
        encoding: text encoding of a user's dataset file (decoded strictly).
        compile: compile the decoder blocks (regional ``torch.compile``); ``None``: on CUDA
            yes, on CPU no (docs/finetune.md, "GPU path").
    """

    model: str = "minilm"
    dataset: str = "tweets"
    method: str = "loraplus"
    lr: float | None = None
    ratio: float = DEFAULT_RATIO
    head_lr: float | str | None = None
    rank: int = 8
    alpha: float = 8.0
    targets: tuple[str, ...] | None = None
    dropout: float = 0.0
    init: str = "A"
    steps: int | None = None
    epochs: float | None = None
    batch_size: int = 16
    grad_accum: int = 1
    max_length: int | None = None
    seed: int = 0
    eval_every: int = 25
    eval_size: int = 256
    checkpoint_every: int | None = None
    weight_decay: float = 0.0
    lr_scheduler: str | None = None
    warmup_steps: int | None = None
    warmup_ratio: float | None = None
    precision: str = "auto"
    chat_template: bool = True
    system_prompt: str | None = None
    packing: bool = False
    encoding: str = "utf-8"
    compile: bool | None = None

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
        check_int("grad_accum", self.grad_accum)
        if self.batch_size % self.grad_accum:
            raise ValueError(f"batch_size {self.batch_size} must be divisible by grad_accum "
                             f"{self.grad_accum} (batch_size is the global batch of a step)")
        if self.max_length is not None:
            check_int("max_length", self.max_length, minimum=2)
        check_int("seed", self.seed, minimum=0)
        check_int("eval_every", self.eval_every)
        check_int("eval_size", self.eval_size)
        if self.checkpoint_every is not None:
            check_int("checkpoint_every", self.checkpoint_every)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        if self.lr_scheduler is not None:
            check_choice("lr_scheduler", self.lr_scheduler, SCHEDULERS)
        if self.warmup_steps is not None and self.warmup_ratio is not None:
            raise ValueError(f"give warmup_steps or warmup_ratio, not both (warmup_steps="
                             f"{self.warmup_steps}, warmup_ratio={self.warmup_ratio})")
        if self.warmup_steps is not None:
            check_int("warmup_steps", self.warmup_steps, minimum=0)
        if self.warmup_ratio is not None and not (0.0 <= float(self.warmup_ratio) < 1.0):
            raise ValueError(f"warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        check_choice("precision", self.precision, PRECISIONS)
        for name in ("chat_template", "packing"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be true or false, got {getattr(self, name)!r}")
        if self.compile is not None and not isinstance(self.compile, bool):
            raise ValueError(f"compile must be true, false or null (auto), got {self.compile!r}")
        if self.system_prompt is not None and not isinstance(self.system_prompt, str):
            raise ValueError(f"system_prompt must be a string, got {self.system_prompt!r}")
        if not self.encoding or not isinstance(self.encoding, str):
            raise ValueError(f"encoding must be a text encoding name, got {self.encoding!r}")
        if not self.model or not isinstance(self.model, str):
            raise ValueError(f"model must be a non-empty string, got {self.model!r}")
        if not self.dataset or not isinstance(self.dataset, str):
            raise ValueError(f"dataset must be a non-empty string, got {self.dataset!r}")

    # Building ---------------------------------------------------------------------------
    @classmethod
    def from_mapping(cls, values: dict[str, Any], where: str = "config") -> FinetuneConfig:
        """A config from a mapping of field names (numbers may be strings such as ``"2e-4"``,
        ``targets`` a comma-separated string); an unknown key is a ``ValueError`` naming the
        nearest valid one."""
        fields = {f.name for f in dataclasses.fields(cls)}
        for k in values:
            if k not in fields:
                raise unknown_key(k, fields, where)
        kw = {k: _coerce(k, v, where) for k, v in values.items()}
        return cls(**kw)

    # Resolved values ---------------------------------------------------------------------
    def task_defaults(self, task: str) -> TaskDefaults:
        return TASK_DEFAULTS[check_choice("task", task, TASKS)]

    def resolved(self, task: str) -> FinetuneConfig:
        """This config with every ``None`` that has a task-family default filled in."""
        d = self.task_defaults(task)
        lr = float(self.lr) if self.lr is not None else d.lr[self.method]
        head = self.head_lr
        if head is None:
            head = d.head_lr[self.method] if task == "classification" else None
            if head is None and task == "classification":
                head = lr
        warmup_ratio = self.warmup_ratio
        if self.warmup_steps is None and warmup_ratio is None:
            warmup_ratio = d.warmup_ratio
        max_len = self.max_length
        if max_len is None:
            max_len = DEFAULT_MAX_LENGTH.get(self.dataset, d.max_length)
        return self.replace(lr=lr, head_lr=head, lr_scheduler=self.lr_scheduler or d.lr_scheduler,
                            warmup_ratio=warmup_ratio, max_length=int(max_len))

    @property
    def base_lr(self) -> float:
        """The base lr (``lr``, or the classification default of the method)."""
        return float(self.lr) if self.lr is not None else DEFAULT_LR[self.method]

    @property
    def effective_ratio(self) -> float:
        """lr_B / lr_A: ``ratio`` for LoRA+, 1 for LoRA."""
        return float(self.ratio) if self.method == "loraplus" else 1.0

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

    def warmup_for(self, total: int) -> int:
        """Warm-up steps of a run of ``total`` steps (``warmup_steps``, or ``warmup_ratio`` of
        ``total`` rounded up; 0 when neither is set)."""
        if self.warmup_steps is not None:
            return int(self.warmup_steps)
        return int(math.ceil(float(self.warmup_ratio or 0.0) * total))

    def replace(self, **changes: Any) -> FinetuneConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["targets"] = list(self.targets) if self.targets is not None else None
        return d


def unknown_key(key: str, valid, where: str) -> ValueError:
    """A ``ValueError`` for an unknown config key, naming the nearest valid key."""
    near = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.5)
    hint = f"; did you mean {near[0]!r}?" if near else f"; valid keys: {', '.join(sorted(valid))}"
    return ValueError(f"{where}: unknown key {key!r}{hint}")


def _coerce(key: str, value: Any, where: str) -> Any:
    """A config-file value as the field's type (YAML reads ``2e-4`` as a string)."""
    if value is None:
        return None
    if key in _FLOAT_FIELDS and isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{where}: {key} must be a number, got {value!r}") from None
    if key in _INT_FIELDS and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{where}: {key} must be an integer, got {value!r}") from None
    if key == "head_lr" and isinstance(value, str) and value != "official":
        try:
            return float(value)
        except ValueError:
            raise ValueError(f"{where}: head_lr must be a number > 0 or 'official', got "
                             f"{value!r}") from None
    if key == "targets":
        if isinstance(value, str):
            return tuple(t.strip() for t in value.split(",") if t.strip())
        if isinstance(value, (list, tuple)):
            return tuple(value)
    if key == "init" and isinstance(value, str):
        return value.upper()
    return value


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The keys of a ``.yaml``/``.yml``/``.json`` config file, dashes turned to underscores,
    checked against :class:`FinetuneConfig`'s fields and :data:`RUN_OPTIONS`."""
    import json

    from ..data.tables import decode_text

    p = Path(path).expanduser()
    where = f"config file {str(path)!r}"
    if not p.is_file():
        if p.is_dir():
            raise ValueError(f"{where} is a folder; give a .yaml or .json file")
        raise FileNotFoundError(f"config file not found: {str(path)!r}")
    text = decode_text(p.read_bytes(), where)
    if p.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            line = f" line {mark.line + 1}" if mark is not None else ""
            raise ValueError(f"{where}{line} is not valid YAML: "
                             f"{getattr(e, 'problem', None) or e}") from None
    elif p.suffix.lower() == ".json":
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where} line {e.lineno} is not valid JSON: {e.msg}") from None
    else:
        raise ValueError(f"{where} must end in .yaml, .yml or .json")
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ValueError(f"{where} must hold a mapping of keys to values, got "
                         f"{type(doc).__name__}")
    valid = {f.name for f in dataclasses.fields(FinetuneConfig)} | set(RUN_OPTIONS)
    out = {}
    for k, v in doc.items():
        key = str(k).replace("-", "_")
        if key not in valid:
            raise unknown_key(str(k), valid, where)
        out[key] = v
    return out


def config_yaml(values: dict[str, Any], header: str = "") -> str:
    """``values`` as a YAML document (keys in field order), with a comment header."""
    import yaml

    lines = [f"# {ln}" if ln else "#" for ln in header.splitlines()]
    body = yaml.safe_dump(values, sort_keys=False, default_flow_style=False, allow_unicode=True)
    return "\n".join(lines + [body])


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
