"""Pictures of fine-tuning runs: eval loss against step for each ``--compare`` variant."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from .common import savefig

SMOOTH = 10  # training-loss running-mean window (steps)


def plot_finetune_curves(report: dict[str, Any], path: str | Path,
                         title: str | None = None) -> Path:
    """Eval loss (markers) and training loss (faint, 10-step running mean) per variant, with
    the target line.

    ``report`` is the ``report.json`` document of ``scalelab.train.compare`` (``runs`` with
    ``variant``, ``eval_steps``, ``eval_loss`` and optionally ``train_loss``; ``target_loss``).
    Non-finite losses (``None``) are left out; a diverged run is marked in its legend.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, run in enumerate(report["runs"]):
        color = f"C{i}"
        label = run["variant"] + (" (diverged)" if run.get("status") == "diverged" else "")
        train = run.get("train_loss") or []
        pts = [(s + 1, v) for s, v in enumerate(train) if v is not None]
        if len(pts) >= SMOOTH:  # a running mean: single batches are too noisy to read
            vals = np.convolve([v for _, v in pts], np.ones(SMOOTH) / SMOOTH, mode="valid")
            pts = list(zip([s for s, _ in pts][SMOOTH - 1:], vals, strict=True))
        if pts:
            ax.plot(*zip(*pts, strict=True), color=color, alpha=0.35, lw=0.8)
        ev = [(s, v) for s, v in zip(run["eval_steps"], run["eval_loss"], strict=True)
              if v is not None]
        if ev:
            ax.plot(*zip(*ev, strict=True), color=color, marker="o", ms=3, label=label)
        else:
            ax.plot([], [], color=color, label=label)
    target = report.get("target_loss")
    if target is not None:
        ax.axhline(target, color="gray", ls="--", lw=1,
                   label=f"target {target:.3f} (best of {report['runs'][0]['variant']})")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (eval: markers; train, 10-step mean: faint)")
    ax.set_title(title or "fine-tuning: eval loss per variant")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return savefig(fig, path)
