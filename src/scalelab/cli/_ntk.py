"""``scalelab ntk ACT``: how fast the infinite-width NTK of a deep net forgets its inputs."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ._eoc import _ACT_HELP, _PARAM_HELP, _activation

_HELP = "\n\n".join([
    "The depth profile of the infinite-width neural tangent kernel (NTK parametrisation) of "
    "a deep MLP, or of the 1/sqrt(L) ResNet with --resnet, on a few real MNIST digits "
    "(centred, scaled to |x|^2 = d).",
    "Per depth: the distance max |Theta~_ab - Theta~_inf| of the normalised NTK "
    "Theta~ = Theta_ab / sqrt(Theta_aa Theta_bb) to its trivial limit (1 ordered, 0 chaotic, "
    "1/3 or 1/4 on the Edge of Chaos; for the ResNet, its infinite-depth NTK), the spread of "
    "its off-diagonal entries (0 = the inputs are forgotten) and its condition number; then "
    "an exponential (log-linear) and a power-law (log-log) fit of the distance, and which "
    "fits better. arXiv 1905.13654; notes in docs/kernels.md.",
    "Defaults: the Edge of Chaos point of ACT — sigma_b 0 for ReLU-like activations, 0.2 for "
    "smooth ones (silu 0.8, gelu 0.5) and the sigma_w that puts that sigma_b on the EOC.",
])


def _depths(max_depth: int) -> list[int]:
    import numpy as np

    return sorted({int(round(v)) for v in np.geomspace(1, max_depth, 14)} | {max_depth})


def ntk(
    act: str = typer.Argument(..., help=_ACT_HELP),
    sigma_w: float = typer.Option(None, "--sigma-w", help="Weight multiplier (weights "
                                  "sigma_w / sqrt(fan_in) N(0, 1)). Default: the EOC value "
                                  "for --sigma-b."),
    sigma_b: float = typer.Option(None, "--sigma-b", help="Bias multiplier. Default: 0 for "
                                  "ReLU-like activations, 0.2 for smooth ones (silu 0.8, gelu "
                                  "0.5)."),
    depth: int = typer.Option(100, "--depth", help="Largest depth (number of linear layers; "
                              "residual blocks with --resnet); ~14 depths up to it are shown."),
    n_inputs: int = typer.Option(8, "--n-inputs", help="How many digits (one per class in "
                                 "turn; 2 to 200). Cost grows like n^2."),
    resnet: bool = typer.Option(False, "--resnet", help="Profile the 1/sqrt(L) ResNet (no "
                                "sigma_w / sigma_b) against its infinite-depth NTK."),
    param: list[str] = typer.Option(None, "--param", help=_PARAM_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the profile as one JSON object "
                                 "on stdout."),
    plot: Path = typer.Option(None, "--plot", help="Draw the profile (distance, log-log and "
                              "semi-log; condition number) to this PNG."),
    seed: int = typer.Option(0, "--seed", help="Seed of the digit sample."),
) -> None:
    from .._progress import track
    from .._utils import to_jsonable
    from ..errors import check_int
    from ..experiments.ntk_setup import digit_inputs
    from ..theory import default_sigma_b, edge_of_chaos, ntk_depth_profile
    from ..theory import resnet_ntk_depth_profile as resnet_profile

    a = _activation(act, param)
    depth = check_int("--depth", depth)
    X = digit_inputs(n_inputs, seed)
    depths = _depths(depth)
    def bar(items, total):
        return track(items, "NTK depth profile", total=total)

    if resnet:
        if sigma_w is not None or sigma_b is not None:
            raise ValueError("--resnet takes no --sigma-w / --sigma-b (its weights are N(0, 1) "
                             "with 1/sqrt(L) branches)")
        prof = resnet_profile(a, depths, X, progress=bar)
    else:
        if sigma_w is None:  # on the EOC; sigma_b=None: edge_of_chaos applies the default
            pt = edge_of_chaos(a, sigma_b)
            sw, sb = pt.sigma_w, pt.sigma_b
        else:  # the user's sigma_w, off the EOC: only the bias default is needed
            sw, sb = sigma_w, default_sigma_b(a) if sigma_b is None else sigma_b
        prof = ntk_depth_profile(a, sw, sb, depths, X, progress=bar)
    if plot is not None:
        from ..plots import plot_ntk_depth_profile

        plot_ntk_depth_profile({_label(prof): prof}, plot)
        typer.echo(f"wrote {plot}", err=True)
    record = to_jsonable(prof)
    record["limit"] = "infinite-depth NTK" if resnet else prof.limit
    record["n_inputs"] = int(X.shape[0])
    if as_json:
        typer.echo(json.dumps(record))
        return
    f = prof.fit
    typer.echo(f"{_label(prof)}: {X.shape[0]} digits, limit Theta~_inf = "
               f"{record['limit'] if resnet else format(prof.limit, '.6g')}")
    typer.echo(f"{'depth':>6}  {'distance':>11}  {'spread':>11}  {'condition':>11}")
    for L, d, s, c in zip(prof.depths, prof.distance, prof.spread, prof.condition, strict=True):
        typer.echo(f"{L:>6}  {d:>11.4e}  {s:>11.4e}  {c:>11.4e}")
    typer.echo(f"fit: exponential rate {f.rate:.4g} (R^2 {f.r2_exponential:.4f}), power-law "
               f"exponent {f.exponent:.4g} (R^2 {f.r2_power:.4f}): {f.better} fits better "
               f"({f.n_points} points above the rounding floor)")


def _label(prof) -> str:
    if prof.architecture == "resnet":
        return f"{prof.activation} ResNet (1/sqrt(L))"
    return (f"{prof.activation} MLP, sigma_w={prof.sigma_w:.4g}, sigma_b={prof.sigma_b:.4g} "
            f"({prof.phase})")


ntk.__doc__ = _HELP


def register(app: typer.Typer) -> None:
    app.command("ntk", help=_HELP)(ntk)
