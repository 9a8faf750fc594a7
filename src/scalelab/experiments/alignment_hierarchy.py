"""Reproduction ``alignment-hierarchy``: after training, the alignment of each layer's tangent
kernel with the labels rises then falls across layers, peaking at a hidden layer
(Lou, Mingard, Nam, Hayou, arXiv 2110.11749; METHODS.md section 9).

Tanh MLPs of a few depths, initialised on the Edge of Chaos, are trained on real digits with
:func:`scalelab.train.train_classifier`; :func:`scalelab.diagnostics.layer_alignment` then
measures, on training examples, the centred alignment ``A_l`` of every Linear layer (weight
and bias together, the readout included). The paper's Equilibrium Hypothesis puts the peak
where forward and backward information loss balance, at a layer index growing like
``L^(3/5)``; the measured peak positions and their growth with depth are reported.
"""

from __future__ import annotations

import numpy as np

from .._progress import track
from ._registry import Context, Experiment, Outcome, register

ACT = "relu"


def _sizes(quick: bool) -> dict:
    if quick:
        return dict(dataset="sklearn-digits", depths=(6, 9, 12), width=64, steps=300, lr=0.01,
                    examples=128)
    return dict(dataset="mnist", depths=(6, 9, 12, 16), width=128, steps=2000, lr=0.01,
                examples=400)


def rise_and_fall(values, margin: float = 0.01) -> bool:
    """The curve peaks strictly inside, above both ends by at least ``margin``."""
    v = np.asarray(values, dtype=float)
    p = int(np.nanargmax(v))
    return bool(0 < p < v.size - 1 and v[p] - v[0] > margin and v[p] - v[-1] > margin)


def run(ctx: Context) -> Outcome:
    import torch

    from ..data import load_digits
    from ..diagnostics import layer_alignment, reference_mlp
    from ..plots import plot_alignment
    from ..train import train_classifier

    s = _sizes(ctx.quick)
    data = load_digits(s["dataset"], seed=ctx.seed)
    x, y = data.x_train[:s["examples"]], data.y_train[:s["examples"]]
    runs = []
    for depth in track(s["depths"], "training MLPs"):
        torch.manual_seed(ctx.seed * 1000 + depth)
        model = reference_mlp(data.input_dim, s["width"], depth, data.num_classes, ACT, "eoc")
        before = layer_alignment(model, x, y)
        curve = train_classifier(model, data, steps=s["steps"], lr=s["lr"], batch_size=64,
                                 seed=ctx.seed, momentum=0.9)
        after = layer_alignment(model, x, y)
        peak = int(np.nanargmax(after)) + 1  # 1-based layer index
        runs.append(dict(depth=depth, layers=depth + 1, test_accuracy=curve.test_accuracy,
                         diverged=curve.diverged, alignment_init=before, alignment=after,
                         peak_layer=peak, rise_and_fall=rise_and_fall(after)))
    peaks = np.array([r["peak_layer"] for r in runs], dtype=float)
    layers = np.array([r["layers"] for r in runs], dtype=float)
    exponent = float(np.polyfit(np.log(layers), np.log(peaks), 1)[0]) if len(runs) > 1 else None
    trained = all(not r["diverged"] and r["test_accuracy"] > 0.8 for r in runs)
    holds = bool(trained and all(r["rise_and_fall"] for r in runs))
    result = dict(dataset=s["dataset"], activation=ACT, init="eoc", width=s["width"],
                  steps=s["steps"], lr=s["lr"], examples=s["examples"], runs=runs,
                  peak_exponent=exponent, equilibrium_exponent=0.6)
    plot_alignment({f"{r['depth']} hidden layers (acc {r['test_accuracy']:.2f})": r["alignment"]
                    for r in runs}, ctx.path("alignment_after_training.png"),
                   title=f"{ACT} MLPs on {s['dataset']} after training (stars: peaks)")
    plot_alignment({f"{r['depth']} hidden layers": r["alignment_init"] for r in runs},
                   ctx.path("alignment_at_init.png"), title="the same MLPs at initialisation")
    ran = (f"{ACT} MLPs (EOC init, width {s['width']}) with {list(s['depths'])} hidden layers, "
           f"trained {s['steps']} SGD steps (momentum 0.9, lr {s['lr']}) on {s['dataset']}; "
           f"centred tangent-kernel/label alignment of every Linear layer (readout included) on "
           f"{s['examples']} training examples, before and after training.")
    per = "; ".join(f"{r['depth']} hidden: peak at layer {r['peak_layer']} of {r['layers']} "
                    f"(A = {max(r['alignment']):.3f}; first {r['alignment'][0]:.3f}, readout "
                    f"{r['alignment'][-1]:.3f}; test acc {r['test_accuracy']:.3f})" for r in runs)
    growth = (f"peak index grows like L^{exponent:.2f} (Equilibrium Hypothesis: L^0.6)"
              if exponent is not None else "")
    observed = (f"{per}. Rise-then-fall with an interior peak in "
                f"{sum(r['rise_and_fall'] for r in runs)} of {len(runs)} networks; {growth}.")
    return Outcome(result=result, figures=["alignment_after_training.png",
                                           "alignment_at_init.png"],
                   ran=ran, observed=observed, claim_holds=holds)


register(Experiment(
    name="alignment-hierarchy",
    description="Layer tangent-kernel/label alignment of trained MLPs rises then falls across "
                "layers, peaking at a hidden layer",
    paper="arXiv 2110.11749",
    claim="After training, the alignment between each layer's tangent kernel and the labels "
          "follows an ascent-descent pattern across layers, with its maximum at a hidden layer "
          "(not the first layer nor the readout).",
    run=run,
))
