"""Batches for fine-tuning: a seeded data order that is a pure function of the step, and
tokenisation for classification and causal-LM examples.

Because the global batch of step ``s`` depends only on ``(seed, s)``, the data position of a
checkpoint is just its step: a resumed run sees exactly the batches it would have seen.
Under ``P`` processes, process ``r`` takes every ``P``-th example of the global batch, so the
per-process mean losses average (by DDP's gradient averaging) to the global-batch mean.
"""

from __future__ import annotations

import numpy as np

#: Causal-LM examples are rendered as ``PROMPT_FORMAT.format(prompt) + " " + response + EOS``
#: and only the response tokens are scored (interpretation: a plain format for every model,
#: no chat template).
PROMPT_FORMAT = "Question: {}\nAnswer:"


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


def encode_causal(tokenizer, examples, max_length: int) -> dict:
    """``(prompt, response)`` pairs -> right-padded ids with ``labels = -100`` off the response.

    The response keeps at most ``max_length - 1`` tokens; the prompt is cut from the left
    (the part next to the answer is kept), so every example scores at least one token.
    """
    import torch

    eos = tokenizer.eos_token or tokenizer.sep_token or ""
    rows = []
    for prompt, response in examples:
        p = tokenizer(PROMPT_FORMAT.format(prompt))["input_ids"]
        r = tokenizer(" " + response + eos, add_special_tokens=False)["input_ids"][:max_length - 1]
        p = p[-(max_length - len(r)):]
        rows.append((p + r, [-100] * len(p) + r))
    width = max(len(ids) for ids, _ in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (x, y) in enumerate(rows):
        ids[i, :len(x)] = torch.tensor(x)
        mask[i, :len(x)] = 1
        labels[i, :len(y)] = torch.tensor(y)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}


def encode(task: str, tokenizer, examples, max_length: int) -> dict:
    fn = encode_classification if task == "classification" else encode_causal
    return fn(tokenizer, examples, max_length)


def example_losses(task: str, logits, labels, keep=None):
    """Summed loss, number of scored items and correct predictions of one batch.

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
        loss = F.cross_entropy(logits, labels, reduction="none")[keep].sum()
        correct = (logits.argmax(-1) == labels)[keep].sum()
        return loss, int(keep.sum()), int(correct)
    labels = labels.masked_fill(~keep[:, None], -100)
    shift_logits = logits[:, :-1].reshape(-1, logits.shape[-1])  # (B*(T-1), V)
    shift_labels = labels[:, 1:].reshape(-1)
    loss = F.cross_entropy(shift_logits, shift_labels, ignore_index=-100, reduction="sum")
    return loss, int((shift_labels != -100).sum()), 0


def evaluate(model, task: str, tokenizer, examples, max_length: int, *, device,
             process_index: int = 0, num_processes: int = 1, batch_size: int = 64,
             reduce=None) -> tuple[float, float | None]:
    """Mean held-out loss (per example, or per response token) and accuracy (or ``None``).

    Each process scores its share; ``reduce`` (``accelerator.reduce``) sums them. Every
    process runs the same number of forward passes (shares are padded with unscored rows),
    as FSDP's collective forward needs.
    """
    import torch

    per_rank = -(-len(examples) // num_processes)
    mine = list(shard(list(range(len(examples))), process_index, num_processes))
    mine += [-1] * (per_rank - len(mine))
    totals = torch.zeros(3, dtype=torch.float64, device=device)
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for start in range(0, per_rank, batch_size):
            idx = mine[start:start + batch_size]
            chunk = [examples[max(i, 0)] for i in idx]
            keep = torch.tensor([i >= 0 for i in idx], device=device)
            batch = {k: v.to(device) for k, v in encode(task, tokenizer, chunk, max_length).items()}
            labels = batch.pop("labels")
            logits = model(**batch).logits
            loss, count, correct = example_losses(task, logits, labels, keep)
            totals += torch.tensor([float(loss), count, correct], dtype=torch.float64,
                                   device=device)
    if was_training:
        model.train()
    if reduce is not None and num_processes > 1:
        totals = reduce(totals, reduction="sum")
    loss_sum, count, correct = (float(v) for v in totals)
    mean = loss_sum / max(count, 1.0)
    return mean, (correct / count if task == "classification" and count else None)
