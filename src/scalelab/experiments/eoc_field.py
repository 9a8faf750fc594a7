"""eoc-field: a random deep tanh network's output over [0, 1]^2 in the three phases.

arXiv 1902.06853, Figure 1: depth 100, width 100; in the ordered phase the output is almost
constant, in the chaotic phase it looks like noise, on the Edge of Chaos it varies smoothly.
"""

from __future__ import annotations

import numpy as np

from . import Context, Experiment, Outcome, register

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


def run(ctx: Context) -> Outcome:
    import torch

    from ..diagnostics import output_field
    from ..plots import plot_output_fields
    from ..theory import chi1, edge_of_chaos, fixed_point

    depth, width = 100, 100
    res = 64 if ctx.quick else 160
    eoc = edge_of_chaos("tanh", SIGMA_B)
    phases = {"ordered": 0.6 * eoc.sigma_w, "edge of chaos": eoc.sigma_w, "chaotic": 3.0}
    g = torch.Generator().manual_seed(ctx.seed)
    dims = [2] + [width] * depth + [1]
    # the same standard normal draws for all three phases, only the scales differ
    z_w = [torch.randn(o, i, generator=g, dtype=torch.float64) for i, o in zip(dims[:-1], dims[1:], strict=True)]
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
        fields[f"{name}: sigma_w={sw:.3g}, chi1={c1:.3g}\n(std / rms over the square: "
               f"{stats[name]['relative_spread']:.2g})"] = f
    fig = "eoc_field.png"
    plot_output_fields(fields, ctx.path(fig))
    o, e, c = stats["ordered"], stats["edge of chaos"], stats["chaotic"]
    holds = (o["relative_spread"] < 0.1 * e["relative_spread"]
             and c["roughness"] > 3 * e["roughness"])
    observed = "; ".join(f"{k}: chi1 {v['chi1']:.3f}, spread/rms {v['relative_spread']:.3g}, "
                         f"roughness {v['roughness']:.3g}" for k, v in stats.items())
    return Outcome(
        result={"depth": depth, "width": width, "resolution": res, "phases": stats},
        figures=[fig],
        ran=(f"One random tanh MLP (depth {depth}, width {width}, sigma_b {SIGMA_B}; the same "
             f"Gaussian draws rescaled to each sigma_w) evaluated on a {res}x{res} grid of "
             f"[0,1]^2. spread/rms = std of the output over the grid / its rms; roughness = "
             f"mean |neighbour difference| / std (1.13 for white noise, ~0 for smooth)."),
        observed=(f"{observed}. Judged: ordered spread < 0.1 x EOC spread, and chaotic "
                  f"roughness > 3 x EOC roughness: {holds}."),
        claim_holds=bool(holds),
    )


register(Experiment(
    name="eoc-field",
    description="Output of a random depth-100 tanh net over [0,1]^2: ordered, EOC, chaotic",
    paper="arXiv 1902.06853",
    claim=CLAIM,
    run=run,
))
