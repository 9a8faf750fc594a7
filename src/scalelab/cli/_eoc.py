"""``scalelab eoc ACT`` and ``scalelab phase ACT``: the Edge of Chaos from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ..theory import activation_names

_ACT_HELP = f"Activation: {activation_names()}."
_PARAM_HELP = "Activation parameter KEY=VALUE, e.g. --param alpha=0.5 (elu), slope=0.2 (leaky_relu)."


def _activation(name: str, params: list[str] | None):
    from ..theory import get_activation

    kw = {}
    for item in params or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--param must look like KEY=VALUE, got {item!r}")
        try:
            kw[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--param {key.strip()} must be a number, got {value!r}") from None
    return get_activation(name, **kw)


def eoc(
    act: str = typer.Argument(..., help=_ACT_HELP),
    sigma_b: float = typer.Option(None, "--sigma-b", help="Bias std. Default: 0 for ReLU-like "
                                  "activations (their only EOC point), 0.2 for smooth ones "
                                  "(silu 0.8, gelu 0.5: stable EOC points)."),
    param: list[str] = typer.Option(None, "--param", help=_PARAM_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print one flat JSON object on stdout: "
                                 "activation, sigma_b, sigma_w, q, chi1, stable, xi_q, xi_c "
                                 "(infinite depth scales and ReLU's q are null)."),
    plot: Path = typer.Option(None, "--plot", help="Draw the EOC curve (sigma_w vs sigma_b) "
                              "to this PNG, with this point marked."),
    seed: int = typer.Option(0, "--seed", help="Accepted for uniformity; nothing here is random."),
) -> None:
    """Edge-of-Chaos initialisation: the sigma_w that puts a deep MLP on the EOC.

    Prints sigma_w (the weight std is sigma_w / sqrt(fan_in)), the variance fixed point q*,
    chi1 there (1 on the EOC), whether q* attracts, and the depth scales xi_q, xi_c.
    """
    from .._utils import to_jsonable
    from ..theory import depth_scales, edge_of_chaos

    a = _activation(act, param)
    pt = edge_of_chaos(a, sigma_b)  # sigma_b=None: edge_of_chaos applies default_sigma_b
    xi_q, xi_c = depth_scales(a, pt.sigma_w, pt.sigma_b, q=pt.q_eval)
    record = {"activation": a.name, "sigma_b": pt.sigma_b, "sigma_w": pt.sigma_w, "q": pt.q,
              "chi1": pt.chi1, "stable": pt.stable, "xi_q": xi_q, "xi_c": xi_c}
    if plot is not None:
        _plot_curve(a, pt, plot)
        typer.echo(f"wrote {plot}", err=True)
    if as_json:
        typer.echo(json.dumps(to_jsonable(record)))
        return
    q_text = "every q (ReLU-like)" if pt.q is None else f"{pt.q:.10g}"
    stable = "yes (q* attracts)" if pt.stable else "NO: q* repels (try a larger --sigma-b)"
    rows = [("activation", repr(a)), ("sigma_b", f"{pt.sigma_b:.10g}"),
            ("sigma_w", f"{pt.sigma_w:.10g}"), ("q*", q_text), ("chi1", f"{pt.chi1:.12g}"),
            ("stable", stable), ("xi_q", f"{xi_q:.6g}"), ("xi_c", f"{xi_c:.6g}")]
    for k, v in rows:
        typer.echo(f"{k:<11}{v}")


def _plot_curve(a, pt, path: Path) -> None:
    import numpy as np

    from ..plots import plot_eoc_curves
    from ..theory import eoc_curve

    if a.relu_like:
        pts = [pt]
    else:
        top = max(2.0, 1.5 * pt.sigma_b)
        pts = eoc_curve(a, np.linspace(0.0, top, 121), skip_missing=True)
    plot_eoc_curves({a.name: pts}, path, highlight=pt, title=f"Edge of Chaos: {a.name}")


def phase(
    act: str = typer.Argument(..., help=_ACT_HELP),
    plot: Path = typer.Option(None, "--plot", help="Draw the phase diagram (chi1 at the "
                              "fixed point over sigma_b x sigma_w, with the EOC line) to this PNG."),
    sigma_w: float = typer.Option(None, "--sigma-w", help="With --sigma-b: classify one point."),
    sigma_b: float = typer.Option(None, "--sigma-b", help="With --sigma-w: classify one point."),
    sigma_b_max: float = typer.Option(2.0, "--sigma-b-max", help="Diagram's sigma_b range [0, max]."),
    sigma_w_max: float = typer.Option(4.0, "--sigma-w-max", help="Diagram's sigma_w range (0, max]."),
    resolution: int = typer.Option(60, "--resolution", help="Grid points per axis."),
    param: list[str] = typer.Option(None, "--param", help=_PARAM_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
    seed: int = typer.Option(0, "--seed", help="Accepted for uniformity; nothing here is random."),
) -> None:
    """Ordered / chaotic phase diagram: chi1 < 1 ordered, > 1 chaotic, = 1 the Edge of Chaos.

    With --sigma-w and --sigma-b, prints the phase of that one point. Otherwise computes chi1
    on a grid (and draws it with --plot) and prints the EOC curve's end points.
    """
    import numpy as np

    from .._utils import to_jsonable
    from ..errors import check_int, check_positive
    from ..theory import phase_diagram, phase_point

    a = _activation(act, param)
    if (sigma_w is None) != (sigma_b is None):
        raise ValueError("--sigma-w and --sigma-b go together (to classify one point)")
    if sigma_w is not None:
        pt = phase_point(a, sigma_w, sigma_b)
        typer.echo(json.dumps(to_jsonable(pt)) if as_json else pt.phase)
        return
    check_positive("--sigma-b-max", sigma_b_max)
    check_positive("--sigma-w-max", sigma_w_max)
    n = check_int("--resolution", resolution, minimum=5)
    d = phase_diagram(a, np.linspace(0.0, sigma_b_max, n),
                      np.linspace(sigma_w_max / n, sigma_w_max, n))
    if plot is not None:
        from ..plots import plot_phase_diagrams

        plot_phase_diagrams([d], plot)
        typer.echo(f"wrote {plot}", err=True)
    if as_json:
        typer.echo(json.dumps(to_jsonable({"activation": d.activation, "sigma_b": d.sigma_b,
                                           "sigma_w": d.sigma_w, "chi1": d.chi1,
                                           "eoc": d.eoc})))
        return
    ordered = float(np.nanmean(d.chi1 < 1))
    typer.echo(f"{a.name}: {ordered:.0%} of the grid ordered, {1 - ordered:.0%} chaotic or "
               f"divergent; EOC points: {len(d.eoc)}")
    for p in d.eoc[:1] + d.eoc[1:][-1:]:
        typer.echo(f"  sigma_b={p.sigma_b:.4g}  sigma_w={p.sigma_w:.6g}  q*="
                   f"{'any' if p.q is None else format(p.q, '.4g')}  stable={p.stable}")


def register(app: typer.Typer) -> None:
    app.command("eoc")(eoc)
    app.command("phase")(phase)
