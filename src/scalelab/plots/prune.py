"""Pictures of pruning at initialisation: test accuracy against sparsity per configuration."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from .common import plt, savefig

_TITLES = {"mlp": "deep MLP", "resnet": "residual MLP"}


def _mean_rows(rows: Sequence[dict]) -> list[dict]:
    """One row per (config, sparsity): mean accuracy over seeds (a diverged run counts as
    missing), its sd when there are several seeds, and whether any seed collapsed a layer."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["config"], r["sparsity"]), []).append(r)
    out = []
    for (config, sp), rs in groups.items():
        accs = [r["accuracy"] for r in rs if r["accuracy"] is not None]
        mean = sum(accs) / len(accs) if accs else float("nan")
        sd = (math.sqrt(sum((a - mean) ** 2 for a in accs) / (len(accs) - 1))
              if len(accs) > 1 else None)
        out.append({"config": config, "sparsity": sp, "method": rs[0]["method"],
                    "accuracy": mean, "sd": sd, "n": len(rs),
                    "collapsed": any(r["collapsed"] for r in rs)})
    return out


def plot_pruning_accuracy(records: Sequence[dict], path: str | Path, *,
                          chance: float | None = None) -> Path:
    """Test accuracy against sparsity, one line per configuration, one panel per family.

    Args:
        records: dicts with ``family``, ``config``, ``method``, ``sparsity``, ``accuracy``
            (None if diverged) and ``collapsed`` (list of collapsed layers), as the
            ``pruning-at-init`` reproduction returns; ``method == "dense"`` rows are drawn
            as horizontal references. Several records of one (config, sparsity) — one per
            seed — are averaged, with the sd over seeds as error bars and the seed count in
            the legend.
        chance: accuracy of guessing, drawn dotted.

    Pruned points where a layer collapsed (on any seed) are marked with a red cross.
    """
    families = list(dict.fromkeys(r["family"] for r in records))
    if not families:
        raise ValueError("records must hold at least one record, got none")
    fig, axes = plt.subplots(1, len(families), figsize=(7.5 * len(families), 4), squeeze=False)
    for ax, fam in zip(axes[0], families, strict=True):
        rows = _mean_rows([r for r in records if r["family"] == fam])
        sparsities = sorted({r["sparsity"] for r in rows if r["method"] != "dense"})
        pos = {s: i for i, s in enumerate(sparsities)}
        labels = [c for c in dict.fromkeys(r["config"] for r in rows)]
        n_pruned = sum(1 for c in labels if any(r["config"] == c and r["method"] != "dense"
                                                 for r in rows))
        k = 0
        for label in labels:
            pts = sorted((r for r in rows if r["config"] == label), key=lambda r: r["sparsity"])
            accs = [r["accuracy"] for r in pts]
            seeds = max(r["n"] for r in pts)
            name = f"{label} ({seeds} seeds)" if seeds > 1 else label
            if pts[0]["method"] == "dense":
                ax.axhline(accs[0], ls="--", lw=1, color="gray" if "EOC" not in label and
                           "Stable" not in label else "k", label=name)
                continue
            # a small sideways offset per configuration, so lines at chance do not hide
            xs = [pos[r["sparsity"]] + 0.04 * (k - (n_pruned - 1) / 2) for r in pts]
            k += 1
            if all(r["sd"] is not None for r in pts):
                ax.errorbar(xs, accs, yerr=[r["sd"] for r in pts], fmt="o-", capsize=3,
                            label=name + ", sd")
            else:
                ax.plot(xs, accs, "o-", label=name)
            bad = [(x, a) for x, a, r in zip(xs, accs, pts, strict=True) if r["collapsed"]]
            if bad:
                ax.plot([b[0] for b in bad], [b[1] for b in bad], "x", color="red", ms=10,
                        mew=2, zorder=5)
        if chance is not None:
            ax.axhline(chance, ls=":", color="gray", lw=1, label="chance")
        ax.plot([], [], "x", color="red", mew=2, label="layer collapse")
        ax.set_xticks(range(len(sparsities)), [f"{s:.0%}" for s in sparsities])
        ax.set_xlabel("sparsity (fraction of weights pruned at init)")
        ax.set_ylabel("test accuracy")
        ax.set_ylim(0, 1)
        ax.set_title(_TITLES.get(fam, fam))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return savefig(fig, path)
