"""Batches for fine-tuning: a seeded data order that is a pure function of the step,
tokenisation (classification; causal LM through :mod:`.chat`, padded or packed), and the
loss module every process runs.

Because the global batch of step ``s`` depends only on ``(seed, s)``, the data position of a
checkpoint is just its step: a resumed run sees exactly the batches it would have seen.
A step's global batch is cut into ``grad_accum`` micro-batches and each micro-batch is shared
across the ``P`` processes (process ``r`` takes every ``P``-th example). The loss of a step
is the sum over all its scored items (examples, or response tokens) divided by their global
count, counted across processes and micro-batches before the backward pass — so 2 processes
or 2 micro-batches give the same step as 1, also when token counts are uneven.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .chat import render, truncate


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> np.ndarray:
    """Indices of the global batch of ``step`` (0-based) over ``n`` training examples.

    Each epoch is a fresh seeded permutation; the last incomplete batch of an epoch is
    dropped so every batch has ``min(batch_size, n)`` examples.
    """
    b = min(batch_size, n)
    per_epoch = n // b
    epoch, i = divmod(step, per_epoch)
    perm = np.random.default_rng([seed, epoch]).permutation(n)
    return perm[i * b:(i + 1) * b]


def shard(indices, process_index: int, num_processes: int):
    """This process's share of a global batch (every ``num_processes``-th element)."""
    return indices[process_index::num_processes]


def micro_batches(indices, grad_accum: int) -> list:
    """A global batch cut into ``grad_accum`` consecutive micro-batches of equal size."""
    m = len(indices) // grad_accum
    return [indices[j * m:(j + 1) * m] for j in range(grad_accum)]


def encode_classification(tokenizer, examples, max_length: int) -> dict:
    """``(text, label)`` pairs -> ``input_ids``, ``attention_mask`` (padded), ``labels``."""
    import torch

    enc = tokenizer([t for t, _ in examples], truncation=True, max_length=max_length,
                    padding=True, return_tensors="pt")
    batch = {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}
    if "token_type_ids" in enc:
        batch["token_type_ids"] = enc["token_type_ids"]
    batch["labels"] = torch.tensor([y for _, y in examples], dtype=torch.long)
    return batch


def _pad(rows: Sequence[tuple[list[int], list[int]]], pad_id: int) -> dict:
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        ids[i, :len(x)] = torch.tensor(x)
        mask[i, :len(x)] = 1
        labels[i, :len(y)] = torch.tensor(y)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def _pack(rows: Sequence[tuple[list[int], list[int]]], row_length: int, pad_id: int) -> dict:
    """Padding-free rows of at most ``row_length`` tokens: examples placed first-fit,
    positions restarting per example (transformers' ``DataCollatorWithFlattening`` via
    :func:`scalelab.train.fast.packed_batch`); attention never crosses examples. Rows of
    bounded length keep the attention cost of a dense-mask kernel (SDPA on CPU) near the
    padded batch's, where one row of the whole batch would attend across all of it."""
    from .fast import packed_batch

    width = max(row_length, max(len(x) for x, _ in rows))
    return packed_batch(_pad(rows, pad_id), row_length=width)


class CausalEncoder:
    """Causal-LM examples -> token ids with ``labels = -100`` off the scored (assistant)
    tokens, rendered by :func:`.chat.render` once per example and cached.

    ``packing=True`` returns padding-free batches: rows of at most ``max_length`` tokens
    holding several examples each, ``position_ids`` restarting per example, no mask.
    """

    def __init__(self, tokenizer, max_length: int, *, chat_template: bool = True,
                 system_prompt: str | None = None, packing: bool = False) -> None:
        self.tokenizer, self.max_length = tokenizer, int(max_length)
        self.chat_template, self.system_prompt, self.packing = chat_template, system_prompt, packing
        self._cache: dict = {}

    def rendered(self, example) -> tuple[list[int], list[bool], int]:
        """``(ids, scored, full_length)`` of one example, truncated to ``max_length``."""
        hit = self._cache.get(example)
        if hit is None:
            ids, scored = render(self.tokenizer, example, chat_template=self.chat_template,
                                 system_prompt=self.system_prompt)
            cut_ids, cut_scored, _ = truncate(ids, scored, self.max_length)
            hit = self._cache[example] = (cut_ids, cut_scored, len(ids))
        return hit

    def rows(self, examples) -> list[tuple[list[int], list[int]]]:
        out = []
        for ex in examples:
            ids, scored, _ = self.rendered(ex)
            out.append((ids, [t if s else -100 for t, s in zip(ids, scored, strict=True)]))
        return out

    def __call__(self, examples) -> dict:
        rows = self.rows(examples)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        if self.packing:
            return _pack(rows, self.max_length, pad)
        return _pad(rows, pad)


def encode_causal(tokenizer, examples, max_length: int, *, chat_template: bool = True,
                  system_prompt: str | None = None, packing: bool = False) -> dict:
    """Causal-LM examples (conversations or ``(prompt, response)`` pairs) -> right-padded
    ``input_ids``, ``attention_mask`` and ``labels`` (``-100`` off the assistant tokens), or a
    packed batch; see :class:`CausalEncoder` and :mod:`.chat`."""
    return CausalEncoder(tokenizer, max_length, chat_template=chat_template,
                         system_prompt=system_prompt, packing=packing)(examples)


def make_encoder(task: str, tokenizer, max_length: int, *, chat_template: bool = True,
                 system_prompt: str | None = None, packing: bool = False):
    """A callable ``examples -> batch dict`` for ``task``."""
    if task == "classification":
        return lambda examples: encode_classification(tokenizer, examples, max_length)
    return CausalEncoder(tokenizer, max_length, chat_template=chat_template,
                         system_prompt=system_prompt, packing=packing)


def encode(task: str, tokenizer, examples, max_length: int, **kw) -> dict:
    return make_encoder(task, tokenizer, max_length, **kw)(examples)


def truncation_stats(task: str, tokenizer, examples, max_length: int, *, sample: int = 2000,
                     **kw) -> dict:
    """How ``max_length`` cuts the first ``sample`` examples: the fraction truncated, the
    fraction that lose more than half their tokens, and the median full length."""
    examples = list(examples)[:sample]
    if task == "classification":
        lengths = [len(ids) for ids in tokenizer([t for t, _ in examples],
                                                  add_special_tokens=True)["input_ids"]]
    else:
        enc = CausalEncoder(tokenizer, max_length, **kw)
        lengths = [enc.rendered(ex)[2] for ex in examples]
    lengths_arr = np.asarray(lengths, dtype=float)
    return {"truncated": float(np.mean(lengths_arr > max_length)),
            "mostly_cut": float(np.mean(lengths_arr > 2 * max_length)),
            "median_length": float(np.median(lengths_arr)), "n": len(lengths)}


def example_losses(task: str, logits, labels, keep=None):
    """Summed loss, number of scored items and correct predictions of one batch (tensors).

    Classification scores one item per example (cross-entropy, accuracy); causal LM scores
    every response token (next-token cross-entropy; ``correct`` is 0). Rows where ``keep``
    is False are padding and score nothing.
    """
    import torch
    import torch.nn.functional as F

    logits = logits.float()
    if keep is None:
        keep = torch.ones(labels.shape[0], dtype=torch.bool, device=labels.device)
    if task == "classification":
        loss = (F.cross_entropy(logits, labels, reduction="none") * keep).sum()
        correct = ((logits.argmax(-1) == labels) & keep).sum()
        return loss, keep.sum(), correct
    labels = labels.masked_fill(~keep[:, None], -100)
    shift_logits = logits[:, :-1].reshape(-1, logits.shape[-1])  # (B*(T-1), V)
    shift_labels = labels[:, 1:].reshape(-1)
    loss = F.cross_entropy(shift_logits, shift_labels, ignore_index=-100, reduction="sum")
    return loss, (shift_labels != -100).sum(), torch.zeros((), dtype=torch.long,
                                                            device=labels.device)


def scored_count(task: str, batch: dict) -> int:
    """Items a batch scores: examples (classification) or next-token targets (causal)."""
    labels = batch["labels"]
    if task == "classification":
        return int(labels.shape[0])
    return int((labels[:, 1:] != -100).sum())


def _loss_module_cls():
    import torch

    class LossModule(torch.nn.Module):
        """``model`` (a PEFT model) and the loss of a batch: ``(loss_sum, count, correct)``.

        Processes run their batches through this module's ``forward`` (DDP wraps it), so
        gradients synchronise as usual whatever the loss computes.
        """

        def __init__(self, model, task: str, precision: str = "fp32") -> None:
            super().__init__()
            self.model, self.task, self.precision = model, task, precision

        def forward(self, batch: dict, keep=None):
            labels = batch["labels"]
            if keep is not None and self.task == "causal":
                labels = labels.masked_fill(~keep[:, None], -100)
            with torch.autocast(labels.device.type, dtype=torch.bfloat16,
                                enabled=self.precision == "bf16"):
                if self.task == "causal":
                    # the LM head and its loss on the scored positions only, in chunks:
                    # the (tokens x vocab) logits of the batch are never materialised
                    from ..nn.lm_loss import scored_causal_lm_loss

                    loss, n = scored_causal_lm_loss(
                        self.model, batch["input_ids"], batch.get("attention_mask"), labels,
                        position_ids=batch.get("position_ids"))
                    zero = torch.zeros((), dtype=torch.long, device=labels.device)
                    return loss, zero + n, zero
                inputs = {k: v for k, v in batch.items() if k != "labels"}
                logits = self.model(**inputs).logits
            return example_losses(self.task, logits, labels, keep)  # fp32 loss

    return LossModule


def check_packing(model) -> None:
    """Refuse ``packing`` for a model whose attention does not keep packed examples apart:
    two short sequences, packed and alone, must give the same logits (a cheap forward)."""
    import torch

    device = next(model.parameters()).device
    a = torch.tensor([[3, 4, 5]], device=device)
    b = torch.tensor([[6, 7]], device=device)
    with torch.no_grad():
        alone = model(input_ids=b, use_cache=False).logits[0]
        packed = model(input_ids=torch.cat([a, b], 1), use_cache=False,
                       position_ids=torch.tensor([[0, 1, 2, 0, 1]], device=device)).logits[0, 3:]
    if not torch.allclose(alone.float(), packed.float(), rtol=1e-3, atol=1e-4):
        raise ValueError(f"packing: {type(model).__name__}'s attention lets packed examples see "
                         "each other with this transformers version; run without --packing")


def loss_module(model, task: str, precision: str = "fp32"):
    """The training/eval module around ``model`` for ``task`` (see ``LossModule``);
    ``precision="bf16"`` runs the model under bf16 autocast (CPU or GPU)."""
    return _loss_module_cls()(model, task, precision)


def evaluate(module, task: str, encoder, examples, *, device, process_index: int = 0,
             num_processes: int = 1, batch_size: int = 64,
             reduce=None) -> tuple[float, float | None, int]:
    """Mean held-out loss (per example, or per response token), accuracy (or ``None``) and the
    number of scored items, through a loss module.

    Each process scores its share; ``reduce`` (``accelerator.reduce``) sums them. Every
    process runs the same number of forward passes (shares are padded with unscored rows),
    as FSDP's collective forward needs.
    """
    import torch

    per_rank = -(-len(examples) // num_processes)
    mine = list(shard(list(range(len(examples))), process_index, num_processes))
    mine += [-1] * (per_rank - len(mine))
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    was_training = module.training
    module.eval()
    with torch.no_grad():
        for start in range(0, per_rank, batch_size):
            idx = mine[start:start + batch_size]
            chunk = [examples[max(i, 0)] for i in idx]
            keep = torch.tensor([i >= 0 for i in idx], device=device)
            batch = {k: v.to(device) for k, v in _unpacked(encoder, chunk).items()}
            loss, count, correct = module(batch, keep)
            totals += torch.stack([loss.double(), count.double(), correct.double()])
    if was_training:
        module.train()
    if reduce is not None and num_processes > 1:
        totals = reduce(totals, reduction="sum")
    loss_sum, count, correct = (float(v) for v in totals)
    mean = loss_sum / max(count, 1.0)
    acc = correct / count if task == "classification" and count else None
    return mean, acc, int(count)


def _unpacked(encoder, examples) -> dict:
    """Evaluation batches are always padded (rows can then be masked out one by one)."""
    if isinstance(encoder, CausalEncoder) and encoder.packing:
        rows = encoder.rows(examples)
        pad = encoder.tokenizer.pad_token_id if encoder.tokenizer.pad_token_id is not None else 0
        return _pad(rows, pad)
    return encoder(examples)
