"""``finetune``: LoRA / LoRA+ fine-tuning of a pretrained model on Hugging Face Accelerate.

One loop for one process, DDP or FSDP (``torchrun`` / ``accelerate launch`` decide; the
library writes no process-group code). It evaluates every ``eval_every`` steps, checkpoints
(safetensors + ``weights_only`` state) every ``checkpoint_every`` steps and on
SIGINT/SIGTERM, resumes exactly, and stops with a clear message on a non-finite loss,
keeping the last good checkpoint. LoRA+ is arXiv 2402.12354; Init[A]/Init[B] arXiv 2406.08447.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._progress import progress_enabled
from .._utils import seed_everything, to_jsonable
from .batches import batch_indices, encode, evaluate, shard
from .checkpoint import CHECKPOINT_DIR, load_checkpoint, read_meta, save_checkpoint
from .config import FinetuneConfig
from .setup import (
    add_adapters,
    build_optimizer,
    build_scheduler,
    check_inputs,
    check_resume,
    make_accelerator,
)

RUN_FILE = "run.json"


@dataclass
class RunResult:
    """What one fine-tuning run did. ``status``: ``"ok"``, ``"diverged"`` or ``"interrupted"``.

    ``eval_loss`` is aligned with ``eval_steps`` (``None`` where non-finite); ``accuracy`` and
    ``perplexity`` are the final evaluation's (``None`` where they do not apply);
    ``wall_s`` is training plus evaluation time (model loading excluded), summed over
    resumes; ``tokens_per_s`` counts the non-padding training tokens of all processes.
    """

    variant: str
    method: str
    init: str
    lr: float
    ratio: float
    head_lr: float | str
    steps: int
    total_steps: int
    config: dict[str, Any]
    eval_steps: list[int] = field(default_factory=list)
    eval_loss: list[float | None] = field(default_factory=list)
    eval_accuracy: list[float | None] = field(default_factory=list)
    train_loss: list[float | None] = field(default_factory=list)
    final_eval_loss: float | None = None
    accuracy: float | None = None
    perplexity: float | None = None
    wall_s: float = 0.0
    tokens_per_s: float = 0.0
    tokens: int = 0
    train_s: float = 0.0
    status: str = "ok"
    message: str = ""
    signal: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


class _SignalStop:
    """Turn SIGINT/SIGTERM into a flag the loop checks after each step (a second SIGINT
    interrupts at once)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> _SignalStop:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _bar(total: int, done: int, name: str, enabled: bool):
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]}"), TextColumn("{task.fields[tps]} tok/s"),
                   TimeElapsedColumn(), TimeRemainingColumn(),
                   console=Console(stderr=True), transient=True)
    bar.start()
    bar.add_task(name, total=total, completed=done, loss="-", tps="-")
    return bar


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def finetune(config: FinetuneConfig, out_dir: str | Path | None = None, *,
             variant: str | None = None, resume: bool = False, quiet: bool = False,
             accelerator=None, inputs=None, log: Callable[[str], None] | None = None
             ) -> RunResult:
    """Fine-tune ``config.model`` on ``config.dataset`` with LoRA or LoRA+.

    Args:
        config: the run's :class:`FinetuneConfig`.
        out_dir: where ``run.json`` and ``checkpoint/`` go (``None``: no files, no checkpoints).
        variant: the name recorded in the result (default: the method).
        resume: continue from ``out_dir/checkpoint`` when there is one (the configuration
            must match, except the fields in ``setup.RESUMABLE_CHANGES``).
        quiet: no progress bar and no progress messages (a divergence or an interruption is
            still reported).
        accelerator: an ``accelerate.Accelerator`` to reuse (default: a new one).
        inputs: ``(data, source)`` from :func:`check_inputs`, when already checked.
        log: where messages go (default: stderr, main process only).

    Returns:
        A :class:`RunResult`; also written to ``out_dir/run.json`` by the main process.
    """
    import torch

    data, source = inputs if inputs is not None else check_inputs(config)
    out = Path(out_dir) if out_dir is not None else None
    if out is not None and out.exists() and not out.is_dir():
        raise ValueError(f"out must be a directory, got a file: {str(out)!r}")
    meta = read_meta(out) if (resume and out is not None) else None
    check_resume(config, meta)
    acc = accelerator if accelerator is not None else make_accelerator()
    nproc, rank, main = acc.num_processes, acc.process_index, acc.is_main_process
    if config.batch_size % nproc:
        raise ValueError(f"batch_size {config.batch_size} must be divisible by the number of "
                         f"processes ({nproc})")
    live: dict[str, Any] = {"bar": None}

    def say(msg: str) -> None:
        if not main or quiet:
            return
        if live["bar"] is not None and log is None:  # print above the live progress bar
            live["bar"].console.print(msg, markup=False, highlight=False)
        else:
            (log or _stderr)(msg)
    total = config.total_steps(len(data.train))
    max_len = config.resolved_max_length()
    head = config.effective_head_lr
    result = RunResult(variant=variant or config.method, method=config.method, init=config.init,
                       lr=config.base_lr, ratio=config.effective_ratio, head_lr=head, steps=0,
                       total_steps=total, config=config.to_dict())

    seed_everything(config.seed)
    if source.gguf_file and main:
        say("loading SmolLM2 (the first time converts its GGUF file to an fp32 cache, ~40 s)")
    from ..data.models import load_model

    model, tok = load_model(source, task=data.task, num_labels=data.num_classes or None)
    model = add_adapters(model, config, data.task)
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    model, optimizer = acc.prepare(model, optimizer)
    raw = acc.unwrap_model(model)

    if meta is not None:
        meta = load_checkpoint(out, model=raw, optimizer=optimizer, scheduler=scheduler,
                               process_index=rank)
        for k in ("steps", "eval_steps", "eval_loss", "eval_accuracy", "train_loss", "tokens",
                  "train_s", "wall_s", "final_eval_loss", "accuracy", "perplexity"):
            setattr(result, k, meta["result"][k])
        say(f"resumed from {out / CHECKPOINT_DIR} at step {result.steps}/{total}")
    elif resume and out is not None:
        say(f"no checkpoint under {out}: starting from step 0")

    def checkpoint() -> None:
        if out is None:
            return
        save_checkpoint(out, model=raw, optimizer=optimizer, scheduler=scheduler,
                        meta={"config": config.to_dict(), "result": result.to_dict()},
                        process_index=rank, is_main=main, wait=acc.wait_for_everyone)

    def run_eval() -> bool:
        loss, acc_ = evaluate(model, data.task, tok, data.eval, max_len, device=acc.device,
                              process_index=rank, num_processes=nproc, reduce=acc.reduce,
                              batch_size=64 if data.task == "classification" else 16)
        finite = math.isfinite(loss)
        result.eval_steps.append(result.steps)
        result.eval_loss.append(loss if finite else None)
        result.eval_accuracy.append(acc_)
        result.final_eval_loss, result.accuracy = (loss if finite else None), acc_
        if data.task == "causal" and finite:
            result.perplexity = math.exp(min(loss, 700.0))
        extra = f"  accuracy {acc_:.3f}" if acc_ is not None else (
            f"  perplexity {result.perplexity:.2f}" if result.perplexity else "")
        say(f"[{result.variant}] step {result.steps}/{total}  eval loss {loss:.4f}{extra}")
        return finite

    every_ckpt = config.checkpoint_every or config.eval_every
    bar = live["bar"] = _bar(total, result.steps, result.variant,
                             main and not quiet and progress_enabled())
    last_ckpt = result.steps if meta is not None else None
    model.train()
    try:
        with _SignalStop() as stop:
            while result.steps < total:
                t0 = time.perf_counter()
                idx = shard(batch_indices(result.steps, len(data.train), config.batch_size,
                                          config.seed), rank, nproc)
                batch = encode(data.task, tok, [data.train[i] for i in idx], max_len)
                batch = {k: v.to(acc.device) for k, v in batch.items()}
                loss = model(**batch).loss
                stats = torch.stack([loss.detach().float(),
                                     batch["attention_mask"].sum().float()])
                if nproc > 1:
                    stats = acc.reduce(stats, reduction="sum")
                    stats[0] /= nproc
                loss_value, ntok = float(stats[0]), int(stats[1])
                if not math.isfinite(loss_value):
                    result.status = "diverged"
                    result.train_loss.append(None)
                    kept = (f"; the last good checkpoint (step {last_ckpt}) is in "
                            f"{out / CHECKPOINT_DIR}") if last_ckpt is not None else ""
                    result.message = (f"training loss became {loss_value} at step "
                                      f"{result.steps + 1}: stopped{kept}")
                    break
                acc.backward(loss)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                result.steps += 1
                dt = time.perf_counter() - t0
                result.tokens += ntok
                result.train_s += dt
                result.wall_s += dt
                result.train_loss.append(loss_value)
                result.tokens_per_s = result.tokens / max(result.train_s, 1e-9)
                if bar is not None:
                    bar.update(bar.task_ids[0], completed=result.steps, loss=f"{loss_value:.4f}",
                               tps=f"{result.tokens_per_s:,.0f}")
                if result.steps % config.eval_every == 0 or result.steps == total:
                    t1 = time.perf_counter()
                    finite = run_eval()
                    result.wall_s += time.perf_counter() - t1
                    if not finite:
                        result.status = "diverged"
                        result.message = (f"eval loss became non-finite at step {result.steps}: "
                                          "stopped")
                        break
                interrupted = stop.signum is not None
                if nproc > 1:  # every process stops at the same step
                    flag = torch.tensor([float(interrupted)], device=acc.device)
                    interrupted = bool(acc.reduce(flag, reduction="sum") > 0)
                if interrupted or result.steps % every_ckpt == 0 or result.steps == total:
                    checkpoint()
                    last_ckpt = result.steps
                if interrupted:
                    result.status, result.signal = "interrupted", stop.signum or signal.SIGINT
                    name = signal.Signals(result.signal).name
                    result.message = (f"{name} at step {result.steps}/{total}: checkpoint saved "
                                      f"in {out / CHECKPOINT_DIR}; continue with --resume"
                                      if out is not None else f"{name}: stopped")
                    break
    finally:
        if bar is not None:
            bar.stop()
            live["bar"] = None
    if result.status == "ok" and result.final_eval_loss is None and result.steps == total:
        run_eval()  # a resume of a finished run with no evaluation yet
    if result.message and main:  # divergence and interruption are reported even when quiet
        (log or _stderr)(result.message)
    acc.wait_for_everyone()
    if out is not None and main:
        out.mkdir(parents=True, exist_ok=True)
        (out / RUN_FILE).write_text(json.dumps(result.to_dict(), indent=1) + "\n")
    acc.free_memory()
    return result
