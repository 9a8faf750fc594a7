"""One fine-tuning run as an object: restore, step, evaluate, checkpoint, finish.

:class:`FinetuneRun` is what :func:`scalelab.train.finetune` drives; the pieces are public so
a user (or a test) can drive them too::

    run = FinetuneRun(config, "runs/x")
    run.restore()                 # model, adapters, optimizer, schedule; the checkpoint
    while not run.done:
        run.step()                # one optimizer step (grad_accum micro-batches)
        ...
    result = run.finish()         # adapter in PEFT's format, run.json, config.yaml

Rules it keeps (docs/finetune.md, "Resume"): an output folder holding a checkpoint is never
overwritten unless ``resume`` (continue it) or ``overwrite`` (start over) is given; a
checkpoint that cannot be read is an error, never a fresh start; a resume needs the same
resolved configuration (a value given explicitly and equal to the default is the same),
the same training data (by content fingerprint, not by path) and the same precision.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import signal
import sys
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .._progress import progress_enabled
from .._utils import seed_everything, to_jsonable
from ..errors import ScalelabWarning, check_out_dir
from .batches import (
    batch_indices,
    check_packing,
    evaluate,
    loss_module,
    make_encoder,
    micro_batches,
    scored_count,
    shard,
    truncation_stats,
)
from .checkpoint import CHECKPOINT_DIR, load_checkpoint, read_meta, save_checkpoint
from .config import FinetuneConfig, config_yaml
from .setup import (
    add_adapters,
    build_optimizer,
    build_scheduler,
    check_inputs,
    check_resume,
    make_accelerator,
    resolve_precision,
)

RUN_FILE = "run.json"
CONFIG_FILE = "config.yaml"
ADAPTER_DIR = "adapter"


@dataclass
class RunResult:
    """What one fine-tuning run did. ``status``: ``"ok"``, ``"diverged"`` or ``"interrupted"``.

    ``eval_loss`` is aligned with ``eval_steps`` (``None`` where non-finite); ``accuracy`` and
    ``perplexity`` are the final evaluation's (``None`` where they do not apply);
    ``wall_s`` is training plus evaluation time (model loading excluded), summed over
    resumes; ``tokens_per_s`` counts the non-padding training tokens of all processes.
    ``head_lr`` is ``None`` for a model with no head (causal LMs); ``lr_history`` is the base
    (A factors') lr each step used. ``adapter`` is the folder of the saved adapter (PEFT
    format) once the run finished.
    """

    variant: str
    method: str
    init: str
    lr: float
    ratio: float
    head_lr: float | str | None
    steps: int
    total_steps: int
    config: dict[str, Any]
    task: str = "classification"
    eval_steps: list[int] = field(default_factory=list)
    eval_loss: list[float | None] = field(default_factory=list)
    eval_accuracy: list[float | None] = field(default_factory=list)
    train_loss: list[float | None] = field(default_factory=list)
    lr_history: list[float] = field(default_factory=list)
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
    adapter: str | None = None
    model_location: str | None = None
    data_fingerprint: str | None = None
    labels: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(self)


_RESUMED_FIELDS = ("steps", "eval_steps", "eval_loss", "eval_accuracy", "train_loss",
                   "lr_history", "tokens", "train_s", "wall_s", "final_eval_loss", "accuracy",
                   "perplexity")


class SignalStop:
    """Turn SIGINT/SIGTERM into a flag the loop checks after each step (a second SIGINT
    interrupts at once). Installed only in the main thread."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.signum = signum

    def __enter__(self) -> SignalStop:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {}
    for name in ("scalelab", "torch", "transformers", "peft", "accelerate"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:  # pragma: no cover
            out[name] = "not installed"
    return out


def _bar(total: int, done: int, name: str):
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


class FinetuneRun:
    """A fine-tuning run of ``config`` writing into ``out_dir`` (``None``: no files).

    Args:
        config: the run's :class:`FinetuneConfig` (``None`` fields get the task's defaults).
        out_dir: where ``run.json``, ``config.yaml``, ``checkpoint/`` and ``adapter/`` go.
        variant: the name recorded in the result (default: the method).
        resume: continue from ``out_dir/checkpoint`` when there is one.
        overwrite: start over even if ``out_dir`` holds a checkpoint (it is replaced).
        quiet: no progress bar and no progress messages (a divergence or an interruption is
            still reported).
        accelerator: an ``accelerate.Accelerator`` to reuse (its precision must match).
        inputs: ``(data, source)`` from :func:`.setup.check_inputs`, when already checked.
        log: where messages go (default: stderr, main process only).
        save_adapter: write ``out_dir/adapter/`` at the end (PEFT format).

    Everything that can fail without loading a model (inputs, the output folder, the
    checkpoint's configuration and data) is checked here, in the constructor.
    """

    def __init__(self, config: FinetuneConfig, out_dir: str | Path | None = None, *,
                 variant: str | None = None, resume: bool = False, overwrite: bool = False,
                 quiet: bool = False, accelerator=None, inputs=None,
                 log: Callable[[str], None] | None = None, save_adapter: bool = True) -> None:
        self.data, self.source = inputs if inputs is not None else check_inputs(config)
        self.task = self.data.task
        cfg = config.resolved(self.task)
        self.config = cfg.replace(precision=resolve_precision(cfg))
        self.out = Path(out_dir) if out_dir is not None else None
        self.quiet, self.log, self.save_adapter = quiet, log, save_adapter
        self.fingerprint = self.data.fingerprint()
        self.model_location = self.source.location()
        self.meta = None
        if self.out is not None:
            check_out_dir("out", self.out)
            meta = None if overwrite else read_meta(self.out)  # raises if unreadable
            if meta is not None and not resume:
                raise ValueError(
                    f"{str(self.out)!r} holds a checkpoint of an earlier run (step "
                    f"{meta['result'].get('steps')}): pass --resume to continue it or "
                    "--overwrite to start over")
            self.meta = meta
        check_resume(self.config, self.meta, fingerprint=self.fingerprint,
                     model_location=self.model_location)
        self.resume_requested = resume
        self.acc = accelerator if accelerator is not None else make_accelerator()
        self.nproc, self.rank = self.acc.num_processes, self.acc.process_index
        self.main = self.acc.is_main_process
        per_micro = self.config.grad_accum * self.nproc
        if self.config.batch_size % per_micro:
            raise ValueError(f"batch_size {self.config.batch_size} must be divisible by "
                             f"grad_accum x processes ({self.config.grad_accum} x {self.nproc})")
        self.total = self.config.total_steps(len(self.data.train))
        c = self.config
        self.result = RunResult(
            variant=variant or c.method, method=c.method, init=c.init, lr=float(c.lr),
            ratio=c.effective_ratio, head_lr=c.head_lr, steps=0, total_steps=self.total,
            config=c.to_dict(), task=self.task, model_location=self.model_location,
            data_fingerprint=self.fingerprint, labels=list(self.data.labels),
            versions=_versions())
        self.stop_signal: int | None = None
        self.last_checkpoint: int | None = None
        self._bar = None
        if overwrite and self.out is not None and self.out.is_dir():  # all checks passed
            if self.main:
                clear_outputs(self.out)
            self.acc.wait_for_everyone()

    # Messages ----------------------------------------------------------------------------
    def say(self, msg: str) -> None:
        if not self.main or self.quiet:
            return
        if self._bar is not None and self.log is None:  # print above the live progress bar
            self._bar.console.print(msg, markup=False, highlight=False)
        else:
            (self.log or _stderr)(msg)

    @property
    def done(self) -> bool:
        return self.result.steps >= self.total or self.result.status != "ok"

    def request_stop(self, signum: int = signal.SIGINT) -> None:
        """Ask the run to checkpoint and stop after the current step (what SIGINT does)."""
        self.stop_signal = signum

    # Restore -----------------------------------------------------------------------------
    def restore(self) -> None:
        """Load the model and tokenizer, add adapters, build optimizer and schedule, and load
        the checkpoint when resuming."""
        from ..data.models import load_model

        c = self.config
        seed_everything(c.seed)
        if self.source.gguf_file and self.main:
            self.say("loading SmolLM2 (the first time converts its GGUF file to an fp32 cache, "
                     "~40 s)")
        model, self.tokenizer = load_model(self.source, task=self.task,
                                           num_labels=self.data.num_classes or None)
        self.model = add_adapters(model, c, self.task, labels=self.data.labels)
        on_cuda = self.acc.device.type == "cuda"
        if on_cuda:  # before the optimizer: fused AdamW needs its parameters on the GPU
            self.model.to(self.acc.device)
        self.optimizer = build_optimizer(self.model, c, self.task,
                                         **({"fused": True} if on_cuda else {}))
        if c.compile if c.compile is not None else on_cuda:
            from .fast import compile_regions

            compiled = compile_regions(self.model, dynamic=True)
            self.say(f"compiling {len(compiled)} decoder blocks (regional torch.compile; the "
                     "first steps include the compile time)")
        self.scheduler = build_scheduler(self.optimizer, c, self.total)
        self.encoder = make_encoder(self.task, self.tokenizer, c.max_length,
                                    chat_template=c.chat_template, system_prompt=c.system_prompt,
                                    packing=c.packing)
        self._warn_truncation()
        if c.packing:
            was = self.model.training
            self.model.eval()
            check_packing(self.model)
            self.model.train(was)
        module = loss_module(self.model, self.task, c.precision)
        self.module, self.optimizer = self.acc.prepare(module, self.optimizer)
        if self.meta is not None:
            meta = load_checkpoint(self.out, model=self.model, optimizer=self.optimizer,
                                   scheduler=self.scheduler, process_index=self.rank)
            for k in _RESUMED_FIELDS:
                setattr(self.result, k, meta["result"][k])
            self.last_checkpoint = self.result.steps
            self.say(f"resumed from {self.out / CHECKPOINT_DIR} at step {self.result.steps}/"
                     f"{self.total}")
        elif self.resume_requested and self.out is not None:
            self.say(f"no checkpoint under {self.out}: starting from step 0")
        self.module.train()

    def _warn_truncation(self) -> None:
        c = self.config
        kw = ({} if self.task == "classification" else
              {"chat_template": c.chat_template, "system_prompt": c.system_prompt})
        stats = truncation_stats(self.task, self.tokenizer, self.data.train, c.max_length, **kw)
        if stats["mostly_cut"] >= 0.5 and self.main:
            warnings.warn(f"max_length {c.max_length} cuts {stats['truncated']:.0%} of the "
                          f"training examples ({stats['mostly_cut']:.0%} to less than half their "
                          f"tokens; median length {stats['median_length']:.0f} tokens): raise "
                          "--max-length", ScalelabWarning, stacklevel=3)

    # One step ----------------------------------------------------------------------------
    def step(self) -> float | None:
        """One optimizer step over the global batch of the current step; returns its loss
        (mean over the step's scored items), or ``None`` (and stops the run) if non-finite."""
        import torch

        c, acc = self.config, self.acc
        t0 = time.perf_counter()
        idx = batch_indices(self.result.steps, len(self.data.train), c.batch_size, c.seed)
        batches, tokens = [], 0
        for micro in micro_batches(idx, c.grad_accum):
            examples = [self.data.train[i] for i in shard(micro, self.rank, self.nproc)]
            batch = self.encoder(examples)
            tokens += (int(batch["attention_mask"].sum()) if "attention_mask" in batch else
                       sum(len(self.encoder.rendered(e)[0]) for e in examples))  # packed
            batches.append({k: v.to(acc.device) for k, v in batch.items()})
        counts = torch.tensor([float(sum(scored_count(self.task, b) for b in batches)),
                               float(tokens)], device=acc.device)
        if self.nproc > 1:
            counts = acc.reduce(counts, reduction="sum")
        n_scored, n_tokens = float(counts[0]), int(counts[1])
        total = torch.zeros((), dtype=torch.float64, device=acc.device)
        for j, batch in enumerate(batches):
            sync = j == len(batches) - 1 or self.nproc == 1
            with contextlib.nullcontext() if sync else acc.no_sync(self.module):
                loss_sum, _, _ = self.module(batch)
                acc.backward(loss_sum * (self.nproc / n_scored))
            total += loss_sum.detach().double()
        if self.nproc > 1:
            total = acc.reduce(total, reduction="sum")
        loss_value = float(total) / n_scored
        if not math.isfinite(loss_value):
            self.optimizer.zero_grad(set_to_none=True)
            self.result.status = "diverged"
            self.result.train_loss.append(None)
            kept = (f"; the last good checkpoint (step {self.last_checkpoint}) is in "
                    f"{self.out / CHECKPOINT_DIR}") if self.last_checkpoint is not None else ""
            self.result.message = (f"training loss became {loss_value} at step "
                                   f"{self.result.steps + 1}: stopped{kept}")
            return None
        self.result.lr_history.append(float(self.optimizer.param_groups[0]["lr"]))
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        r = self.result
        r.steps += 1
        dt = time.perf_counter() - t0
        r.tokens += n_tokens
        r.train_s += dt
        r.wall_s += dt
        r.train_loss.append(loss_value)
        r.tokens_per_s = r.tokens / max(r.train_s, 1e-9)
        if self._bar is not None:
            self._bar.update(self._bar.task_ids[0], completed=r.steps, loss=f"{loss_value:.4f}",
                             tps=f"{r.tokens_per_s:,.0f}")
        return loss_value

    # Evaluation --------------------------------------------------------------------------
    def evaluate(self) -> bool:
        """Evaluate on the held-out split; record it; False if the loss is not finite."""
        t1 = time.perf_counter()
        loss, acc_, _ = evaluate(self.module, self.task, self.encoder, self.data.eval,
                                 device=self.acc.device, process_index=self.rank,
                                 num_processes=self.nproc, reduce=self.acc.reduce,
                                 batch_size=64 if self.task == "classification" else 16)
        r = self.result
        finite = math.isfinite(loss)
        r.eval_steps.append(r.steps)
        r.eval_loss.append(loss if finite else None)
        r.eval_accuracy.append(acc_)
        r.final_eval_loss, r.accuracy = (loss if finite else None), acc_
        if self.task == "causal" and finite:
            r.perplexity = math.exp(min(loss, 700.0))
        extra = f"  accuracy {acc_:.3f}" if acc_ is not None else (
            f"  perplexity {r.perplexity:.2f}" if r.perplexity else "")
        self.say(f"[{r.variant}] step {r.steps}/{self.total}  eval loss {loss:.4f}{extra}")
        r.wall_s += time.perf_counter() - t1
        if not finite:
            r.status = "diverged"
            r.message = f"eval loss became non-finite at step {r.steps}: stopped"
        return finite

    # Checkpoint --------------------------------------------------------------------------
    def checkpoint(self) -> None:
        """Save model, optimizer, schedule, RNG and the metrics so far (all processes call)."""
        if self.out is None:
            return
        meta = {"config": self.config.to_dict(), "result": self.result.to_dict(),
                "data_fingerprint": self.fingerprint, "model_location": self.model_location,
                "num_processes": self.nproc}
        save_checkpoint(self.out, model=self.model, optimizer=self.optimizer,
                        scheduler=self.scheduler, meta=meta, process_index=self.rank,
                        is_main=self.main, wait=self.acc.wait_for_everyone)
        self.last_checkpoint = self.result.steps

    # The loop ----------------------------------------------------------------------------
    def train(self) -> None:
        """Step until the total, evaluating and checkpointing on schedule; a SIGINT/SIGTERM
        (or :meth:`request_stop`) checkpoints and stops after the current step."""
        import torch

        c, r = self.config, self.result
        every_ckpt = c.checkpoint_every or c.eval_every
        if self.main and not self.quiet and progress_enabled():
            self._bar = _bar(self.total, r.steps, r.variant)
        try:
            with SignalStop() as stop:
                while not self.done:
                    if self.step() is None:
                        break
                    if r.steps % c.eval_every == 0 or r.steps == self.total:
                        if not self.evaluate():
                            break
                    signum = self.stop_signal or stop.signum
                    interrupted = signum is not None
                    if self.nproc > 1:  # every process stops at the same step
                        flag = torch.tensor([float(interrupted)], device=self.acc.device)
                        interrupted = bool(self.acc.reduce(flag, reduction="sum") > 0)
                    if interrupted or r.steps % every_ckpt == 0 or r.steps == self.total:
                        self.checkpoint()
                    if interrupted:
                        r.status, r.signal = "interrupted", signum or signal.SIGINT
                        name = signal.Signals(r.signal).name
                        r.message = (f"{name} at step {r.steps}/{self.total}: checkpoint saved "
                                     f"in {self.out / CHECKPOINT_DIR}; continue with --resume"
                                     if self.out is not None else f"{name}: stopped")
                        break
        finally:
            if self._bar is not None:
                self._bar.stop()
                self._bar = None

    # Finish ------------------------------------------------------------------------------
    def finish(self) -> RunResult:
        """Final evaluation if none ran yet, the adapter (PEFT format, with tokenizer and
        labels), ``run.json`` and ``config.yaml``; returns the result."""
        r = self.result
        if r.status == "ok" and r.final_eval_loss is None and r.steps == self.total:
            self.evaluate()  # a resume of a finished run with no evaluation yet
        if r.message and self.main:  # divergence and interruption are reported even when quiet
            (self.log or _stderr)(r.message)
        if self.out is not None and r.status == "ok" and r.steps == self.total and \
                self.save_adapter:
            from .export import save_adapter

            folder = save_adapter(self.model, self.tokenizer, self.out / ADAPTER_DIR,
                                  source=self.source, is_main=self.main)
            r.adapter = str(folder.resolve())
        self.acc.wait_for_everyone()
        if self.out is not None and self.main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / RUN_FILE).write_text(json.dumps(r.to_dict(), indent=1) + "\n")
            (self.out / CONFIG_FILE).write_text(run_config_yaml(self.config))
        self.acc.free_memory()
        return r

    def run(self) -> RunResult:
        """:meth:`restore`, :meth:`train`, :meth:`finish`."""
        self.restore()
        self.train()
        return self.finish()


def run_config_yaml(config: FinetuneConfig, extra: dict[str, Any] | None = None) -> str:
    """The resolved ``config.yaml`` of a run: ``scalelab finetune --config FILE`` reruns it."""
    values = config.to_dict()
    values.update(extra or {})
    return config_yaml(values, "scalelab finetune configuration (resolved values).\n"
                              "Rerun: scalelab finetune --config THIS_FILE --out NEW_FOLDER")


def clear_outputs(out: Path) -> None:
    """Remove what a run writes (``--overwrite``): checkpoint, adapter, merged model,
    run.json, config.yaml."""
    for name in (CHECKPOINT_DIR, CHECKPOINT_DIR + ".tmp", CHECKPOINT_DIR + ".old", ADAPTER_DIR,
                 "merged"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (RUN_FILE, CONFIG_FILE):
        (out / name).unlink(missing_ok=True)
