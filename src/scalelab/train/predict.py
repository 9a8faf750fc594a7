"""Using a trained run: predictions (``scalelab predict``) and evaluation (``scalelab
evaluate``) from the run's own adapter (or a merged export), on any input in its format.

Classification: one object per input row, ``{"text", "label", "probabilities": {name: p}}``.
Causal LM: ``{"prompt", "response"}``, the response generated greedily by default (or sampled
at ``temperature``), with the prompt rendered as in training (chat template or fallback).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from ..errors import check_int, check_positive
from .export import LoadedRun

INPUT_FORMATS = ("auto", "csv", "jsonl", "lines")


def read_inputs(source: str, *, encoding: str = "utf-8", fmt: str = "auto") -> list[dict]:
    """Rows to predict on from a file or ``"-"`` (standard input).

    Files: by suffix (``.csv``, ``.tsv``, ``.jsonl``/``.json``, ``.txt`` = plain lines).
    Standard input (or ``fmt`` given): ``"csv"``, ``"jsonl"``, or ``"lines"`` (one text per
    line); ``"auto"`` reads JSON lines when every non-blank line starts with ``{``, else plain
    lines.
    """
    from ..data.tables import decode_text, parse_table, read_table

    if fmt not in INPUT_FORMATS:
        raise ValueError(f"format must be one of {', '.join(INPUT_FORMATS)}; got {fmt!r}")
    suffix = {"csv": ".csv", "jsonl": ".jsonl", "lines": ".txt"}.get(fmt)
    if source == "-":
        text = decode_text(sys.stdin.buffer.read(), "standard input", encoding)
        if suffix is None:
            lines = [ln for ln in text.splitlines() if ln.strip()]
            suffix = ".jsonl" if lines and all(ln.lstrip().startswith("{") for ln in lines) \
                else ".txt"
        rows = parse_table(text, suffix, "standard input").rows
    elif suffix is not None:
        p = Path(source).expanduser()
        if not p.is_file():
            raise FileNotFoundError(f"input file not found: {source!r}")
        rows = parse_table(decode_text(p.read_bytes(), f"input file {source!r}", encoding),
                           suffix, f"input file {source!r}").rows
    else:
        rows = read_table(source, encoding=encoding, what="input file").rows
    if not rows:
        raise ValueError(f"input {source!r} holds no rows")
    return [dict(r) for r in rows]


def _texts(rows: list[dict], where: str) -> list[str]:
    out = []
    for i, r in enumerate(rows, 1):
        v = r.get("text")
        if v is None:
            keys = [k for k in r if k not in ("label",)]
            v = r[keys[0]] if len(keys) == 1 else None
        if v is None or not str(v).strip():
            raise ValueError(f"{where} row {i}: needs a 'text' value (columns: "
                             f"{', '.join(map(str, r)) or 'none'})")
        out.append(str(v))
    return out


def _conversations(rows: list[dict], where: str) -> list[tuple]:
    from ..data.text import conversation

    out = []
    for i, r in enumerate(rows, 1):
        if "messages" in r:
            msgs = r["messages"]
            if isinstance(msgs, list) and msgs and isinstance(msgs[-1], dict) and \
                    msgs[-1].get("role") == "assistant":
                msgs = msgs[:-1]
            turns = []
            for j, m in enumerate(msgs if isinstance(msgs, list) else [], 1):
                if not isinstance(m, dict) or "role" not in m or "content" not in m:
                    raise ValueError(f"{where} row {i}: message {j} needs 'role' and 'content'")
                turns.append((str(m["role"]), str(m["content"])))
            if not turns:
                raise ValueError(f"{where} row {i}: 'messages' must be a non-empty list")
            out.append(tuple(turns))
            continue
        prompt = r.get("prompt", r.get("text"))
        if prompt is None:
            keys = list(r)
            prompt = r[keys[0]] if len(keys) == 1 else None
        if prompt is None or not str(prompt).strip():
            raise ValueError(f"{where} row {i}: needs a 'prompt' (or 'text', or 'messages')")
        sys_ = r.get("system")
        out.append(conversation(str(prompt), "", str(sys_) if sys_ else None)[:-1])
    return out


def predict(run: LoadedRun, rows: list[dict], *, max_new_tokens: int = 64,
            temperature: float = 0.0, batch_size: int = 16, seed: int = 0,
            where: str = "input") -> list[dict[str, Any]]:
    """Predictions for ``rows`` (dicts as :func:`read_inputs` returns) with a loaded run."""
    import torch

    check_int("batch_size", batch_size)
    check_int("max_new_tokens", max_new_tokens)
    check_positive("temperature", temperature, allow_zero=True)
    model, tok = run.model, run.tokenizer
    device = next(model.parameters()).device
    out: list[dict[str, Any]] = []
    with torch.no_grad():
        if run.task == "classification":
            texts = _texts(rows, where)
            max_len = run.config.max_length if run.config and run.config.max_length else 512
            for s in range(0, len(texts), batch_size):
                chunk = texts[s:s + batch_size]
                enc = tok(chunk, truncation=True, max_length=max_len, padding=True,
                          return_tensors="pt").to(device)
                probs = torch.softmax(model(**enc).logits.float(), dim=-1)
                for t, p in zip(chunk, probs, strict=True):
                    k = int(p.argmax())
                    out.append({"text": t, "label": run.labels[k] if run.labels else k,
                                "probabilities": {str(run.labels[j] if run.labels else j):
                                                  round(float(p[j]), 6)
                                                  for j in range(p.shape[0])}})
            return out
        from .chat import prompt_ids

        convs = _conversations(rows, where)
        chat = run.config.chat_template if run.config else True
        system = run.config.system_prompt if run.config else None
        torch.manual_seed(seed)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        for s in range(0, len(convs), batch_size):
            chunk = convs[s:s + batch_size]
            ids = [prompt_ids(tok, c, chat_template=chat, system_prompt=system) for c in chunk]
            width = max(len(x) for x in ids)
            input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
            mask = torch.zeros((len(ids), width), dtype=torch.long)
            for i, x in enumerate(ids):  # left padding, so every answer starts at the end
                input_ids[i, width - len(x):] = torch.tensor(x)
                mask[i, width - len(x):] = 1
            gen_kw: dict[str, Any] = dict(max_new_tokens=max_new_tokens, pad_token_id=pad,
                                          eos_token_id=tok.eos_token_id)
            if temperature > 0:
                gen_kw.update(do_sample=True, temperature=float(temperature))
            else:
                gen_kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
            seqs = model.generate(input_ids=input_ids.to(device), attention_mask=mask.to(device),
                                  **gen_kw)
            for c, seq in zip(chunk, seqs[:, width:], strict=True):
                text = tok.decode(seq, skip_special_tokens=True).strip()
                prompt = next((t for r, t in reversed(c) if r == "user"), "")
                out.append({"prompt": prompt, "response": text})
    return out


def evaluate_run(run: LoadedRun, dataset: str | None = None, *, eval_size: int | None = None,
                 batch_size: int | None = None, encoding: str = "utf-8") -> dict[str, Any]:
    """Eval loss and accuracy (classification) or perplexity (causal LM) of a loaded run.

    ``dataset=None`` scores the run's own held-out split (the numbers its ``run.json``
    reports); an embedded name scores that dataset's held-out split; a file is scored whole.
    Class names must be the run's.
    """
    from ..data.text import TEXT_DATASETS, load_text_dataset
    from .batches import evaluate, loss_module, make_encoder

    cfg = run.config
    name = dataset or (cfg.dataset if cfg else None)
    if name is None:
        raise ValueError("this model has no run.json to say what it was trained on: give "
                         "--dataset")
    if dataset is None or dataset in TEXT_DATASETS:
        size = eval_size or (cfg.eval_size if cfg else 256)
        data = load_text_dataset(name, eval_size=size, encoding=encoding)
        examples = data.eval
    else:
        data = load_text_dataset(name, eval_size=1, encoding=encoding)
        examples = data.eval + data.train
    if data.task != run.task:
        raise ValueError(f"dataset {name!r} is for {data.task}, this model does {run.task}")
    if run.task == "classification":
        unknown = [n for n in data.labels if n not in run.labels]
        if unknown:
            raise ValueError(f"dataset {name!r} has class {unknown[0]!r}, which the model does not "
                             f"know (its classes: {', '.join(run.labels)})")
        remap = {i: run.labels.index(n) for i, n in enumerate(data.labels)}
        examples = tuple((t, remap[y]) for t, y in examples)
    max_len = cfg.max_length if cfg and cfg.max_length else 256
    enc = make_encoder(run.task, run.tokenizer, max_len,
                       chat_template=cfg.chat_template if cfg else True,
                       system_prompt=cfg.system_prompt if cfg else None)
    device = next(run.model.parameters()).device
    loss, acc, n = evaluate(loss_module(run.model, run.task), run.task, enc, examples,
                            device=device,
                            batch_size=batch_size or (64 if run.task == "classification" else 16))
    out: dict[str, Any] = {"dataset": name, "examples": len(examples), "scored": n,
                           "loss": loss}
    if run.task == "classification":
        out["accuracy"] = acc
    else:
        out["perplexity"] = math.exp(min(loss, 700.0))
    return out
