"""Run an experiment and write ``result.json`` and ``REPORT.md`` beside its figures."""

from __future__ import annotations

import json
import platform
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._utils import seed_everything, to_jsonable
from ..errors import check_out_dir
from .registry import Context, Experiment, get_experiment


def _machine() -> str:
    try:
        import torch

        dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
        threads = torch.get_num_threads()
    except ImportError:  # pragma: no cover
        dev, threads = "cpu", 0
    return f"{platform.machine()} {platform.system()}, {dev}, {threads} torch threads"


def _cpu_seconds() -> float:
    """CPU seconds (user + system) of this process and of its finished child processes."""
    total = time.process_time()
    try:
        import resource

        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        total += kids.ru_utime + kids.ru_stime
    except ImportError:  # pragma: no cover - not POSIX
        pass
    return total


def run_experiment(name: str | Experiment, out_dir: str | Path, *, quick: bool = False,
                   seed: int = 0) -> dict[str, Any]:
    """Run one registered experiment; write ``result.json``, figures and ``REPORT.md``.

    Returns the JSON document written to ``result.json``.
    """
    exp = name if isinstance(name, Experiment) else get_experiment(name)
    out = check_out_dir("--out", out_dir)
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    t0, c0 = time.perf_counter(), _cpu_seconds()
    outcome = exp.run(Context(out_dir=out, quick=quick, seed=seed))
    wall, cpu = time.perf_counter() - t0, _cpu_seconds() - c0
    missing = [f for f in outcome.figures if not (out / f).is_file()]
    if missing:
        raise RuntimeError(f"experiment {exp.name!r} did not write its figures: {missing}")
    seeds = [int(s) for s in outcome.seeds] or [seed]
    indicative = bool(outcome.indicative or len(seeds) < exp.min_seeds)
    doc = {
        "name": exp.name,
        "paper": exp.paper,
        "claim": exp.claim,
        "criterion": exp.criterion,
        "quick": quick,
        "seed": seed,
        "seeds": seeds,
        "min_seeds": exp.min_seeds,
        "claim_holds": outcome.claim_holds,
        "verdict": verdict_text(outcome.claim_holds, indicative),
        "indicative": indicative,
        "spread": to_jsonable(outcome.spread),
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "machine": _machine(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "figures": outcome.figures,
        "result": to_jsonable(outcome.result),
    }
    (out / "result.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "REPORT.md").write_text(_report_md(exp, outcome, doc))
    return doc


def verdict_text(claim_holds: bool | None, indicative: bool) -> str:
    """``"holds"``, ``"does not hold"`` or ``"not judged"``, prefixed ``"indicative: "`` when
    the verdict rests on fewer seeds than the criterion needs (or the run says so)."""
    word = {True: "holds", False: "does not hold", None: "not judged"}[claim_holds]
    return f"indicative: {word}" if indicative and claim_holds is not None else word


def _num(v: Any, spec: str) -> str:
    return "n/a" if v is None else format(v, spec)  # non-finite values are null in JSON


def _spread_lines(spread: dict[str, Any]) -> list[str]:
    lines = []
    for name, rec in spread.items():
        if isinstance(rec, dict) and "mean" in rec:
            sd = rec.get("sd")
            lines.append(f"- {name}: mean {_num(rec['mean'], '.4g')}"
                         + (f", sd {sd:.2g}" if sd is not None else "")
                         + f", range [{_num(rec['min'], '.4g')}, {_num(rec['max'], '.4g')}] "
                         f"over {rec['n']} seed(s)")
        else:
            lines.append(f"- {name}: {rec}")
    return lines


def _report_md(exp: Experiment, outcome, doc: dict[str, Any]) -> str:
    verdict = {True: "**holds**", False: "**does not hold**", None: "not judged"}[outcome.claim_holds]
    if doc["indicative"] and outcome.claim_holds is not None:
        why = (f"{len(doc['seeds'])} seed(s), fewer than the {exp.min_seeds} the criterion needs"
               if len(doc["seeds"]) < exp.min_seeds else "sizes too small to judge the claim")
        verdict += f" — indicative only: {why}"
    lines = [
        f"# {exp.name}",
        "",
        f"{exp.description}",
        "",
        f"**Paper:** {exp.paper}",
        "",
        "## Claim",
        exp.claim,
        "",
        "## Criterion (fixed in the code before the run)",
        exp.criterion or "(none stated)",
        "",
        "## What was run",
        outcome.ran or "(not stated)",
        "",
        f"Mode: {'quick' if doc['quick'] else 'full'}; seeds {', '.join(map(str, doc['seeds']))}; "
        f"{doc['wall_s']:.1f} s wall, {doc['cpu_s']:.1f} s CPU on {doc['machine']} "
        f"({doc['date']}).",
        "",
        "## What came out",
        outcome.observed or "(not stated)",
        "",
    ]
    if doc["spread"]:
        lines += ["Spread of the judged quantities:", ""] + _spread_lines(doc["spread"]) + [""]
    lines += [
        f"Verdict at this size: the claim {verdict}.",
        "",
    ]
    if outcome.figures:
        lines += ["## Figures", ""] + [f"![{f}]({f})" for f in outcome.figures] + [""]
    lines += ["Numbers: `result.json` in this folder.", ""]
    return "\n".join(lines)
