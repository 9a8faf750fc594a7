"""Training throughput: scalelab's fine-tuning loop vs a plain PEFT + transformers ``Trainer``.

Same work for both: the embedded MiniLM-L6 encoder with PEFT LoRA (r=8, alpha=8, query/value,
classifier head trained), tweet sentiment, batch 16, length 48, ``--steps`` AdamW steps at
a constant lr 3e-3 over the same ``steps * 16`` training examples (one epoch of them), fp32
on CPU (bf16 autocast on a GPU for both). tokens/s = non-padding tokens / training time:
for scalelab the time of its steps (tokenisation included, evaluation excluded), for the
Trainer the wall time of ``trainer.train()`` (inputs tokenised beforehand, not timed). One
run of each (the issue's protocol); target: ratio >= 1.0.

Run: ``.venv/bin/python benchmarks/finetune_throughput.py [--steps 60]`` (prints a table,
writes benchmarks/results/finetune_throughput.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def scalelab_run(steps: int, batch: int, max_length: int, device_bf16: bool) -> dict:
    from scalelab.train import FinetuneConfig, finetune

    cfg = FinetuneConfig(method="lora", lr=3e-3, steps=steps, batch_size=batch,
                         max_length=max_length, eval_every=10**6, eval_size=16)
    r = finetune(cfg, None, quiet=True)
    return {"tokens": r.tokens, "seconds": r.train_s, "tokens_per_s": r.tokens / r.train_s}


def trainer_run(steps: int, batch: int, max_length: int, device_bf16: bool) -> dict:
    import torch
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments

    from scalelab.data.models import load_model
    from scalelab.data.text import load_text_dataset
    from scalelab.train.batches import batch_indices

    data = load_text_dataset("tweets", eval_size=16)
    idx = [int(i) for s in range(steps) for i in batch_indices(s, len(data.train), batch, 0)]
    examples = [data.train[i] for i in idx]
    torch.manual_seed(0)
    model, tok = load_model("minilm", task="classification", num_labels=3)
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=8, target_modules=["query", "value"],
                                             task_type=TaskType.SEQ_CLS))
    enc = tok([t for t, _ in examples], truncation=True, max_length=max_length)
    rows = [{"input_ids": enc["input_ids"][i], "attention_mask": enc["attention_mask"][i],
             "token_type_ids": enc["token_type_ids"][i], "labels": y}
            for i, (_, y) in enumerate(examples)]
    tokens = sum(len(r["input_ids"]) for r in rows)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=batch, max_steps=steps,
            learning_rate=3e-3, lr_scheduler_type="constant", weight_decay=0.0,
            warmup_steps=0, logging_strategy="no", save_strategy="no", eval_strategy="no",
            report_to=[], disable_tqdm=True, dataloader_num_workers=0, seed=0,
            bf16=device_bf16, use_cpu=not torch.cuda.is_available())
        trainer = Trainer(model=model, args=args, train_dataset=rows,
                          data_collator=DataCollatorWithPadding(tok))
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--max-length", type=int, default=48)
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 2)))
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    gpu = torch.cuda.is_available()
    bf16 = gpu and torch.cuda.is_bf16_supported()
    device = torch.cuda.get_device_name(0) if gpu else f"CPU ({args.threads} torch threads)"
    rows = {}
    for name, fn in (("scalelab finetune loop", scalelab_run),
                     ("PEFT + transformers Trainer", trainer_run)):
        rows[name] = fn(args.steps, args.batch, args.max_length, bf16)
        print(f"  {name}: {rows[name]['tokens_per_s']:,.0f} tokens/s", flush=True)
    ours, theirs = rows["scalelab finetune loop"], rows["PEFT + transformers Trainer"]
    ratio = ours["tokens_per_s"] / theirs["tokens_per_s"]
    print(f"\n{'loop':30} {'tokens':>8} {'seconds':>8} {'tokens/s':>10}")
    for name, r in rows.items():
        print(f"{name:30} {r['tokens']:>8} {r['seconds']:>8.1f} {r['tokens_per_s']:>10,.0f}")
    print(f"ratio scalelab / Trainer: {ratio:.2f}x (target >= 1.0); device: {device}")
    doc = {"protocol": __doc__, "steps": args.steps, "batch": args.batch,
           "max_length": args.max_length, "device": device, "bf16": bf16,
           "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs",
           "runs": rows, "ratio": ratio, "meets_target": ratio >= 1.0}
    out = HERE / "results" / "finetune_throughput.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
