"""``--compare``: run variants with the same seed and data order; ``report.json``, a table.

``report.json`` is one object ``{"config", "target_loss", "runs"}``. ``target_loss`` is the
best eval loss of the first variant (the baseline); a run's ``steps_to_target`` is the first
eval step at which its eval loss is at or below it (``None`` if never). A run has diverged
when its loss became non-finite; a loss that merely rises is not divergence.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .._utils import to_jsonable
from ..errors import check_out_dir
from .config import FinetuneConfig, variant_config

REPORT_FILE = "report.json"
PLOT_FILE = "loss.png"
RUN_KEYS = ("variant", "method", "init", "lr", "ratio", "head_lr", "steps", "eval_steps",
            "eval_loss", "eval_accuracy", "final_eval_loss", "accuracy", "perplexity",
            "steps_to_target", "wall_s", "tokens_per_s", "status", "message", "train_loss",
            "adapter")


def best_loss(eval_loss: Sequence[float | None]) -> float | None:
    """The lowest finite eval loss (``None`` if there is none)."""
    finite = [v for v in eval_loss if v is not None and math.isfinite(v)]
    return min(finite) if finite else None


def steps_to_target(eval_steps: Sequence[int], eval_loss: Sequence[float | None],
                    target: float | None) -> int | None:
    """The first eval step whose loss is at or below ``target`` (``None`` if never)."""
    if target is None:
        return None
    for s, v in zip(eval_steps, eval_loss, strict=True):
        if v is not None and v <= target:
            return int(s)
    return None


def build_report(config: FinetuneConfig | dict, runs: Sequence[Any]) -> dict[str, Any]:
    """The ``report.json`` document of ``runs`` (``RunResult`` objects or their dicts)."""
    rows = [r if isinstance(r, dict) else r.to_dict() for r in runs]
    target = best_loss(rows[0]["eval_loss"]) if rows else None
    out = []
    for r in rows:
        row = {k: r.get(k) for k in RUN_KEYS if k != "steps_to_target"}
        row["status"] = "diverged" if r.get("status") == "diverged" else "ok"
        row["steps"] = int(r.get("steps") or 0)
        row["steps_to_target"] = steps_to_target(r["eval_steps"], r["eval_loss"], target)
        out.append(row)
    cfg = config.to_dict() if isinstance(config, FinetuneConfig) else dict(config)
    return to_jsonable({"config": cfg, "target_loss": target, "runs": out})


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def format_table(report: dict[str, Any]) -> str:
    """The comparison as a plain-text table (one row per variant)."""
    has_head = any(r.get("head_lr") is not None for r in report["runs"])
    classify = any(r.get("accuracy") is not None for r in report["runs"])
    head = ("variant", "lr", "ratio", "head_lr", "steps", "final loss", "best loss",
            "accuracy" if classify else "perplexity", "to target", "wall s", "tok/s", "status")
    lines = []
    for r in report["runs"]:
        hl = r.get("head_lr")
        metric = (_fmt(r["accuracy"], ".3f") if classify else _fmt(r.get("perplexity"), ".2f"))
        lines.append((r["variant"], _fmt(r["lr"], ".2g"), _fmt(r["ratio"], "g"),
                      hl if isinstance(hl, str) else _fmt(hl, ".2g"), str(r["steps"]),
                      _fmt(r["final_eval_loss"], ".4f"), _fmt(best_loss(r["eval_loss"]), ".4f"),
                      metric, _fmt(r["steps_to_target"], "d"),
                      _fmt(r["wall_s"], ".1f"), _fmt(r["tokens_per_s"], ",.0f"), r["status"]))
    if not has_head:  # no classifier head: no head lr to show
        head = head[:3] + head[4:]
        lines = [row[:3] + row[4:] for row in lines]
    widths = [max(len(h), *(len(row[i]) for row in lines)) for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:<{w}}}" if i == 0 else f"{{:>{w}}}" for i, w in enumerate(widths))
    target = report.get("target_loss")
    text = [fmt.format(*head)] + [fmt.format(*row) for row in lines]
    if len(report["runs"]) > 1:
        text.append(f"target loss (best eval loss of {report['runs'][0]['variant']}): "
                    f"{_fmt(target, '.4f')}")
    return "\n".join(text)


def compare(config: FinetuneConfig, variants: Sequence[str], out_dir: str | Path, *,
            resume: bool = False, overwrite: bool = False, quiet: bool = False,
            accelerator=None, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Fine-tune each variant (same seed, same data order) and write the report.

    Each variant runs in ``out_dir/<variant>/`` (its own ``run.json``, checkpoint and
    adapter); every variant's folder is checked before the first one trains. With
    ``resume``, finished variants are read back and unfinished ones continue. Writes
    ``out_dir/report.json`` and ``out_dir/config.yaml`` (main process) unless a run was
    interrupted, and returns the report (``{"interrupted": RunResult}`` in that case). The
    picture of the curves is the caller's (``scalelab.plots.plot_finetune_curves``).
    """
    from .run import RUN_FILE, FinetuneRun, run_config_yaml
    from .setup import check_inputs, make_accelerator, resolve_precision

    out = check_out_dir("out", out_dir)
    inputs = check_inputs(config)
    acc = accelerator if accelerator is not None else make_accelerator()
    plans = []
    for v in variants:
        cfg = variant_config(config, v)
        run_file = out / v / RUN_FILE
        if resume and run_file.is_file():
            done = json.loads(run_file.read_text())
            resolved = cfg.resolved(inputs[0].task)
            resolved = resolved.replace(precision=resolve_precision(resolved))
            total = resolved.total_steps(len(inputs[0].train))
            if (done.get("config") == resolved.to_dict() and done.get("status") in ("ok", "diverged")
                    and (done.get("steps") == total or done.get("status") == "diverged")):
                plans.append(done)
                continue
        plans.append(FinetuneRun(cfg, out / v, variant=v, resume=resume, overwrite=overwrite,
                                 quiet=quiet, accelerator=acc, inputs=inputs, log=log))
    runs = []
    for plan in plans:
        if isinstance(plan, dict):
            runs.append(plan)
            continue
        result = plan.run()
        if result.status == "interrupted":
            return {"interrupted": result}
        runs.append(result)
    report = build_report(config, runs)
    if acc.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        (out / REPORT_FILE).write_text(json.dumps(report, indent=1) + "\n")
        (out / "config.yaml").write_text(run_config_yaml(config, {"compare": ",".join(variants)}))
    return report
