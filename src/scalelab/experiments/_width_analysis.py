"""What the ``loraplus-width`` reproduction reads off its eval curves: pure functions on records.

docs/lora.md ("LoRA+ across width") states the rules; in short:

- Curves are smoothed by a centred 3-point moving average (2 points at the ends) before
  anything is read off them; "best" is the lowest smoothed eval loss, reached at the first
  step where the smoothed curve attains it.
- A configuration is chosen by the lowest best of its seed-mean smoothed curve over the
  selection seeds; a configuration that diverged on any of them is never chosen. Ties: the
  smaller ratio, then the smaller learning rate.
- Per width: tuned LoRA and LoRA+ chosen on all seeds (the reported best ratio), and, for
  each seed, both chosen on the *other* seeds and scored on that one (leave-one-seed-out:
  the held-out gain, free of the optimism of picking the best of a larger grid).
- Gain = tuned LoRA's best smoothed loss - LoRA+'s (positive: LoRA+ is better). Speed-up =
  the step at which LoRA first reaches its best / the first step at which LoRA+ reaches
  that loss; 0 when LoRA+ never does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from ._common import linear_fit as linear_fit  # its home is _common
from ._common import loglog_fit

Config = tuple[str, float, float]  # (method, lr of A, ratio)


def smooth(values: Sequence[float | None]) -> list[float | None]:
    """Centred 3-point moving average over the finite neighbours (ends: 2 points); ``None``
    stays ``None``."""
    out: list[float | None] = []
    for i, v in enumerate(values):
        window = [x for x in values[max(0, i - 1):i + 2] if x is not None]
        out.append(sum(window) / len(window) if v is not None else None)
    return out


def best_point(steps: Sequence[int], curve: Sequence[float | None]
               ) -> tuple[float | None, int | None]:
    """``(lowest value, first step attaining it)``; ``(None, None)`` if nothing is finite."""
    finite = [(v, s) for s, v in zip(steps, curve, strict=True)
              if v is not None and math.isfinite(v)]
    if not finite:
        return None, None
    best = min(v for v, _ in finite)
    return best, next(s for v, s in finite if v == best)


def steps_to_target(steps: Sequence[int], curve: Sequence[float | None],
                    target: float | None) -> int | None:
    """The first step whose value is at or below ``target`` (``None`` if never)."""
    if target is None:
        return None
    for s, v in zip(steps, curve, strict=True):
        if v is not None and v <= target:
            return int(s)
    return None


def speedup(step_lora: int | None, step_plus: int | None) -> float | None:
    """``step_lora / step_plus``; 0.0 when LoRA+ never reaches the target, ``None`` when
    LoRA has no best (it diverged)."""
    if step_lora is None:
        return None
    return 0.0 if step_plus is None else step_lora / step_plus


def mean_curve(curves: Iterable[Sequence[float | None]]) -> list[float | None]:
    """The pointwise mean of equal-length curves; ``None`` where any of them is ``None``."""
    curves = list(curves)
    return [None if any(v is None for v in col) else float(np.mean(col))
            for col in zip(*curves, strict=True)]


def config_of(record: dict[str, Any]) -> Config:
    s = record["spec"]
    return (s["method"], float(s["lr"]), float(s["ratio"]))


def curves_by_config(records: Iterable[dict[str, Any]]
                     ) -> tuple[list[int], dict[Config, dict[int, list[float | None]]]]:
    """``(eval steps, {config: {seed: smoothed eval curve}})`` of one width's records."""
    steps: list[int] | None = None
    out: dict[Config, dict[int, list[float | None]]] = {}
    for r in records:
        if steps is None:
            steps = list(r["eval_steps"])
        elif list(r["eval_steps"]) != steps:
            raise ValueError(f"run {r.get('label')} has eval steps {r['eval_steps']}, "
                             f"others {steps}")
        out.setdefault(config_of(r), {})[int(r["spec"]["seed"])] = smooth(r["eval_loss"])
    return steps or [], out


def choose(curves: dict[Config, dict[int, list[float | None]]], steps: Sequence[int],
           method: str, seeds: Sequence[int]) -> Config | None:
    """The ``method`` configuration with the lowest best seed-mean smoothed loss on ``seeds``.

    Configurations missing a seed or diverged (a ``None`` in the curve) on any of ``seeds``
    are skipped; ties go to the smaller ratio, then the smaller lr. ``None`` if none is left.
    """
    scored = []
    for cfg, by_seed in curves.items():
        if cfg[0] != method or any(s not in by_seed for s in seeds):
            continue
        if any(v is None for s in seeds for v in by_seed[s]):
            continue
        best, _ = best_point(steps, mean_curve(by_seed[s] for s in seeds))
        if best is not None:
            scored.append((best, cfg[2], cfg[1], cfg))
    return min(scored)[3] if scored else None


def compare(steps: Sequence[int], lora: Sequence[float | None],
            plus: Sequence[float | None]) -> dict[str, Any]:
    """Best losses, gain and speed-up of a LoRA+ curve against a LoRA curve (both smoothed)."""
    target, step_l = best_point(steps, lora)
    plus_best, _ = best_point(steps, plus)
    step_p = steps_to_target(steps, plus, target)
    gain = (target - plus_best) if target is not None and plus_best is not None else None
    return {"lora_best": target, "lora_step": step_l, "loraplus_best": plus_best,
            "loraplus_reaches_at": step_p, "gain": gain, "speedup": speedup(step_l, step_p)}


def _eta(cfg: Config) -> float:
    return cfg[1] * math.sqrt(cfg[2])


def width_result(records: Sequence[dict[str, Any]], seeds: Sequence[int]) -> dict[str, Any]:
    """Everything judged at one width: the all-seed choice and the held-out-seed numbers."""
    steps, curves = curves_by_config(records)
    seeds = list(seeds)
    lora, plus = choose(curves, steps, "lora", seeds), choose(curves, steps, "loraplus", seeds)
    out: dict[str, Any] = {"width": int(records[0]["spec"]["pretrain"]["width"]),
                           "eval_steps": steps, "seeds": seeds,
                           "lora": lora, "loraplus": plus}
    if lora is None or plus is None:
        out["undetermined"] = True
        return out
    out["undetermined"] = False
    mean_l = mean_curve(curves[lora][s] for s in seeds)
    mean_p = mean_curve(curves[plus][s] for s in seeds)
    out.update(compare(steps, mean_l, mean_p))
    out["lora_lr"], out["best_ratio"] = lora[1], plus[2]
    out["loraplus_lr"], out["loraplus_eta"] = plus[1], _eta(plus)
    out["mean_curves"] = {"lora": mean_l, "loraplus": mean_p}
    lora_lrs = sorted({c[1] for c in curves if c[0] == "lora"})
    etas = sorted({round(_eta(c), 12) for c in curves if c[0] == "loraplus"})
    ratios = sorted({c[2] for c in curves if c[0] == "loraplus"})
    out["at_grid_edge"] = {"lora_lr": lora[1] in (lora_lrs[0], lora_lrs[-1]) and len(lora_lrs) > 1,
                           "loraplus_eta": round(_eta(plus), 12) in (etas[0], etas[-1])
                           and len(etas) > 1,
                           "best_ratio": plus[2] in (ratios[0], ratios[-1]) and len(ratios) > 1}
    per_seed = []
    for s in seeds:
        own = choose(curves, steps, "loraplus", [s])
        rest = [t for t in seeds if t != s]
        row: dict[str, Any] = {"seed": s, "own_best_ratio": own[2] if own else None}
        if rest:
            lo, pl = choose(curves, steps, "lora", rest), choose(curves, steps, "loraplus", rest)
            row.update({"lora": lo, "loraplus": pl})
            if lo is not None and pl is not None and s in curves[lo] and s in curves[pl]:
                row.update(compare(steps, curves[lo][s], curves[pl][s]))
        per_seed.append(row)
    out["per_seed"] = per_seed
    held = [r["gain"] for r in per_seed if r.get("gain") is not None]
    out["heldout_gain"] = float(np.mean(held)) if held else None
    sp = [r["speedup"] for r in per_seed if r.get("speedup") is not None]
    out["heldout_speedup_median"] = float(np.median(sp)) if sp else None
    return out


def _spearman(x: Sequence[float], y: Sequence[float]) -> float:
    from scipy import stats

    if len(x) < 2 or len(set(y)) < 2:
        return 0.0 if len(x) >= 2 else math.nan
    return float(stats.spearmanr(x, y).statistic)


def trends(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The fitted trends over widths and the parts of the verdict (criterion in the module).

    Best ratio: log-log fit against width and Spearman correlation. Held-out gain: linear
    fit against log2(width) (slope = change per doubling) and Spearman correlation. Per seed:
    the same slopes of each seed's own best ratio and of its held-out gain.
    """
    ok = [r for r in results if not r["undetermined"]]
    w = [r["width"] for r in ok]
    ratio = [r["best_ratio"] for r in ok]
    gain = [r["heldout_gain"] for r in ok]
    out: dict[str, Any] = {"widths": w, "undetermined_widths": [r["width"] for r in results
                                                                if r["undetermined"]]}
    out["ratio_fit"] = loglog_fit(w, ratio)
    out["ratio_spearman"] = _spearman(w, ratio)
    good_gain = [(x, g) for x, g in zip(w, gain, strict=True) if g is not None]
    out["gain_fit"] = linear_fit([math.log2(x) for x, _ in good_gain], [g for _, g in good_gain])
    out["gain_spearman"] = _spearman([x for x, _ in good_gain], [g for _, g in good_gain])
    seeds = ok[0]["seeds"] if ok else []
    per_seed = {}
    for i, s in enumerate(seeds):
        rs = [r["per_seed"][i] for r in ok]
        own = [(x, p["own_best_ratio"]) for x, p in zip(w, rs, strict=True)
               if p["own_best_ratio"] is not None]
        g = [(x, p["gain"]) for x, p in zip(w, rs, strict=True) if p.get("gain") is not None]
        per_seed[s] = {
            "ratio_slope": loglog_fit([x for x, _ in own], [v for _, v in own])["slope"],
            "gain_slope": linear_fit([math.log2(x) for x, _ in g], [v for _, v in g])["slope"],
        }
    out["per_seed"] = per_seed
    if not ok:
        out.update(ratio_grows=False, gain_grows=False, pays_at_largest=False, holds=False,
                   indicative=True)
        return out
    first, last = ok[0], ok[-1]
    out["ratio_grows"] = bool(out["ratio_fit"]["slope"] > 0 and out["ratio_spearman"] > 0
                              and last["best_ratio"] > first["best_ratio"])
    out["gain_grows"] = bool(out["gain_fit"]["slope"] > 0 and out["gain_spearman"] > 0)
    top = [p["gain"] for p in last["per_seed"] if p.get("gain") is not None]
    out["largest_width_positive_seeds"] = sum(g > 0 for g in top)
    out["pays_at_largest"] = bool(top and 2 * sum(g > 0 for g in top) > len(top))
    out["holds"] = bool(not out["undetermined_widths"] and out["ratio_grows"]
                        and out["gain_grows"] and out["pays_at_largest"])
    ci_r, ci_g = out["ratio_fit"]["ci95"], out["gain_fit"]["ci95"]
    out["indicative"] = bool(not (math.isfinite(ci_r) and math.isfinite(ci_g))
                             or abs(out["ratio_fit"]["slope"]) <= ci_r
                             or abs(out["gain_fit"]["slope"]) <= ci_g)
    return out
