"""``scalelab lgi``: the Lojasiewicz-inequality fit of a recorded training trajectory."""

from __future__ import annotations

import json
from pathlib import Path

import typer

_HELP = "\n\n".join([
    "Fit the uniform Lojasiewicz gradient inequality ||grad L|| >= c (L - L*)^theta to a "
    "recorded trajectory, as the official code of arXiv 2202.10670 does: theta is the "
    "least-squares slope of log ||grad L|| on log(L - L*), c the lower envelope (the "
    "intercept moved down by the smallest residual).",
    "FILE: a .json list of {\"loss\", \"grad_norm\"} objects (what "
    "scalelab.diagnostics.LGIRecorder.save writes), a .json object with lists \"losses\" and "
    "\"grad_norms\", or a .csv with 'loss' and 'grad_norm' columns; one row per epoch.",
    "With --n, also prints the bound 1 / (sqrt(n) c^2 (1 - theta)^2) (+ sqrt(m / n) with "
    "--width m), constants dropped as in the official code: compare it across runs, not with "
    "the gap's value.",
])


def _parse_l_star(text: str) -> float | str:
    if text.strip().lower() == "min":
        return "min"
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--l-star must be a number or 'min', got {text!r}") from None


def lgi(
    file: Path = typer.Argument(..., help="Trajectory: .json or .csv of (loss, grad_norm) rows."),
    l_star: str = typer.Option("0", "--l-star", help="L*: a number (default 0) or 'min' (the "
                               "smallest recorded loss; that point is dropped)."),
    n: int = typer.Option(None, "--n", help="Training-set size: also print the LGI bound."),
    width: int = typer.Option(None, "--width", help="Hidden width m of the two-layer net: adds "
                              "sqrt(m / n) to the bound (needs --n)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    from ..diagnostics import lgi_bound, lojasiewicz_fit, read_trajectory

    ls = _parse_l_star(l_star)
    if width is not None and n is None:
        raise ValueError("--width needs --n (the bound's sqrt(m / n) term)")
    losses, grads = read_trajectory(file)
    fit = lojasiewicz_fit(losses, grads, l_star=ls)
    doc = {"file": str(file), "rows": int(len(losses)), **fit.as_dict()}
    if n is not None:
        doc["n"] = n
        doc["width"] = width
        doc["bound"] = lgi_bound(n, fit.c, fit.theta, width=width)
    if as_json:
        typer.echo(json.dumps(doc))
        return
    lines = [f"theta  {fit.theta:.6g}" + ("" if fit.in_lgi_range
                                          else "   (outside [1/2, 1), the theorem's range)"),
             f"c      {fit.c:.6g}",
             f"L*     {fit.l_star:.6g}" + ("  (smallest recorded loss)" if ls == "min" else ""),
             f"points {fit.n_points} of {len(losses)}   R^2 of the log-log fit {fit.r2:.4f}"]
    if n is not None:
        lines.append(f"bound  {doc['bound']:.6g}   (n = {n}"
                     + (f", width = {width}" if width is not None else "")
                     + "; constants dropped)")
    typer.echo("\n".join(lines))


def register(app: typer.Typer) -> None:
    app.command("lgi", help=_HELP)(lgi)
