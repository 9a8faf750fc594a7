"""Pictures of the data-centric methods: data pruning, model collapse, LOOD."""

from __future__ import annotations

from pathlib import Path

from matplotlib.ticker import NullFormatter

from .common import plt, savefig

_STYLE = {"random": ("tab:gray", "o"), "el2n": ("tab:red", "s"),
          "calibrated": ("tab:blue", "^")}


def plot_data_pruning_accuracy(records: list[dict], path: str | Path, *, high: float = 0.3,
                               crossover: float | None = None) -> Path:
    """Test accuracy vs keep fraction, one line per selection strategy.

    ``records``: dicts with ``keep``, ``strategy``, ``accuracy_mean`` and ``accuracy_std``
    (the sd over seeds; None or absent with one seed, and then no error bars are drawn),
    optionally ``n`` (the number of seeds), as ``experiments.data_pruning.curve`` returns.
    ``crossover``: a keep fraction drawn as a dashed vertical line (where score-based pruning
    stops losing to random).
    """
    fig, ax = plt.subplots(figsize=(6, 4))
    n_seeds = max((r.get("n") or 1) for r in records) if records else 1
    for strategy in dict.fromkeys(r["strategy"] for r in records):
        rs = sorted((r for r in records if r["strategy"] == strategy), key=lambda r: r["keep"])
        color, marker = _STYLE.get(strategy, (None, "o"))
        xs, ys = [r["keep"] for r in rs], [r["accuracy_mean"] for r in rs]
        sds = [r.get("accuracy_std") for r in rs]
        if n_seeds > 1 and all(sd is not None for sd in sds):
            ax.errorbar(xs, ys, yerr=sds, label=strategy, color=color, marker=marker, capsize=3)
        else:
            ax.plot(xs, ys, label=strategy, color=color, marker=marker)
    ax.axvspan(0, high, color="tab:orange", alpha=0.08, label=f"keep <= {high:g}")
    if crossover is not None:
        ax.axvline(crossover, color="k", ls="--", lw=1, label=f"crossover ~ {crossover:.2g}")
    ax.set_xlabel("fraction of the training set kept")
    ax.set_ylabel("test accuracy" + (f" (mean of {n_seeds} seeds, bars: sd)" if n_seeds > 1
                                     else " (one seed)"))
    ax.set_title("Data pruning: random vs score-based vs calibrated")
    ax.grid(alpha=0.3)
    ax.legend()
    return savefig(fig, path)


def plot_collapse(purity: list[dict], mixing: list[dict], path: str | Path) -> Path:
    """Two panels: E||p^(m)||^2 vs generation (formula lines, simulation markers) per n; and
    E||p^(m) - p0||^2 vs generation per synthetic fraction (simulation, exact curve dashed).

    ``purity``: dicts ``n, generation, formula, simulated, sem``. ``mixing``: dicts
    ``synthetic_fraction, generation, simulated, formula``.
    """
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for i, n in enumerate(dict.fromkeys(r["n"] for r in purity)):
        rs = [r for r in purity if r["n"] == n]
        c = f"C{i}"
        a.plot([r["generation"] for r in rs], [r["formula"] for r in rs], color=c,
               label=f"formula, n={n}")
        a.errorbar([r["generation"] for r in rs], [r["simulated"] for r in rs],
                   yerr=[2 * r["sem"] for r in rs], fmt="o", ms=3, color=c, alpha=0.7)
    a.errorbar([], [], yerr=[], fmt="o", ms=3, color="gray", alpha=0.7,
               label="simulated mean (bars: 2 s.e.)")
    a.set_xlabel("generation m")
    a.set_ylabel("E||p^(m)||^2")
    a.set_title("Fully synthetic: S_m = 1 - (1 - 1/n)^m (1 - S_0)")
    a.grid(alpha=0.3)
    a.legend(fontsize=8)
    for i, lam in enumerate(dict.fromkeys(r["synthetic_fraction"] for r in mixing)):
        # generation 0 is p0 itself (deviation 0): left out of the log-scale panel
        rs = [r for r in mixing if r["synthetic_fraction"] == lam and r["generation"] > 0]
        c = f"C{i}"
        b.plot([r["generation"] for r in rs], [r["simulated"] for r in rs], color=c,
               label=f"synthetic {lam:.0%}")
        b.plot([r["generation"] for r in rs], [r["formula"] for r in rs], color=c, ls="--",
               lw=1)
    b.plot([], [], color="gray", label="simulated (solid)")
    b.plot([], [], color="gray", ls="--", lw=1, label="exact (dashed)")
    b.set_yscale("log")
    b.set_xlabel("generation m")
    b.set_ylabel("E||p^(m) - p0||^2")
    b.set_title("Mixing real data: simulation (solid), exact (dashed)")
    b.grid(alpha=0.3)
    b.legend(fontsize=8)
    return savefig(fig, path)


def plot_text_collapse(records: list[dict], path: str | Path) -> Path:
    """Entropy and surviving vocabulary vs generation for n-gram models re-fit on their own
    samples of a real corpus. ``records``: dicts ``model, real_fraction, generation, entropy,
    support``."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    keys = list(dict.fromkeys((r["model"], r["real_fraction"]) for r in records))
    for i, (model, frac) in enumerate(keys):
        rs = [r for r in records if r["model"] == model and r["real_fraction"] == frac]
        style = dict(color=f"C{i}", ls="-" if model == "unigram" else "--",
                     label=f"{model}, {frac:.0%} real")
        a.plot([r["generation"] for r in rs], [r["entropy"] for r in rs], **style)
        b.plot([r["generation"] for r in rs], [r["support"] for r in rs], **style)
    a.set_ylabel("entropy (bits per token)")
    b.set_ylabel("n-grams with non-zero probability")
    b.set_yscale("log")
    for ax in (a, b):
        ax.set_xlabel("generation")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    a.set_title("Real text (BBC News): re-fit on own samples")
    return savefig(fig, path)


def plot_lood_vs_empirical(records: list[dict], path: str | Path, *, rho: float | None = None,
                           y_key: str = "empirical_auc", x_keys: tuple[str, ...] = ("lood",),
                           rhos: dict[str, list[float]] | None = None,
                           labels: dict[str, str] | None = None) -> Path:
    """Scatter of each training point's score against its empirical distinguishability from
    retrained models, one panel per score (log x where all values are positive).

    ``records``: dicts with ``y_key`` and every key of ``x_keys`` (default just ``lood``).
    ``rho`` (one panel) or ``rhos`` (score -> Spearman correlations, one per seed) go into
    the panel titles; ``labels`` names the scores on the x axes.
    """
    names = {"lood": "LOOD (NNGP, KL at the point itself)", **(labels or {})}
    fig, axes = plt.subplots(1, len(x_keys), figsize=(5.0 * len(x_keys), 4.2), squeeze=False,
                             sharey=True)
    ylabels = {"empirical_auc": "membership AUC from retrained networks",
               "empirical_kl": "KL(out || in) of retrained networks' outputs",
               "loss_gap": "loss gap (models without - with the point)"}
    ys = [r[y_key] for r in records]
    for ax, key in zip(axes[0], x_keys, strict=True):
        xs = [r[key] for r in records]
        ax.scatter(xs, ys, s=12, alpha=0.7)
        if all(v > 0 for v in xs):
            ax.set_xscale("log")
        ax.set_xlabel(names.get(key, key))
        if y_key != "empirical_auc" and all(v > 0 for v in ys):
            ax.set_yscale("log")
        vals = (rhos or {}).get(key) or ([rho] if rho is not None and len(x_keys) == 1 else [])
        title = names.get(key, key).split(" (")[0] if len(x_keys) > 1 else \
            "LOOD vs empirical distinguishability"
        if vals:
            title += "\nSpearman " + ", ".join(f"{v:.2f}" for v in vals) + (
                " (per seed)" if len(vals) > 1 else "")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(ylabels.get(y_key, y_key))
    return savefig(fig, path)


_LIPRUNE_STYLE = {"random": ("tab:gray", "o", "-"), "el2n": ("tab:red", "s", "-"),
                  "liprune": ("tab:green", "^", "-"),
                  "liprune-importance": ("tab:green", "v", ":"),
                  "liprune-global": ("tab:olive", "D", "--")}
_PROBLEM_TITLES = {"convex": "(a) convex: logistic regression", "deep": "(b) deep: ReLU MLP"}


def plot_liprune_accuracy(records: list[dict], path: str | Path, *,
                          full: dict[str, float] | None = None) -> Path:
    """Test accuracy vs keep fraction per selection strategy, one panel per problem.

    ``records``: dicts with ``problem``, ``keep``, ``strategy``, ``accuracy_mean``,
    ``accuracy_std`` (``experiments.liprune_convexity.curves``). ``full``: accuracy with all
    the data per problem (a dashed line).
    """
    problems = list(dict.fromkeys(r["problem"] for r in records))
    fig, axes = plt.subplots(1, len(problems), figsize=(5.5 * len(problems), 4), squeeze=False)
    for ax, problem in zip(axes[0], problems, strict=True):
        rs = [r for r in records if r["problem"] == problem]
        for strategy in dict.fromkeys(r["strategy"] for r in rs):
            pts = sorted((r for r in rs if r["strategy"] == strategy), key=lambda r: r["keep"])
            color, marker, ls = _LIPRUNE_STYLE.get(strategy, (None, "o", "-"))
            ax.errorbar([r["keep"] for r in pts], [r["accuracy_mean"] for r in pts],
                        yerr=[r.get("accuracy_std", 0.0) for r in pts], label=strategy,
                        color=color, marker=marker, ls=ls, capsize=3)
        if full and problem in full:
            ax.axhline(full[problem], color="black", ls="--", lw=1, label="all data")
        keeps = sorted({r["keep"] for r in rs})
        ax.set_xscale("log")
        ax.set_xticks(keeps, [f"{k:g}" for k in keeps])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("fraction of the training set kept")
        ax.set_ylabel("test accuracy")
        ax.set_title(_PROBLEM_TITLES.get(problem, problem))
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    return savefig(fig, path)
