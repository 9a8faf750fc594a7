"""Pictures of stochastic pruning masks and PAC-Bayes certificates (arXiv 2110.11804)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .common import plt, savefig

_STAGES = (("start_error", "start mask", "--", "o"),
           ("stochastic_error", "stochastic (fine-tuned)", ":", "s"),
           ("threshold_error", "thresholded (fine-tuned)", "-", "^"))


def plot_stochastic_pruning(records: Sequence[dict], path: str | Path, *,
                            dense_errors: Sequence[float] | None = None) -> Path:
    """Test error against sparsity, one panel per start method: the start mask, the
    fine-tuned stochastic network and its thresholded mask, mean ± sd over seeds.

    Args:
        records: dicts with ``start``, ``sparsity``, ``seed``, ``start_error``,
            ``stochastic_error`` and ``threshold_error`` (the ``stochastic-pruning``
            reproduction's records).
        dense_errors: the dense networks' test errors (one per seed), drawn as a band.
    """
    starts = list(dict.fromkeys(r["start"] for r in records))
    if not starts:
        raise ValueError("records must hold at least one record, got none")
    fig, axes = plt.subplots(1, len(starts), figsize=(4.6 * len(starts), 3.8), squeeze=False,
                             sharey=True)
    for ax, start in zip(axes[0], starts, strict=True):
        rows = [r for r in records if r["start"] == start]
        sparsities = sorted({r["sparsity"] for r in rows})
        xs = np.arange(len(sparsities))
        for key, label, ls, marker in _STAGES:
            vals = [[r[key] for r in rows if r["sparsity"] == s] for s in sparsities]
            mean = [float(np.mean(v)) for v in vals]
            sd = [float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for v in vals]
            ax.errorbar(xs, mean, yerr=sd, ls=ls, marker=marker, capsize=3, label=label)
        if dense_errors:
            m = float(np.mean(dense_errors))
            ax.axhline(m, color="gray", lw=1, ls="-.", label="dense")
        ax.set_xticks(xs, [f"{s:.0%}" for s in sparsities])
        ax.set_xlabel("sparsity (fraction of weights pruned)")
        ax.set_title(f"start: {start}")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("test error (mean ± sd over seeds)")
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return savefig(fig, path)


def plot_bound_vs_test(rows: Sequence[dict], path: str | Path) -> Path:
    """Certified error bound against the measured test error, one group per prior setting.

    Args:
        rows: dicts with ``setting`` (a label), ``seed``, ``test_error``,
            ``empirical_error`` (on the bound sample), ``certified_error`` (the PAC-Bayes
            certificate), ``kl`` and optionally ``prior_certified_error`` (the certificate
            of the prior itself, drawn as a black tick) — the ``pac-bayes-bound``
            reproduction's rows.

    Bars: mean over seeds; dots: each seed. The dotted line at 0.9 is chance for 10 classes.
    """
    settings = list(dict.fromkeys(r["setting"] for r in rows))
    if not settings:
        raise ValueError("rows must hold at least one row, got none")
    fig, ax = plt.subplots(figsize=(2.6 * len(settings) + 3.0, 4.0))
    keys = (("test_error", "test error of the posterior"),
            ("empirical_error", "empirical error (bound sample)"),
            ("certified_error", "certified error bound"))
    width = 0.26
    for j, (key, label) in enumerate(keys):
        for i, setting in enumerate(settings):
            vals = [r[key] for r in rows if r["setting"] == setting]
            x = i + (j - 1) * width
            ax.bar(x, float(np.mean(vals)), width=width * 0.95, color=f"C{j}",
                   label=label if i == 0 else None, alpha=0.85)
            ax.plot([x] * len(vals), vals, "k.", ms=4)
    marked = False
    for i, setting in enumerate(settings):
        kl = float(np.mean([r["kl"] for r in rows if r["setting"] == setting]))
        ax.text(i, 1.02, f"KL {kl:.3g} nats", ha="center", fontsize=8)
        prior = [r["prior_certified_error"] for r in rows
                 if r["setting"] == setting and r.get("prior_certified_error") is not None]
        if prior:
            x = i + width
            ax.plot([x - width / 2, x + width / 2], [float(np.mean(prior))] * 2, "k-", lw=2,
                    label=None if marked else "certificate of the prior alone")
            marked = True
    ax.axhline(0.9, ls=":", color="gray", lw=1, label="chance (0.9)")
    ax.set_xticks(range(len(settings)), [st.replace(", ", ",\n") for st in settings],
                  fontsize=8)
    ax.set_ylabel("0-1 error")
    ax.set_ylim(0, 1.1)
    ax.set_title("PAC-Bayes certificates of bound-trained stochastic networks")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return savefig(fig, path)
