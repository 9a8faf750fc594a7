"""The ``loraplus-width`` protocol as data, and the runner that carries it out from its cache.

A :class:`WidthProtocol` fixes widths, pre-training, fine-tuning and the grids;
:func:`run_protocol` pre-trains every width (cached under ``pretrain_cache``), runs every
(width, configuration, seed) not yet in ``runs_dir`` (one JSON file each), optionally in
several worker processes, and returns every record. Stopping it loses at most the runs in
flight, so a long protocol can be finished in parts (docs/lora.md, "LoRA+ across width").

The LoRA+ grid is in ``(eta, ratio)``: ``lr_A = eta / sqrt(ratio)``, ``lr_B = eta * sqrt(ratio)``,
so ``eta = sqrt(lr_A * lr_B)`` is a LoRA-like lr and ``ratio = 1`` would be LoRA at ``eta``
(interpretation: it centres each LoRA+ point on a LoRA lr; under Adam the loss of a LoRA
layer is nearly flat along ``lr_A * lr_B = const`` apart from A's random init, so the
ratio is the direction that is left to tune).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import check_int
from ._width_models import PretrainSpec, pretrained_encoder, pretraining_corpus
from ._width_runs import RunSpec, cached_run, read_cached


@dataclass(frozen=True)
class WidthProtocol:
    """Widths, pre-training, fine-tuning, grids and seeds of one ``loraplus-width`` run."""

    widths: tuple[int, ...]
    depth: int
    head_dim: int
    vocab_size: int
    pretrain_seq_len: int
    pretrain_batch: int
    pretrain_steps: int
    pretrain_lr: float
    corpus_limit: int | None
    steps: int
    batch_size: int
    max_length: int
    eval_size: int
    eval_every: int
    rank: int
    alpha: float
    head_lr: float
    schedule: str
    warmup: float
    lora_lrs: tuple[float, ...]
    plus_etas: tuple[float, ...]
    ratios: tuple[float, ...]
    seeds: tuple[int, ...]
    pretrain_seed: int = 0

    def __post_init__(self) -> None:
        if len(self.widths) < 2 or list(self.widths) != sorted(set(self.widths)):
            raise ValueError(f"widths must be >= 2 increasing values, got {self.widths}")
        if not self.lora_lrs or not self.plus_etas or not self.ratios:
            raise ValueError("lora_lrs, plus_etas and ratios must be non-empty")
        if any(r <= 1.0 for r in self.ratios):
            raise ValueError(f"ratios must be > 1 (ratio 1 is LoRA), got {self.ratios}")
        if len(self.seeds) < 2:
            raise ValueError(f"seeds must hold at least 2 seeds (one is held out), got "
                             f"{self.seeds}")
        check_int("pretrain_steps", self.pretrain_steps)
        for spec in self.run_specs():  # every run spec validates itself
            del spec

    def pretrain_spec(self, width: int) -> PretrainSpec:
        return PretrainSpec(width=width, depth=self.depth, head_dim=self.head_dim,
                            vocab_size=self.vocab_size, seq_len=self.pretrain_seq_len,
                            batch_size=self.pretrain_batch, steps=self.pretrain_steps,
                            lr=self.pretrain_lr, corpus_limit=self.corpus_limit,
                            seed=self.pretrain_seed)

    def configs(self) -> list[tuple[str, float, float]]:
        """``(method, lr_A, ratio)`` of the grid: LoRA lrs, then LoRA+ (eta, ratio) pairs."""
        lora = [("lora", lr, 1.0) for lr in self.lora_lrs]
        plus = [("loraplus", eta / math.sqrt(r), r) for eta in self.plus_etas for r in self.ratios]
        return lora + plus

    def run_specs(self, width: int | None = None) -> list[RunSpec]:
        """Every run of the protocol (or of one width), widest first."""
        widths = [width] if width is not None else sorted(self.widths, reverse=True)
        shared = dict(head_lr=self.head_lr, steps=self.steps, batch_size=self.batch_size,
                      max_length=self.max_length, eval_size=self.eval_size,
                      eval_every=self.eval_every, rank=self.rank, alpha=self.alpha,
                      schedule=self.schedule, warmup=self.warmup)
        return [RunSpec(pretrain=self.pretrain_spec(w), method=m, lr=lr, ratio=r, seed=s,
                        **shared)
                for w in widths for (m, lr, r) in self.configs() for s in self.seeds]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _pretrain_job(spec: PretrainSpec, cache: Path) -> dict[str, Any]:
    return pretrained_encoder(spec, cache)[1]


def _run_job(spec: RunSpec, runs_dir: Path, cache: Path) -> dict[str, Any]:
    return cached_run(spec, runs_dir, cache)


def run_protocol(protocol: WidthProtocol, runs_dir: Path, pretrain_cache: Path, *,
                 workers: int = 1, log: Callable[[str], None] | None = None,
                 progress: bool | None = None) -> dict[str, Any]:
    """Carry out ``protocol``: ``{"pretrain": {width: meta}, "runs": [record, ...]}``.

    Args:
        protocol: what to run.
        runs_dir: the per-run JSON cache (finished runs are read, not rerun).
        pretrain_cache: where the corpus and the pre-trained encoders are cached.
        workers: processes (1: in this process; more: spawned workers, one torch thread each).
        log: called with one line per finished job (``None``: silent).
        progress: a progress bar on stderr (``None``: when stderr is a terminal).
    """
    from .._progress import track

    workers = check_int("workers", workers)
    runs_dir, pretrain_cache = Path(runs_dir), Path(pretrain_cache)
    pretraining_corpus(protocol.pretrain_spec(protocol.widths[0]), pretrain_cache)
    widths = sorted(protocol.widths)  # narrowest first: complete widths come early
    total = len(widths) + len(protocol.run_specs())
    disable = None if progress is None else not progress
    pretrain: dict[int, dict[str, Any]] = {}
    runs: list[dict[str, Any]] = []

    def note(kind: str, doc: dict[str, Any]) -> None:
        if kind == "pretrain":
            pretrain[doc["spec"]["width"]] = doc
            if log:
                log(f"pretrained w{doc['spec']['width']}: held-out MLM loss "
                    f"{doc['heldout_mlm_loss']:.3f}")
        else:
            runs.append(doc)
            if log and not doc.get("cached"):
                losses = [v for v in doc["eval_loss"] if v is not None]
                best = f"{min(losses):.4f}" if losses else "-"
                log(f"ran {doc['label']}: best eval loss {best} ({doc['status']}), "
                    f"{doc['wall_s']:.0f} s")

    if workers == 1:
        def jobs():
            for w in widths:
                note("pretrain", _pretrain_job(protocol.pretrain_spec(w), pretrain_cache))
                yield
                for spec in protocol.run_specs(w):
                    note("run", _run_job(spec, runs_dir, pretrain_cache))
                    yield
        for _ in track(jobs(), "loraplus-width", total=total, disable=disable):
            pass
    else:
        for _ in track(_parallel(protocol, widths, runs_dir, pretrain_cache, workers, note),
                       "loraplus-width", total=total, disable=disable):
            pass
    runs.sort(key=lambda r: (r["spec"]["pretrain"]["width"], r["label"]))
    return {"pretrain": {w: pretrain[w] for w in sorted(pretrain)}, "runs": runs}


def _parallel(protocol: WidthProtocol, widths: list[int], runs_dir: Path, cache: Path,
              workers: int, note: Callable[[str, dict[str, Any]], None]):
    """Run the jobs in ``workers`` spawned processes; yield once per finished job.

    Pre-training jobs go first (narrowest first); a width's runs are queued when its
    encoder is ready, cached runs are read here without a worker.
    """
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"),
                             initializer=_worker_init, initargs=(1,)) as pool:
        pending = {pool.submit(_pretrain_job, protocol.pretrain_spec(w), cache): ("pretrain", w)
                   for w in widths}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in done:
                kind, width = pending.pop(fut)
                note(kind, fut.result())
                yield
                if kind != "pretrain":
                    continue
                for spec in protocol.run_specs(width):
                    doc = read_cached(spec, runs_dir)
                    if doc is not None:
                        note("run", doc)
                        yield
                    else:
                        pending[pool.submit(_run_job, spec, runs_dir, cache)] = ("run", width)


def cached_records(protocol: WidthProtocol, runs_dir: Path
                   ) -> tuple[list[dict[str, Any]], list[RunSpec]]:
    """``(records found in runs_dir, specs still to run)`` of ``protocol``; runs nothing."""
    done, missing = [], []
    for spec in protocol.run_specs():
        doc = read_cached(spec, Path(runs_dir))
        (done.append(doc) if doc is not None else missing.append(spec))
    return done, missing


def default_workers() -> int:
    """2 worker processes where there are at least 2 cores, else 1."""
    return 2 if (os.cpu_count() or 1) >= 2 else 1
