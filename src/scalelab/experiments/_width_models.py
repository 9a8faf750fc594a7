"""BERT-style encoders at several widths, pre-trained briefly from scratch (masked LM), cached.

Used by the ``loraplus-width`` reproduction (docs/lora.md, "LoRA+ across width"). Everything
here is deterministic given its spec: the corpus, the compact vocabulary, the batch order,
the masks and the initialisation, so a checkpoint is built once and reused from the cache.

- :func:`encoder_config`: the width rule — ``heads = width / head_dim``, FFN ``4 * width``,
  the same depth at every width, no dropout.
- :func:`pretraining_corpus`: BBC News (all articles), the tweets outside the held-out split
  and the Q/A text, tokenized with the MiniLM WordPiece tokenizer, restricted to a compact
  vocabulary (the ``vocab_size - 5`` most frequent ids plus the 5 special tokens; others
  become ``[UNK]``) and cut into blocks ``[CLS] ... [SEP]`` of ``seq_len`` tokens.
- :func:`pretrained_encoder`: masked-LM pre-training (15% of tokens: 80% ``[MASK]``, 10%
  random, 10% kept, as in BERT), AdamW with a linear warm-up/decay schedule from
  ``transformers.get_scheduler``; checkpointed while it runs, so an interrupted build resumes.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import check_int

#: Bump when the code below changes the numbers (it is part of every cache key).
CODE_VERSION = 1
#: Tweets held out of pre-training and of fine-tuning's training set; evaluation uses the
#: first ``eval_size`` of them (``load_text_dataset`` keeps the permutation, so they nest).
HELD_OUT_TWEETS = 2000
SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # compact ids 0..4
PAD, UNK, CLS, SEP, MASK = range(5)


def stable_key(fields: dict[str, Any]) -> str:
    """A short hash of ``fields`` (JSON, sorted keys) and :data:`CODE_VERSION`."""
    doc = json.dumps({"code_version": CODE_VERSION, **fields}, sort_keys=True, default=str)
    return hashlib.sha1(doc.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class PretrainSpec:
    """Everything that determines a pre-trained encoder (its cache key is a hash of it)."""

    width: int
    depth: int = 4
    head_dim: int = 64
    vocab_size: int = 8192
    seq_len: int = 64
    batch_size: int = 32
    steps: int = 300
    lr: float = 5e-4
    warmup: float = 0.1
    mask_prob: float = 0.15
    corpus_limit: int | None = None  # at most this many texts per source (quick mode)
    seed: int = 0

    def __post_init__(self) -> None:
        encoder_config(self.width, self.depth, head_dim=self.head_dim,
                       vocab_size=self.vocab_size, max_positions=self.seq_len)
        for name in ("seq_len", "batch_size", "steps"):
            check_int(name, getattr(self, name))
        if self.seq_len < 8:
            raise ValueError(f"seq_len must be >= 8, got {self.seq_len}")

    def key(self) -> str:
        return stable_key({"pretrain": dataclasses.asdict(self)})


def encoder_config(width: int, depth: int, *, head_dim: int = 64, vocab_size: int = 8192,
                   max_positions: int = 64):
    """The ``BertConfig`` of one width: ``width / head_dim`` heads, FFN ``4 * width``, no dropout.

    Raises:
        ValueError: ``width`` not a positive multiple of ``head_dim``, or a non-positive size.
    """
    from transformers import BertConfig

    width, depth = check_int("width", width), check_int("depth", depth)
    head_dim = check_int("head_dim", head_dim)
    vocab_size = check_int("vocab_size", vocab_size, minimum=len(SPECIAL_TOKENS) + 1)
    if width % head_dim:
        raise ValueError(f"width must be a multiple of head_dim={head_dim}, got {width}")
    return BertConfig(vocab_size=vocab_size, hidden_size=width, num_hidden_layers=depth,
                      num_attention_heads=width // head_dim, intermediate_size=4 * width,
                      max_position_embeddings=check_int("max_positions", max_positions),
                      type_vocab_size=1, hidden_dropout_prob=0.0,
                      attention_probs_dropout_prob=0.0, pad_token_id=PAD)


def _tokenizer():
    from transformers import AutoTokenizer

    from ..data.models import quiet_transformers, resolve_model

    quiet_transformers()
    return AutoTokenizer.from_pretrained(resolve_model("minilm").path)


tokenizer = lru_cache(maxsize=1)(_tokenizer)


def _texts(limit: int | None) -> list[str]:
    """Pre-training texts: tweets (outside the held-out split), BBC News, Q/A pairs."""
    from ..data.text import load_text_dataset

    tweets = [t for t, _ in load_text_dataset("tweets", eval_size=HELD_OUT_TWEETS).train]
    bbc = load_text_dataset("bbc", eval_size=1)
    chat = load_text_dataset("chat", eval_size=1)
    sources = [tweets, [t for t, _ in bbc.train + bbc.eval],
               [f"{p} {r}" for p, r in chat.train + chat.eval]]
    return [t for src in sources for t in (src[:limit] if limit else src)]


def compact_vocabulary(token_ids: list[list[int]], vocab_size: int,
                       special_ids: tuple[int, ...]) -> np.ndarray:
    """The tokenizer ids kept in the compact vocabulary, in compact-id order.

    The ``special_ids`` (PAD, UNK, CLS, SEP, MASK) come first, then the ``vocab_size - 5``
    most frequent other ids (ties: the smaller id first); fewer if fewer ids occur.
    """
    flat = np.concatenate([np.asarray(x, dtype=np.int64) for x in token_ids if len(x)])
    counts = np.bincount(flat)
    counts[list(s for s in special_ids if s < counts.size)] = 0
    order = np.argsort(-counts, kind="stable")
    order = order[counts[order] > 0][:vocab_size - len(special_ids)]
    return np.concatenate([np.asarray(special_ids, dtype=np.int64), order])


def id_map(kept: np.ndarray, tokenizer_size: int) -> np.ndarray:
    """A lookup table tokenizer id -> compact id (``UNK`` for ids not kept)."""
    table = np.full(max(tokenizer_size, int(kept.max()) + 1), UNK, dtype=np.int64)
    table[kept] = np.arange(kept.size)
    return table


def _corpus_key(spec: PretrainSpec) -> str:
    return stable_key({"corpus": [spec.vocab_size, spec.seq_len, spec.corpus_limit, spec.seed]})


def pretraining_corpus(spec: PretrainSpec, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """``(kept_ids, blocks)``: the compact vocabulary and the ``(n, seq_len)`` token blocks.

    Texts are shuffled (seed ``spec.seed``), joined with ``[SEP]`` and cut into blocks of
    ``seq_len - 2`` tokens, each wrapped as ``[CLS] ... [SEP]`` (the tail is dropped).
    Cached as ``corpus-KEY.npz`` under ``cache``.
    """
    path = cache / f"corpus-{_corpus_key(spec)}.npz"
    if path.is_file():
        with np.load(path) as z:
            return z["kept"], z["blocks"]
    tok = tokenizer()
    texts = _texts(spec.corpus_limit)
    ids = tok(texts, add_special_tokens=False)["input_ids"]
    special = tuple(tok.convert_tokens_to_ids(list(SPECIAL_TOKENS)))
    kept = compact_vocabulary(ids, spec.vocab_size, special)
    table = id_map(kept, len(tok))
    order = np.random.default_rng(spec.seed).permutation(len(ids))
    stream = np.concatenate([np.append(table[np.asarray(ids[i], dtype=np.int64)], SEP)
                             for i in order if len(ids[i])])
    body = spec.seq_len - 2
    n = stream.size // body
    blocks = np.empty((n, spec.seq_len), dtype=np.int64)
    blocks[:, 0], blocks[:, -1] = CLS, SEP
    blocks[:, 1:-1] = stream[:n * body].reshape(n, body)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez(tmp, kept=kept, blocks=blocks.astype(np.int16 if spec.vocab_size < 2**15 else
                                                  np.int32))
    os.replace(tmp, path)
    return kept, blocks


def mask_tokens(blocks: np.ndarray, rng: np.random.Generator, *, vocab_size: int,
                mask_prob: float) -> tuple[np.ndarray, np.ndarray]:
    """BERT masking of a batch: ``(inputs, labels)`` with ``labels = -100`` where not masked.

    Each non-special token is picked with probability ``mask_prob``; a picked token becomes
    ``[MASK]`` (80%), a random non-special token (10%) or stays (10%).
    """
    blocks = np.asarray(blocks, dtype=np.int64)
    picked = (rng.random(blocks.shape) < mask_prob) & (blocks >= len(SPECIAL_TOKENS))
    labels = np.where(picked, blocks, -100)
    u = rng.random(blocks.shape)
    inputs = blocks.copy()
    inputs[picked & (u < 0.8)] = MASK
    swap = picked & (u >= 0.8) & (u < 0.9)
    inputs[swap] = rng.integers(len(SPECIAL_TOKENS), vocab_size, size=int(swap.sum()))
    return inputs, labels


def _mlm_loss(model, inputs, labels):
    """Masked-LM cross-entropy, the vocabulary projection computed at masked positions only."""
    import torch.nn.functional as F

    hidden = model.bert(input_ids=inputs).last_hidden_state  # (B, T, width)
    where = labels != -100
    logits = model.cls(hidden[where])  # (M, V)
    return F.cross_entropy(logits, labels[where])


def pretrained_encoder(spec: PretrainSpec, cache: Path, *, checkpoint_every: int = 50,
                       log=None) -> tuple[Path, dict[str, Any]]:
    """The folder of the pre-trained encoder of ``spec`` (built on first use) and its metadata.

    The folder ``cache / f"w{width}-{key}"`` holds ``encoder.pt`` (the ``BertModel`` state
    dict, no pooler), ``kept_ids.npy`` (compact vocabulary) and ``meta.json`` (spec, train
    loss every 10 steps, held-out masked-LM loss on 64 blocks never trained on).
    """
    import torch
    from transformers import BertForMaskedLM, get_scheduler

    folder = cache / f"w{spec.width}-{spec.key()}"
    if (folder / "meta.json").is_file():
        return folder, json.loads((folder / "meta.json").read_text())
    kept, blocks = pretraining_corpus(spec, cache)
    n_held = min(64, max(1, blocks.shape[0] // 10))
    held, train = blocks[-n_held:], blocks[:-n_held]
    torch.manual_seed(spec.seed)
    cfg = encoder_config(spec.width, spec.depth, head_dim=spec.head_dim,
                         vocab_size=spec.vocab_size, max_positions=spec.seq_len)
    model = BertForMaskedLM(cfg)
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "LayerNorm" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "LayerNorm" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": rest, "weight_decay": 0.0}], lr=spec.lr)
    sched = get_scheduler("linear", opt, num_warmup_steps=round(spec.warmup * spec.steps),
                          num_training_steps=spec.steps)
    partial = cache / f"w{spec.width}-{spec.key()}.partial.pt"
    start, losses = 0, []
    if partial.is_file():
        state = torch.load(partial, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start, losses = state["step"], state["losses"]
    per_epoch = train.shape[0] // min(spec.batch_size, train.shape[0])
    window: list[float] = []
    model.train()
    for step in range(start, spec.steps):
        epoch, i = divmod(step, per_epoch)
        perm = np.random.default_rng([spec.seed, 1, epoch]).permutation(train.shape[0])
        idx = perm[i * spec.batch_size:(i + 1) * spec.batch_size]
        x, y = mask_tokens(train[idx], np.random.default_rng([spec.seed, 2, step]),
                           vocab_size=spec.vocab_size, mask_prob=spec.mask_prob)
        loss = _mlm_loss(model, torch.from_numpy(x), torch.from_numpy(y))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        window.append(loss.item())
        if (step + 1) % 10 == 0 or step + 1 == spec.steps:
            losses.append([step + 1, float(np.mean(window))])
            window = []
            if log:
                log(f"pretrain w{spec.width}: step {step + 1}/{spec.steps}, "
                    f"mlm loss {losses[-1][1]:.3f}")
        if (step + 1) % checkpoint_every == 0 and step + 1 < spec.steps:
            tmp = partial.with_name(partial.name + f".tmp{os.getpid()}")
            torch.save({"model": model.state_dict(), "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(), "step": step + 1, "losses": losses}, tmp)
            os.replace(tmp, partial)
    model.eval()
    with torch.no_grad():
        x, y = mask_tokens(held, np.random.default_rng([spec.seed, 3]),
                           vocab_size=spec.vocab_size, mask_prob=spec.mask_prob)
        held_loss = float(_mlm_loss(model, torch.from_numpy(x), torch.from_numpy(y)))
    meta = {"spec": dataclasses.asdict(spec), "key": spec.key(), "train_loss": losses,
            "heldout_mlm_loss": held_loss, "heldout_blocks": int(n_held),
            "corpus_blocks": int(blocks.shape[0]), "vocab_kept": int(kept.size)}
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(model.bert.state_dict(), tmp / "encoder.pt")
    np.save(tmp / "kept_ids.npy", kept)
    (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    if (folder / "meta.json").is_file():  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    partial.unlink(missing_ok=True)
    return folder, meta
