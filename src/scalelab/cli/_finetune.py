"""``scalelab finetune``: LoRA / LoRA+ fine-tuning of a real pretrained model, offline."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..train.config import DEFAULT_HEAD_LR, DEFAULT_LR

_HELP = "\n\n".join([
    "Fine-tune a pretrained model with LoRA or LoRA+ (arXiv 2402.12354), offline.",
    "With no options: the embedded MiniLM-L6 encoder on tweet sentiment (3 classes) with "
    f"LoRA+ (ratio 16). Default lrs (LoRA {DEFAULT_LR['lora']:g}; LoRA+ "
    f"{DEFAULT_LR['loraplus']:g} with the classifier head at {DEFAULT_HEAD_LR:g}) come from "
    "the tuning stage of benchmarks/finetune_speedup.py. Writes OUT/run.json and a checkpoint "
    "(every --checkpoint-every steps and on Ctrl-C / SIGTERM); --resume continues it exactly.",
    "--compare lora,loraplus (or init-a,init-b) runs the variants with the same seed and data "
    "order, prints a table and writes OUT/report.json and OUT/loss.png.",
    "Exit status: 0 ok, 1 a run diverged (non-finite loss), 2 bad input, 130/143 interrupted "
    "(checkpoint saved).",
    "Runs unchanged under 'torchrun --nproc_per_node N -m scalelab finetune ...' or "
    "'accelerate launch' (DDP, FSDP); a GPU is used when present (bf16 autocast).",
])


def _head_lr(value: str | None) -> float | str | None:
    if value is None or value == "official":
        return value
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"head_lr must be a number > 0 or 'official', got {value!r}") from None


def finetune_cmd(
    method: str = typer.Option("loraplus", "--method", help="lora (one lr) or loraplus "
                               "(lora_B at lr * ratio)."),
    compare: str = typer.Option(None, "--compare", help="Variants to compare, e.g. "
                                "'lora,loraplus' or 'init-a,init-b' (the first is the baseline)."),
    model: str = typer.Option("minilm", "--model", help="minilm, smollm2, a local Hugging Face "
                              "model folder, or a hub id (needs the network)."),
    dataset: str = typer.Option("tweets", "--dataset", help="tweets, bbc, chat (causal LM), or a "
                                ".csv/.jsonl file with text,label or prompt,response columns."),
    lr: float = typer.Option(None, "--lr", help="Base lr (LoRA's lr; LoRA+'s lr of A). Default: "
                             f"{DEFAULT_LR['lora']:g} for lora, {DEFAULT_LR['loraplus']:g} "
                             "for loraplus."),
    ratio: float = typer.Option(16.0, "--ratio", help="LoRA+ ratio lr_B / lr_A."),
    head_lr: str = typer.Option(None, "--head-lr", help="lr of the classifier head (a number) or "
                                "'official' (LoRA+ code's rule). Default: lr for lora, "
                                f"{DEFAULT_HEAD_LR:g} for loraplus."),
    rank: int = typer.Option(8, "--rank", help="LoRA rank r."),
    alpha: float = typer.Option(8.0, "--alpha", help="LoRA alpha (scale alpha / r)."),
    targets: str = typer.Option(None, "--targets", help="Comma-separated module names to adapt "
                                "(default: PEFT's for the architecture, e.g. query,value)."),
    init: str = typer.Option("A", "--init", help="A: A random, B = 0; B: A = 0, B random "
                             "(arXiv 2406.08447)."),
    steps: int = typer.Option(None, "--steps", help="Total optimizer steps (default 300; counts "
                              "the steps before a resume)."),
    epochs: float = typer.Option(None, "--epochs", help="Total epochs instead of --steps."),
    batch_size: int = typer.Option(16, "--batch-size", help="Global batch size."),
    max_length: int = typer.Option(None, "--max-length", help="Tokens per example (default: "
                                   "48 tweets, 128 bbc, 96 chat, 128 files)."),
    eval_every: int = typer.Option(25, "--eval-every", help="Evaluate every N steps (and at "
                                   "the end)."),
    eval_size: int = typer.Option(256, "--eval-size", help="Held-out examples (more: less "
                                  "noise, slower)."),
    checkpoint_every: int = typer.Option(None, "--checkpoint-every", help="Checkpoint every N "
                                         "steps (default: at each evaluation)."),
    weight_decay: float = typer.Option(0.0, "--weight-decay", help="AdamW weight decay."),
    seed: int = typer.Option(0, "--seed", help="Random seed; same seed, same numbers."),
    out: Path = typer.Option(None, "--out", help="Output folder (default runs/finetune or "
                             "runs/compare). May already exist."),
    resume: bool = typer.Option(False, "--resume", help="Continue from OUT's checkpoint(s)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar or messages."),
    as_json: bool = typer.Option(False, "--json", help="Print run.json (or report.json) alone "
                                 "on stdout."),
) -> None:
    from ..train.config import FinetuneConfig, parse_variants

    variants = parse_variants(compare) if compare else None
    config = FinetuneConfig(
        model=model, dataset=dataset, method=method, lr=lr, ratio=ratio,
        head_lr=_head_lr(head_lr), rank=rank, alpha=alpha,
        targets=tuple(t.strip() for t in targets.split(",") if t.strip()) if targets else None,
        init=init.upper(), steps=steps, epochs=epochs, batch_size=batch_size,
        max_length=max_length, seed=seed, eval_every=eval_every, eval_size=eval_size,
        checkpoint_every=checkpoint_every, weight_decay=weight_decay)
    out = out if out is not None else Path("runs") / ("compare" if variants else "finetune")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out must be a directory, got a file: {str(out)!r}")
    from ..train import build_report, finetune, format_table
    from ..train import compare as run_compare

    if variants:
        report = run_compare(config, variants, out, resume=resume, quiet=quiet)
        if "interrupted" in report:
            raise typer.Exit(128 + int(report["interrupted"].signal or 2))
        runs = report["runs"]
        doc = report
    else:
        result = finetune(config, out, resume=resume, quiet=quiet)
        if result.status == "interrupted":
            raise typer.Exit(128 + int(result.signal or 2))
        report = build_report(config, [result])
        runs, doc = report["runs"], result.to_dict()
    from accelerate import PartialState

    if PartialState().is_main_process:
        if as_json:
            typer.echo(json.dumps(doc, indent=1))
        else:
            typer.echo(format_table(report))
            if variants:
                typer.echo(f"report: {out / 'report.json'}; plot: {out / 'loss.png'}")
    if any(r["status"] == "diverged" for r in runs):
        raise typer.Exit(1)


finetune_cmd.__doc__ = _HELP


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune_cmd)
