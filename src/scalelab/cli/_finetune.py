"""``scalelab finetune``: LoRA / LoRA+ fine-tuning of a real pretrained model, offline.

Every option defaults to "not given": values come from the command line, else from
``--config FILE``, else from :class:`scalelab.train.FinetuneConfig` (which holds every
default, per task family). This module only parses, calls the library and prints.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import typer

from ..lora import DEFAULT_RATIO
from ..train.config import DEFAULT_STEPS, SCHEDULERS, TASK_DEFAULTS

_CLS, _LM = TASK_DEFAULTS["classification"], TASK_DEFAULTS["causal"]
_HELP = "\n\n".join([
    "Fine-tune a pretrained model with LoRA or LoRA+ (arXiv 2402.12354), offline.",
    "With no options: the embedded MiniLM-L6 encoder on tweet sentiment (3 classes) with "
    f"LoRA+ (ratio {DEFAULT_RATIO:g}). Default lrs — classification: LoRA {_CLS.lr['lora']:g}, "
    f"LoRA+ {_CLS.lr['loraplus']:g} with the head at {_CLS.head_lr['loraplus']:g}, constant "
    "schedule (tuned by benchmarks/finetune_speedup.py); causal LMs: LoRA "
    f"{_LM.lr['lora']:g}, LoRA+ {_LM.lr['loraplus']:g}, linear decay after a "
    f"{_LM.warmup_ratio:.0%} warm-up (docs/finetune.md gives the sources).",
    "Writes OUT/run.json, OUT/config.yaml (--config OUT/config.yaml reruns it), a checkpoint "
    "(every --checkpoint-every steps and on Ctrl-C / SIGTERM; --resume continues it exactly) "
    "and, at the end, OUT/adapter/ in PEFT's format (PeftModel.from_pretrained loads it; "
    "scalelab predict / evaluate / export use it). --merge also writes OUT/merged/, a plain "
    "transformers model.",
    "--compare lora,loraplus (or init-a,init-b) runs the variants with the same seed and data "
    "order, prints a table and writes OUT/report.json and OUT/loss.png.",
    "Exit status: 0 ok, 1 a run diverged (non-finite loss), 2 bad input, 130/143 interrupted "
    "(checkpoint saved).",
    "Runs unchanged under 'torchrun --nproc_per_node N -m scalelab finetune ...' or "
    "'accelerate launch' (DDP, FSDP); the loss of a step is the mean over the global batch "
    "whatever the number of processes or --grad-accum.",
])


def _opt(default: Any = None, *names: str, help: str) -> Any:
    return typer.Option(default, *names, help=help, show_default=False)


def finetune_cmd(
    config_file: Path = _opt(None, "--config", help="A .yaml or .json file whose keys are these "
                             "options (dashes or underscores); options given here override it."),
    method: str = _opt(None, "--method", help="lora (one lr) or loraplus (lora_B at lr * ratio; "
                       "the default)."),
    compare: str = _opt(None, "--compare", help="Variants to compare, e.g. 'lora,loraplus' or "
                        "'init-a,init-b' (the first is the baseline)."),
    model: str = _opt(None, "--model", help="minilm (default), smollm2, a local Hugging Face "
                      "model folder, or a hub id (needs the network)."),
    dataset: str = _opt(None, "--dataset", help="tweets (default), bbc, chat (causal LM), or a "
                        ".csv/.jsonl file with text,label or prompt,response columns (or "
                        "'messages' in JSON lines)."),
    lr: float = _opt(None, "--lr", help="Base lr (LoRA's lr; LoRA+'s lr of A). Default: by "
                     "method and task, see above."),
    ratio: float = _opt(None, "--ratio", help=f"LoRA+ ratio lr_B / lr_A (default "
                        f"{DEFAULT_RATIO:g})."),
    head_lr: str = _opt(None, "--head-lr", help="lr of the classifier head (a number) or "
                        "'official' (LoRA+ code's rule). Default: lr for lora, "
                        f"{_CLS.head_lr['loraplus']:g} for loraplus."),
    rank: int = _opt(None, "--rank", help="LoRA rank r (default 8)."),
    alpha: float = _opt(None, "--alpha", help="LoRA alpha, scale alpha / r (default 8)."),
    targets: str = _opt(None, "--targets", help="Comma-separated module names to adapt "
                        "(default: PEFT's for the architecture, e.g. query,value)."),
    dropout: float = _opt(None, "--dropout", help="LoRA dropout (default 0)."),
    init: str = _opt(None, "--init", help="A (default): A random, B = 0; B: A = 0, B random "
                     "(arXiv 2406.08447)."),
    steps: int = _opt(None, "--steps", help=f"Total optimizer steps (default {DEFAULT_STEPS}; "
                      "counts the steps before a resume)."),
    epochs: float = _opt(None, "--epochs", help="Total epochs instead of --steps."),
    batch_size: int = _opt(None, "--batch-size", help="Global batch of one optimizer step "
                           "(default 16), split across processes and --grad-accum."),
    grad_accum: int = _opt(None, "--grad-accum", help="Micro-batches per step (default 1): less "
                           "memory, same numbers."),
    max_length: int = _opt(None, "--max-length", help="Tokens per example (default: 48 tweets, "
                           "128 bbc and chat, 128 classification files, 256 causal files)."),
    lr_scheduler: str = _opt(None, "--lr-scheduler", help=f"{', '.join(SCHEDULERS)} "
                             "(transformers' schedules; default: constant for classification, "
                             "linear for causal LMs)."),
    warmup_steps: int = _opt(None, "--warmup-steps", help="Linear warm-up steps."),
    warmup_ratio: float = _opt(None, "--warmup-ratio", help="Warm-up as a fraction of the steps "
                               f"(default 0 classification, {_LM.warmup_ratio:g} causal)."),
    precision: str = _opt(None, "--precision", help="auto (default: bf16 on a GPU that has it, "
                          "else fp32), fp32 or bf16 (autocast, CPU or GPU)."),
    chat_template: bool = _opt(None, "--chat-template/--no-chat-template", help="Causal LMs: "
                               "render examples with the tokenizer's chat template (default "
                               "when it has one) or the plain Question/Answer format."),
    system_prompt: str = _opt(None, "--system-prompt", help="Causal LMs: a system message for "
                              "examples that have none."),
    packing: bool = _opt(None, "--packing/--no-packing", help="Causal LMs: padding-free "
                         "batches (examples concatenated, attention kept within each)."),
    encoding: str = _opt(None, "--encoding", help="Text encoding of a dataset file (default "
                         "utf-8, read strictly)."),
    compile: bool = _opt(None, "--compile/--no-compile", help="Compile the decoder blocks "
                         "(regional torch.compile). Default: on a GPU yes, on CPU no."),
    eval_every: int = _opt(None, "--eval-every", help="Evaluate every N steps (default 25, and "
                           "at the end)."),
    eval_size: int = _opt(None, "--eval-size", help="Held-out examples (default 256; more: less "
                          "noise, slower)."),
    checkpoint_every: int = _opt(None, "--checkpoint-every", help="Checkpoint every N steps "
                                 "(default: at each evaluation)."),
    weight_decay: float = _opt(None, "--weight-decay", help="AdamW weight decay (default 0)."),
    seed: int = _opt(None, "--seed", help="Random seed (default 0); same seed, same numbers."),
    out: Path = _opt(None, "--out", help="Output folder (default runs/finetune or "
                     "runs/compare). May already exist and hold other files."),
    resume: bool = _opt(None, "--resume", help="Continue from OUT's checkpoint(s)."),
    overwrite: bool = _opt(None, "--overwrite", help="Start over even if OUT holds an earlier "
                           "run's checkpoint (it is replaced)."),
    merge: bool = _opt(None, "--merge", help="Also write OUT/merged/: the model with LoRA merged "
                       "in, loadable without PEFT."),
    quiet: bool = _opt(None, "--quiet", help="No progress bar or messages."),
    as_json: bool = _opt(None, "--json", help="Print run.json (or report.json) alone on stdout."),
) -> None:
    given = {k: v for k, v in locals().items() if v is not None and k != "config_file"}
    from ..errors import check_out_dir
    from ..train.config import RUN_OPTIONS, FinetuneConfig, parse_variants, read_config_file

    if "as_json" in given:
        given["json"] = given.pop("as_json")
    if "targets" in given:
        given["targets"] = tuple(t.strip() for t in given["targets"].split(",") if t.strip())
    if "init" in given:
        given["init"] = given["init"].upper()
    values = read_config_file(config_file) if config_file is not None else {}
    values.update(given)  # the command line wins over the file
    opts = {k: values.pop(k) for k in RUN_OPTIONS if k in values}
    where = f"config file {str(config_file)!r}" if config_file is not None else "options"
    config = FinetuneConfig.from_mapping(values, where)
    variants = parse_variants(str(opts["compare"])) if opts.get("compare") else None
    out_dir = check_out_dir("--out", opts.get("out") or ("runs/compare" if variants
                                                           else "runs/finetune"))
    flags = {k: bool(opts.get(k)) for k in ("resume", "overwrite", "merge", "quiet", "json")}
    if flags["resume"] and flags["overwrite"]:
        raise ValueError("give --resume or --overwrite, not both")
    _run(config, variants, out_dir, flags)


def _run(config, variants, out_dir: Path, flags: dict[str, bool]) -> None:
    from accelerate import PartialState

    from ..train import build_report, export_run, finetune, format_table
    from ..train import compare as run_compare

    kw = dict(resume=flags["resume"], overwrite=flags["overwrite"], quiet=flags["quiet"])
    if variants:
        report = run_compare(config, variants, out_dir, **kw)
        if "interrupted" in report:
            raise typer.Exit(128 + int(report["interrupted"].signal or 2))
        runs, doc = report["runs"], report
        folders = [out_dir / v for v in variants]
    else:
        result = finetune(config, out_dir, **kw)
        if result.status == "interrupted":
            raise typer.Exit(128 + int(result.signal or 2))
        report = build_report(config, [result])
        runs, doc = report["runs"], result.to_dict()
        folders = [out_dir]
    main = PartialState().is_main_process
    if main:
        if variants:
            from ..plots import plot_finetune_curves

            plot_finetune_curves(report, out_dir / "loss.png")
        ok = [f for f, r in zip(folders, runs, strict=True) if r.get("adapter")]
        if flags["merge"]:
            for f in ok:
                shutil.rmtree(f / "merged", ignore_errors=True)
                export_run(f, f / "merged", merge=True)
        if flags["json"]:
            typer.echo(json.dumps(doc, indent=1))
        else:
            typer.echo(format_table(report))
            if variants:
                typer.echo(f"report: {out_dir / 'report.json'}; plot: {out_dir / 'loss.png'}")
            for f in ok:
                merged = f" and {f / 'merged'} (merged)" if flags["merge"] else ""
                typer.echo(f"adapter: {f / 'adapter'}{merged}; predict with: scalelab predict "
                           f"{f} --input FILE")
    if any(r["status"] == "diverged" for r in runs):
        raise typer.Exit(1)


finetune_cmd.__doc__ = _HELP


def register(app: typer.Typer) -> None:
    app.command("finetune")(finetune_cmd)
