"""eoc-field: a random deep tanh network's output over [0, 1]^2 in the three phases.

arXiv 1902.06853, Figure 1: depth 100, width 100; in the ordered phase the output is almost
constant, in the chaotic phase it looks like noise, on the Edge of Chaos it varies smoothly.
"""

from __future__ import annotations

import numpy as np

from . import Context, Experiment, Outcome, register
from ._common import seeds_for, spread

CLAIM = ("The output of a random tanh network (depth 100, width 100) over inputs in [0, 1]^2 "
         "is nearly constant in the ordered phase, noise-like in the chaotic phase and smooth "
         "but varied on the Edge of Chaos.")
SIGMA_B = 0.2


def tanh_mlp(weights, biases):
    """An ``nn.Sequential`` MLP with the given layers and tanh between them (float64)."""
    import torch
    from torch import nn

    layers = []
    for i, (w, b) in enumerate(zip(weights, biases, strict=True)):
        lin = nn.Linear(w.shape[1], w.shape[0], dtype=w.dtype)
        with torch.no_grad():
            lin.weight.copy_(w)
            lin.bias.copy_(b)
        layers += [nn.Tanh(), lin] if i > 0 else [lin]
    return nn.Sequential(*layers)


def _roughness(field: np.ndarray) -> float:
    """Mean |difference| of neighbouring pixels over the field's spread (0 if constant)."""
    spread = field.std()
    if spread == 0:
        return 0.0
    d = np.abs(np.diff(field, axis=0)).mean() + np.abs(np.diff(field, axis=1)).mean()
    return float(d / 2 / spread)


CRITERION = (
    "On every seed (one random network per seed, the same Gaussian draws rescaled to each "
    "sigma_w): the ordered phase's spread/rms is below 0.1 x the EOC's, and the chaotic "
    "phase's roughness is above 3 x the EOC's.")


def _fields(seed: int, res: int, depth: int, width: int, phases: dict) -> tuple[dict, dict]:
    import torch

    from ..diagnostics import output_field
    from ..theory import chi1, fixed_point

    g = torch.Generator().manual_seed(seed)
    dims = [2] + [width] * depth + [1]
    # the same standard normal draws for all three phases, only the scales differ
    z_w = [torch.randn(o, i, generator=g, dtype=torch.float64)
           for i, o in zip(dims[:-1], dims[1:], strict=True)]
    z_b = [torch.randn(o, generator=g, dtype=torch.float64) for o in dims[1:]]
    fields, stats = {}, {}
    for name, sw in phases.items():
        ws = [z * sw / np.sqrt(z.shape[1]) for z in z_w]
        bs = [z * SIGMA_B for z in z_b]
        f = output_field(tanh_mlp(ws, bs), resolution=res)
        q = fixed_point("tanh", sw, SIGMA_B).q
        c1 = float(chi1("tanh", sw, SIGMA_B, q))
        rms = float(np.sqrt(np.mean(f**2)))
        stats[name] = {"sigma_w": sw, "sigma_b": SIGMA_B, "chi1": c1,
                       "relative_spread": float(f.std() / rms), "roughness": _roughness(f)}
        fields[name] = f
    return fields, stats


def run(ctx: Context) -> Outcome:
    from ..plots import plot_output_fields
    from ..theory import edge_of_chaos

    depth, width = 100, 100
    res = 64 if ctx.quick else 160
    seeds = seeds_for(ctx, 3)
    eoc = edge_of_chaos("tanh", SIGMA_B)
    phases = {"ordered": 0.6 * eoc.sigma_w, "edge of chaos": eoc.sigma_w, "chaotic": 3.0}
    per_seed, first = [], None
    for seed in seeds:
        fields, stats = _fields(seed, res, depth, width, phases)
        first = first or (fields, stats)
        o, e, c = stats["ordered"], stats["edge of chaos"], stats["chaotic"]
        per_seed.append({"seed": seed, "phases": stats,
                         "ordered_over_eoc_spread": o["relative_spread"] / e["relative_spread"],
                         "chaotic_over_eoc_roughness": c["roughness"] / e["roughness"]})
    fields, stats = first
    # each field in units of its own rms, all on one scale: a constant field stays flat
    titled = {f"{k}: sigma_w={v['sigma_w']:.3g}, chi1={v['chi1']:.3g}\n(std / rms over the "
              f"square: {v['relative_spread']:.2g})":
              (fields[k] - fields[k].mean()) / np.sqrt(np.mean(fields[k] ** 2))
              for k, v in stats.items()}
    fig = "eoc_field.png"
    plot_output_fields(titled, ctx.path(fig), symmetric=True,
                       label=f"(output - its mean) / its rms, depth-{depth} tanh net")
    holds = all(p["ordered_over_eoc_spread"] < 0.1 and p["chaotic_over_eoc_roughness"] > 3
                for p in per_seed)
    observed = "; ".join(
        f"seed {p['seed']}: " + ", ".join(
            f"{k} chi1 {v['chi1']:.3f}, spread/rms {v['relative_spread']:.3g}, roughness "
            f"{v['roughness']:.3g}" for k, v in p["phases"].items())
        + f" (ordered/EOC spread {p['ordered_over_eoc_spread']:.2g}, chaotic/EOC roughness "
        f"{p['chaotic_over_eoc_roughness']:.3g})" for p in per_seed)
    sp = {"ordered_over_eoc_spread": spread([p["ordered_over_eoc_spread"] for p in per_seed],
                                            seeds),
          "chaotic_over_eoc_roughness": spread([p["chaotic_over_eoc_roughness"]
                                                for p in per_seed], seeds)}
    return Outcome(
        result={"depth": depth, "width": width, "resolution": res, "per_seed": per_seed},
        figures=[fig],
        ran=(f"Random tanh MLPs (depth {depth}, width {width}, sigma_b {SIGMA_B}; per seed the "
             f"same Gaussian draws rescaled to each sigma_w) evaluated on a {res}x{res} grid of "
             f"[0,1]^2, seeds {seeds}; the figure shows seed {seeds[0]}, each field minus its mean "
             f"over its rms, on one colour scale. "
             f"spread/rms = std of the output over the grid / its rms; roughness = mean "
             f"|neighbour difference| / std (1.13 for white noise, ~0 for smooth)."),
        observed=(f"{observed}. Judged on every seed: ordered spread < 0.1 x EOC spread, and "
                  f"chaotic roughness > 3 x EOC roughness: {holds}."),
        claim_holds=bool(holds), seeds=seeds, spread=sp,
    )


register(Experiment(
    name="eoc-field",
    description="Output of a random depth-100 tanh net over [0,1]^2: ordered, EOC, chaotic",
    paper="arXiv 1902.06853",
    claim=CLAIM,
    run=run,
    criterion=CRITERION,
    min_seeds=3,
))
