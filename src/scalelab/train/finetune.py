"""``finetune``: LoRA / LoRA+ fine-tuning of a pretrained model on Hugging Face Accelerate.

One loop for one process, DDP or FSDP (``torchrun`` / ``accelerate launch`` decide; the
library writes no process-group code). It evaluates every ``eval_every`` steps, checkpoints
(safetensors + ``weights_only`` state) every ``checkpoint_every`` steps and on
SIGINT/SIGTERM, resumes exactly, stops with a clear message on a non-finite loss (keeping
the last good checkpoint), and ends with the adapter in PEFT's format. The run itself is
:class:`scalelab.train.run.FinetuneRun`. LoRA+ is arXiv 2402.12354; Init[A]/Init[B] arXiv
2406.08447.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .config import FinetuneConfig
from .run import RUN_FILE as RUN_FILE
from .run import FinetuneRun, RunResult

__all__ = ["RUN_FILE", "RunResult", "finetune"]


def finetune(config: FinetuneConfig, out_dir: str | Path | None = None, *,
             variant: str | None = None, resume: bool = False, overwrite: bool = False,
             quiet: bool = False, accelerator=None, inputs=None,
             log: Callable[[str], None] | None = None) -> RunResult:
    """Fine-tune ``config.model`` on ``config.dataset`` with LoRA or LoRA+.

    Args:
        config: the run's :class:`FinetuneConfig` (``None`` fields: the task's defaults).
        out_dir: where ``run.json``, ``config.yaml``, ``checkpoint/`` and ``adapter/`` go
            (``None``: no files, no checkpoints).
        variant: the name recorded in the result (default: the method).
        resume: continue from ``out_dir/checkpoint`` when there is one (same resolved
            configuration, same data; see :mod:`scalelab.train.run`).
        overwrite: start over even if ``out_dir`` holds an earlier run's checkpoint.
        quiet: no progress bar and no progress messages (a divergence or an interruption is
            still reported).
        accelerator: an ``accelerate.Accelerator`` to reuse (default: a new one).
        inputs: ``(data, source)`` from :func:`.setup.check_inputs`, when already checked.
        log: where messages go (default: stderr, main process only).

    Returns:
        A :class:`RunResult`; also written to ``out_dir/run.json`` by the main process.
    """
    return FinetuneRun(config, out_dir, variant=variant, resume=resume, overwrite=overwrite,
                       quiet=quiet, accelerator=accelerator, inputs=inputs, log=log).run()
