"""Training throughput: scalelab's fine-tuning loop vs PEFT + ``Trainer`` and vs TRL.

Classification (``--case classification``, the default case of the first round). Same work for both: the embedded MiniLM-L6 encoder with PEFT LoRA (r=8, alpha=8, query/value,
classifier head trained), tweet sentiment, batch 16, length 48, ``--steps`` AdamW steps at
a constant lr 3e-3 over the same ``steps * 16`` training examples (one epoch of them), fp32
on CPU (bf16 autocast on a GPU for both). tokens/s = non-padding tokens / training time:
for scalelab the time of its steps (tokenisation included, evaluation excluded), for the
Trainer the wall time of ``trainer.train()`` (inputs tokenised beforehand, not timed). One
run of each (the issue's protocol); target: ratio >= 1.0.

Causal LM (``--case causal``): SmolLM2-135M-Instruct with PEFT LoRA (r=8, alpha=8, q_proj /
v_proj), the chat data rendered with the tokenizer's chat template, loss on the answers only,
batch 16, length 128, ``--steps`` AdamW steps at a constant lr 1e-4, fp32 on CPU, the same
examples in the same order for both: scalelab's ``finetune`` (LoRA, scored-positions-only
chunked head and loss) vs TRL's ``SFTTrainer`` + PEFT on a conversational prompt/completion
dataset (completion-only loss, TRL's default for such data), with its sampler made
sequential so its batches are ours. tokens/s counts the same non-padding tokens for both
(scalelab's rendering equals ``apply_chat_template``, tested), over the training time (TRL's
tokenisation happens before ``train()`` and is not timed; scalelab's is timed). The losses
of the first step, taken from the same base weights on the same batch (B = 0 at step 0), are
printed side by side, as are the mean losses over the run. Target: ratio >= 1.5.

Run: ``.venv/bin/python benchmarks/finetune_throughput.py [--case causal] [--steps N]``
(prints a table, writes benchmarks/results/finetune_throughput[_causal].json).
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


CAUSAL = dict(batch=16, max_length=128, lr=1e-4)


def causal_examples(steps: int, batch: int):
    from scalelab.data.text import load_text_dataset
    from scalelab.train.batches import batch_indices

    data = load_text_dataset("chat", eval_size=16)
    idx = [int(i) for s in range(steps) for i in batch_indices(s, len(data.train), batch, 0)]
    return data, [data.train[i] for i in idx]


def scalelab_causal(steps: int, packing: bool = False) -> dict:
    from scalelab.train import FinetuneConfig, finetune

    cfg = FinetuneConfig(model="smollm2", dataset="chat", method="lora", lr=CAUSAL["lr"],
                         steps=steps, batch_size=CAUSAL["batch"], max_length=CAUSAL["max_length"],
                         eval_every=10**6, eval_size=16, lr_scheduler="constant",
                         warmup_steps=0, precision="fp32", packing=packing)
    r = finetune(cfg, None, quiet=True)
    return {"tokens": r.tokens, "seconds": r.train_s, "tokens_per_s": r.tokens / r.train_s,
            "first_loss": r.train_loss[0], "mean_loss": sum(r.train_loss) / len(r.train_loss)}


def trl_causal(steps: int) -> dict:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from torch.utils.data import SequentialSampler
    from trl import SFTConfig, SFTTrainer

    from scalelab.data.models import load_model
    from scalelab.train.chat import render, truncate

    _, examples = causal_examples(steps, CAUSAL["batch"])
    torch.manual_seed(0)
    model, tok = load_model("smollm2", task="causal")
    rows, tokens = [], 0
    for ex in examples:
        user = [{"role": r, "content": c} for r, c in ex if r != "assistant"]
        answer = [{"role": r, "content": c} for r, c in ex if r == "assistant"]
        rows.append({"prompt": user, "completion": answer})
        ids, scored = render(tok, ex)
        tokens += len(truncate(ids, scored, CAUSAL["max_length"])[0])

    class InOrder(SFTTrainer):
        def _get_train_sampler(self, *args, **kwargs):
            return SequentialSampler(self.train_dataset)

    losses = []

    from transformers import TrainerCallback

    class LossLog(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kw):
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))

    with tempfile.TemporaryDirectory() as tmp:
        args = SFTConfig(output_dir=tmp, per_device_train_batch_size=CAUSAL["batch"],
                         max_steps=steps, learning_rate=CAUSAL["lr"], lr_scheduler_type="constant",
                         warmup_steps=0, weight_decay=0.0, logging_steps=1, save_strategy="no",
                         report_to=[], disable_tqdm=True, dataloader_num_workers=0, seed=0,
                         max_length=CAUSAL["max_length"], use_cpu=True, bf16=False)
        trainer = InOrder(model=model, args=args, train_dataset=Dataset.from_list(rows),
                          processing_class=tok, callbacks=[LossLog()],
                          peft_config=LoraConfig(r=8, lora_alpha=8,
                                                 target_modules=["q_proj", "v_proj"],
                                                 task_type="CAUSAL_LM"))
        t0 = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - t0
    return {"tokens": tokens, "seconds": seconds, "tokens_per_s": tokens / seconds,
            "first_loss": losses[0] if losses else None,
            "mean_loss": sum(losses) / len(losses) if losses else None}


def main_causal(args) -> None:
    rows = {}
    for name, fn in (("scalelab finetune (causal)", scalelab_causal),
                     ("scalelab finetune --packing", lambda n: scalelab_causal(n, True)),
                     ("TRL SFTTrainer + PEFT", trl_causal)):
        rows[name] = fn(args.steps)
        print(f"  {name}: {rows[name]['tokens_per_s']:,.0f} tokens/s", flush=True)
    theirs = rows["TRL SFTTrainer + PEFT"]
    ratio = rows["scalelab finetune (causal)"]["tokens_per_s"] / theirs["tokens_per_s"]
    ratio_packed = rows["scalelab finetune --packing"]["tokens_per_s"] / theirs["tokens_per_s"]
    print(f"\n{'loop':28} {'tokens':>8} {'seconds':>8} {'tokens/s':>9} {'loss@1':>8} "
          f"{'mean loss':>9}")
    for name, r in rows.items():
        print(f"{name:28} {r['tokens']:>8} {r['seconds']:>8.1f} {r['tokens_per_s']:>9,.0f} "
              f"{r['first_loss']:>8.4f} {r['mean_loss']:>9.4f}")
    print(f"ratio scalelab / TRL: {ratio:.2f}x padded, {ratio_packed:.2f}x with --packing "
          "(target >= 1.5)")
    doc = {"protocol": __doc__, "case": "causal", "steps": args.steps, **CAUSAL,
           "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, "
                      f"{args.threads} torch threads",
           "runs": rows, "ratio": ratio, "ratio_packing": ratio_packed,
           "meets_target": max(ratio, ratio_packed) >= 1.5}
    out = HERE / "results" / "finetune_throughput_causal.json"
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", choices=("classification", "causal"), default="classification")
    p.add_argument("--steps", type=int, default=None, help="default 60 (classification), "
                   "12 (causal)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--max-length", type=int, default=48)
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 2)))
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    if args.case == "causal":
        args.steps = args.steps or 12
        return main_causal(args)
    args.steps = args.steps or 60
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
