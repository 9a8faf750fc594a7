"""What a run leaves behind, in the ecosystem's formats, and loading it back.

- :func:`save_adapter` writes ``OUT/adapter/``: PEFT's own ``save_pretrained`` output
  (``adapter_config.json`` with the base model's resolved location as
  ``base_model_name_or_path``, ``adapter_model.safetensors``; a classifier head as PEFT's
  ``modules_to_save``), the tokenizer, and for classification the base model's
  ``config.json`` carrying the class names as ``id2label`` / ``label2id``.
  ``PeftModel.from_pretrained(base, OUT/adapter)`` loads it (see docs/finetune.md).
- :func:`load_run` reads a run folder (or its adapter folder, or a merged export) back into a
  model, tokenizer and the run's settings, for ``scalelab predict`` / ``evaluate`` /
  ``export``.
- :func:`export_run` copies the adapter, or with ``merge=True`` writes a plain transformers
  model folder (LoRA merged into the weights, safetensors) that ``AutoModelFor...`` loads
  with neither scalelab nor PEFT installed.
"""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import FinetuneConfig

RUN_FILE = "run.json"
ADAPTER_DIR = "adapter"
#: Files of a PEFT adapter folder.
ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def _full(t):
    return t.full_tensor() if hasattr(t, "full_tensor") else t


def save_adapter(model, tokenizer, folder: str | Path, *, source, is_main: bool = True) -> Path:
    """Save ``model``'s adapter (a PEFT model, unwrapped) in PEFT's format into ``folder``.

    Every process calls this under FSDP (sharded tensors are gathered, a collective); only
    the main one writes. The folder is replaced as a whole (written beside it, then renamed).
    """
    folder = Path(folder)
    state = model.state_dict()
    sharded = any(hasattr(v, "full_tensor") for v in state.values())
    full = {k: _full(v) for k, v in state.items()} if sharded else None
    if not is_main:
        return folder
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for cfg in model.peft_config.values():
        cfg.base_model_name_or_path = source.loadable_path()
        cfg.revision = source.revision
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PEFT notes about embedding layers / model cards
        model.save_pretrained(str(tmp), safe_serialization=True,
                              **({"state_dict": full} if full is not None else {}))
    tokenizer.save_pretrained(str(tmp))
    base_cfg = model.get_base_model().config
    if getattr(base_cfg, "id2label", None) and len(base_cfg.id2label) == getattr(
            base_cfg, "num_labels", -1) and _is_classifier(model):
        base_cfg.save_pretrained(str(tmp))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def _is_classifier(model) -> bool:
    task = getattr(next(iter(model.peft_config.values())), "task_type", None)
    return str(task).endswith("SEQ_CLS")


@dataclass
class LoadedRun:
    """A trained model ready to use: ``model`` (PEFT-wrapped, or a merged plain model),
    ``tokenizer``, ``task``, class ``labels``, and the run's resolved ``config``."""

    model: Any
    tokenizer: Any
    task: str
    labels: list[str]
    config: FinetuneConfig | None
    folder: Path
    merged: bool = False


def find_adapter(run: str | Path) -> tuple[Path, Path | None]:
    """``(adapter_folder, run_folder)`` for a run folder, an adapter folder or a merged export.

    A ``--compare`` folder (several variants) is refused with the variants named.
    """
    p = Path(run).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"run folder not found: {str(run)!r}")
    if not p.is_dir():
        raise ValueError(f"run must be a folder (a run's --out, its adapter/, or an export), "
                         f"got a file: {str(run)!r}")
    if (p / "adapter_config.json").is_file() or (p / "config.json").is_file() and not (
            p / RUN_FILE).is_file():
        parent = p.parent if (p.parent / RUN_FILE).is_file() else None
        return p, parent
    if (p / ADAPTER_DIR / "adapter_config.json").is_file():
        return p / ADAPTER_DIR, p
    variants = sorted(q.name for q in p.iterdir() if (q / ADAPTER_DIR).is_dir())
    if variants:
        raise ValueError(f"{str(run)!r} is a comparison; pick one variant: "
                         + ", ".join(str(p / v) for v in variants))
    if (p / RUN_FILE).is_file():
        raise ValueError(f"run {str(run)!r} has no adapter/ yet: it did not finish (resume it "
                         "with scalelab finetune --resume)")
    raise ValueError(f"{str(run)!r} is not a scalelab run folder (no run.json, adapter/ or "
                     "adapter_config.json)")


def _run_config(run_folder: Path | None) -> tuple[FinetuneConfig | None, dict]:
    if run_folder is None or not (run_folder / RUN_FILE).is_file():
        return None, {}
    try:
        doc = json.loads((run_folder / RUN_FILE).read_text(encoding="utf-8"))
        return FinetuneConfig.from_mapping(doc["config"], str(run_folder / RUN_FILE)), doc
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise ValueError(f"{str(run_folder / RUN_FILE)!r} cannot be read: {e}") from None


def load_run(run: str | Path, *, device: str | None = None) -> LoadedRun:
    """Load a finished run for inference: base model + adapter (or a merged export)."""
    import torch
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoModelForSequenceClassification,
        AutoTokenizer,
    )

    from ..data.models import quiet_transformers

    folder, run_folder = find_adapter(run)
    config, doc = _run_config(run_folder)
    quiet_transformers()
    tok = AutoTokenizer.from_pretrained(str(folder))
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.sep_token
    adapter_cfg = folder / "adapter_config.json"
    if not adapter_cfg.is_file():  # a merged export: a plain transformers model
        cfg = AutoConfig.from_pretrained(str(folder))
        classifier = any(a.endswith("ForSequenceClassification")
                         for a in (cfg.architectures or []))
        cls = AutoModelForSequenceClassification if classifier else AutoModelForCausalLM
        model = cls.from_pretrained(str(folder), dtype=torch.float32)
        task = "classification" if classifier else "causal"
        labels = [cfg.id2label[i] for i in range(cfg.num_labels)] if classifier else []
        merged = True
    else:
        from peft import PeftConfig, PeftModel

        pcfg = PeftConfig.from_pretrained(str(folder))
        task = "classification" if str(pcfg.task_type).endswith("SEQ_CLS") else "causal"
        base_path = pcfg.base_model_name_or_path
        if doc.get("config", {}).get("model") == "smollm2":  # rebuilt if the cache went away
            from ..data.models import resolve_model

            base_path = resolve_model("smollm2").loadable_path()
        if task == "classification":
            cfg = AutoConfig.from_pretrained(str(folder) if (folder / "config.json").is_file()
                                             else base_path)
            labels = [cfg.id2label[i] for i in range(cfg.num_labels)]
            base = AutoModelForSequenceClassification.from_pretrained(
                base_path, config=cfg, dtype=torch.float32,
                ignore_mismatched_sizes=True)  # the trained head comes from the adapter
        else:
            labels = []
            base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*",
                                    category=FutureWarning)
            model = PeftModel.from_pretrained(base, str(folder))
        merged = False
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tok.pad_token_id
    model.eval()
    if device is not None:
        model.to(device)
    return LoadedRun(model=model, tokenizer=tok, task=task, labels=labels, config=config,
                     folder=folder, merged=merged)


def export_run(run: str | Path, out_dir: str | Path, *, merge: bool = False) -> Path:
    """Write a run's model to ``out_dir``: the adapter folder as it is, or (``merge=True``) a
    plain transformers model with the LoRA weights merged in (safetensors, tokenizer,
    ``id2label`` for classifiers) that loads without scalelab or PEFT."""
    folder, _ = find_adapter(run)
    out = Path(out_dir).expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ValueError(f"--out {str(out_dir)!r} must be a new or empty folder")
    if not (folder / "adapter_config.json").is_file():
        raise ValueError(f"{str(run)!r} is already a merged model (no adapter to export)")
    if not merge:
        shutil.copytree(folder, out, dirs_exist_ok=True)
        return out
    loaded = load_run(run)
    plain = loaded.model.merge_and_unload()
    if loaded.task == "classification":
        plain.config.id2label = {i: n for i, n in enumerate(loaded.labels)}
        plain.config.label2id = {n: i for i, n in enumerate(loaded.labels)}
    out.mkdir(parents=True, exist_ok=True)
    plain.save_pretrained(str(out), safe_serialization=True)
    loaded.tokenizer.save_pretrained(str(out))
    return out
