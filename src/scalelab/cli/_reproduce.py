"""``scalelab reproduce list | NAME | all``."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def reproduce(
    target: str = typer.Argument(..., help="'list', an experiment name, or 'all'."),
    out: Path = typer.Option(None, "--out", help="Output folder (default runs/NAME; for 'all', "
                             "one sub-folder per experiment). May already exist."),
    quick: bool = typer.Option(False, "--quick", help="Small, fast version (~20 s; ~60 s with a "
                               "real pretrained model)."),
    seed: int = typer.Option(0, "--seed", help="Random seed; same seed, same numbers."),
    as_json: bool = typer.Option(False, "--json", help="Print result.json on stdout."),
) -> None:
    """Rerun a paper's headline claim: writes result.json, PNG figures and REPORT.md.

    'scalelab reproduce list' prints one experiment name per line, a tab, and what it shows.
    """
    from ..experiments import get_experiment, list_experiments, run_experiment

    if target == "list":
        for exp in list_experiments():
            typer.echo(f"{exp.name}\t{exp.description}")
        return
    names = [e.name for e in list_experiments()] if target == "all" else [get_experiment(target).name]
    base = out if out is not None else Path("runs")
    docs = []
    for name in names:
        folder = (base / name) if (target == "all" or out is None) else base
        typer.echo(f"[{name}] running{' (quick)' if quick else ''} -> {folder}", err=True)
        doc = run_experiment(name, folder, quick=quick, seed=seed)
        docs.append(doc)
        verdict = {True: "claim holds", False: "claim does not hold", None: "not judged"}
        typer.echo(f"[{name}] {verdict[doc['claim_holds']]} ({doc['wall_s']:.1f} s); "
                   f"report: {folder / 'REPORT.md'}", err=True)
    if as_json:
        typer.echo(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))


def register(app: typer.Typer) -> None:
    app.command("reproduce")(reproduce)
