"""Reproduction ``loraplus-width``: does LoRA+'s best ratio, and its gain, grow with width?

LoRA+ (arXiv 2402.12354): at large width, efficient LoRA fine-tuning needs
``lr_B / lr_A = Theta(width)``. ``loraplus-toy`` shows it on a linear toy; the real 384-wide
MiniLM shows no speed-up (BENCHMARKS.md). This measures the step in between: the same
BERT-style encoder at several widths, each pre-trained briefly from scratch on the packaged
text, then LoRA-fine-tuned on tweet sentiment with a LoRA lr grid and a LoRA+ (eta, ratio)
grid on several seeds (docs/lora.md, "LoRA+ across width", states every rule).

The protocol below (:data:`FULL`, :data:`QUICK`) and :data:`CRITERION` were fixed in the
code before the first number; ``benchmarks/loraplus_width.py`` runs the same protocol from a
committed per-run cache. Quick mode is a smoke run (tiny widths, a few steps): not judged.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from ._common import run_cache, seeds_for, spread
from ._width_analysis import trends, width_result
from ._width_protocol import WidthProtocol
from .registry import Context, Experiment, Outcome, register

#: The full protocol: ~55 min on 2 idle cores with 2 worker processes (docs/lora.md).
FULL = WidthProtocol(
    widths=(64, 128, 256, 512), depth=4, head_dim=64, vocab_size=8192,
    pretrain_seq_len=64, pretrain_batch=32, pretrain_steps=300, pretrain_lr=5e-4,
    corpus_limit=None,
    steps=120, batch_size=16, max_length=48, eval_size=256, eval_every=20, rank=8, alpha=8.0,
    head_lr=3e-3, schedule="linear", warmup=0.1,
    lora_lrs=(2e-3, 4e-3, 8e-3), plus_etas=(2e-3, 4e-3, 8e-3), ratios=(2.0, 8.0, 32.0),
    seeds=(0, 1, 2),
)
#: The smoke run of the test suite: two tiny widths, a handful of steps, two seeds.
QUICK = WidthProtocol(
    widths=(16, 32), depth=1, head_dim=8, vocab_size=512,
    pretrain_seq_len=32, pretrain_batch=8, pretrain_steps=10, pretrain_lr=1e-3, corpus_limit=60,
    steps=6, batch_size=8, max_length=32, eval_size=32, eval_every=2, rank=2, alpha=2.0,
    head_lr=3e-3, schedule="linear", warmup=0.1,
    lora_lrs=(4e-3,), plus_etas=(4e-3,), ratios=(2.0, 8.0), seeds=(0, 1),
)

CRITERION = (
    "Per width, tuned LoRA = the LoRA lr, and LoRA+ = the (eta, ratio) pair, with the lowest "
    "best seed-mean smoothed eval loss (3-point moving average; a configuration that "
    "diverged on any seed is never chosen; ties: smaller ratio, then smaller lr). Best ratio "
    "= LoRA+'s ratio chosen on all seeds. Held-out gain = for each seed, both chosen on the "
    "other seeds, then tuned LoRA's best smoothed loss minus LoRA+'s on that seed, averaged "
    "over seeds. The claim holds when (1) the best ratio grows with width: positive log-log "
    "slope, positive Spearman correlation with width, and larger at the largest width than "
    "at the smallest; (2) the held-out gain grows with width: positive slope against "
    "log2(width) and positive Spearman correlation; (3) LoRA+ pays at the largest width: "
    "held-out gain > 0 on a majority of seeds; and no width is left without a non-diverged "
    "LoRA and LoRA+ choice. The verdict is indicative when the 95% interval of either slope "
    "(4 widths) includes 0. Speed-up (steps) is reported, not judged."
)


def summarize(protocol: WidthProtocol, data: dict[str, Any]) -> dict[str, Any]:
    """Per-width results and the trends of one protocol's records (``run_protocol``'s output)."""
    by_width: dict[int, list[dict[str, Any]]] = {}
    for r in data["runs"]:
        by_width.setdefault(int(r["spec"]["pretrain"]["width"]), []).append(r)
    missing = [w for w in protocol.widths if w not in by_width]
    if missing:
        raise ValueError(f"no runs for widths {missing}")
    results = [width_result(by_width[w], protocol.seeds) for w in protocol.widths]
    for r in results:
        meta = data["pretrain"].get(r["width"]) or data["pretrain"].get(str(r["width"]))
        r["pretrain_heldout_mlm_loss"] = meta["heldout_mlm_loss"] if meta else None
        accs = {}
        for name in ("lora", "loraplus"):
            cfg = r[name]
            vals = [x["eval_accuracy"][-1] for x in by_width[r["width"]]
                    if cfg and (x["spec"]["method"], x["spec"]["lr"], x["spec"]["ratio"]) ==
                    tuple(cfg) and x["eval_accuracy"][-1] is not None]
            accs[name] = sum(vals) / len(vals) if vals else None
        r["final_accuracy"] = accs
    return {"widths": results, "trends": trends(results),
            "runs": len(data["runs"]), "cached": sum(bool(x.get("cached")) for x in data["runs"])}


def _f(v: float | None, spec: str = ".4f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def describe_protocol(p: WidthProtocol) -> str:
    heads = ", ".join(f"{w}: {w // p.head_dim}" for w in p.widths)
    return (f"BERT-style encoders (BertModel from a config), widths {list(p.widths)}, depth "
            f"{p.depth}, head dim {p.head_dim} (heads {heads}), FFN 4x width, no dropout, "
            f"MiniLM WordPiece tokens on a compact {p.vocab_size}-token vocabulary. Each "
            f"pre-trained from scratch by masked LM on BBC News + tweets (outside the held-out "
            f"2,000) + Q/A text: {p.pretrain_steps} steps of {p.pretrain_batch} x "
            f"{p.pretrain_seq_len} tokens, AdamW lr {p.pretrain_lr:g}, linear warm-up/decay, "
            f"seed {p.pretrain_seed} (one checkpoint per width, cached). Fine-tuning on tweet "
            f"sentiment (3 classes): PEFT LoRA r={p.rank} alpha={p.alpha:g} on query/key/value/"
            f"attention-output, Init[A]; mean-pool linear head trained at its own lr "
            f"{p.head_lr:g} in every run; AdamW via scalelab.lora.create_loraplus_optimizer "
            f"(LoRA = ratio 1); {p.steps} steps of batch {p.batch_size}, length "
            f"{p.max_length}, transformers get_scheduler('{p.schedule}') with "
            f"{p.warmup:.0%} warm-up; eval on {p.eval_size} held-out tweets every "
            f"{p.eval_every} steps. Grid per width: LoRA lr in "
            f"{{{', '.join(f'{x:g}' for x in p.lora_lrs)}}}; LoRA+ eta = sqrt(lr_A lr_B) in "
            f"{{{', '.join(f'{x:g}' for x in p.plus_etas)}}} x ratio in "
            f"{{{', '.join(f'{x:g}' for x in p.ratios)}}}; seeds {list(p.seeds)}.")


def describe_results(summary: dict[str, Any]) -> str:
    lines = []
    for r in summary["widths"]:
        if r["undetermined"]:
            lines.append(f"width {r['width']}: no non-diverged LoRA or LoRA+ configuration")
            continue
        per = ", ".join(_f(p.get("gain"), "+.4f") for p in r["per_seed"])
        own = ", ".join(_f(p["own_best_ratio"], "g") for p in r["per_seed"])
        edge = [k for k, v in r["at_grid_edge"].items() if v]
        lines.append(
            f"width {r['width']} (pre-training held-out MLM loss "
            f"{_f(r['pretrain_heldout_mlm_loss'], '.2f')}): tuned LoRA lr {r['lora_lr']:g} best "
            f"{_f(r['lora_best'])}; LoRA+ eta {r['loraplus_eta']:g} ratio {r['best_ratio']:g} "
            f"best {_f(r['loraplus_best'])} (seed-mean curves, gain {_f(r['gain'], '+.4f')}, "
            f"speed-up {_f(r['speedup'], '.2f')}x); held-out gain {_f(r['heldout_gain'], '+.4f')}"
            f" (seeds: {per}), held-out speed-up median "
            f"{_f(r['heldout_speedup_median'], '.2f')}x; each seed's own best ratio: {own}"
            + (f"; at the grid edge: {', '.join(edge)}" if edge else ""))
    t = summary["trends"]
    rf, gf = t["ratio_fit"], t["gain_fit"]
    lines.append(
        f"Best ratio against width: log-log slope {_f(rf['slope'], '.2f')} +- "
        f"{_f(rf['ci95'], '.2f')} (95%), Spearman {_f(t['ratio_spearman'], '.2f')}. Held-out "
        f"gain against log2(width): slope {_f(gf['slope'], '+.4f')} +- {_f(gf['ci95'], '.4f')} "
        f"per doubling, Spearman {_f(t['gain_spearman'], '.2f')}. Held-out gain > 0 at the "
        f"largest width on {t.get('largest_width_positive_seeds', 0)} of "
        f"{len(summary['widths'][-1].get('per_seed', []))} seeds.")
    return "\n".join(f"- {x}" for x in lines)


def run(ctx: Context) -> Outcome:
    from ..data.models import cache_dir
    from ..plots import plot_loraplus_width, plot_loraplus_width_curves
    from ._width_protocol import default_workers, run_protocol

    base = QUICK if ctx.quick else FULL
    protocol = dataclasses.replace(base, seeds=tuple(seeds_for(ctx, len(base.seeds))))
    cache = cache_dir() / "loraplus-width"
    runs_dir = ctx.path("runs") if ctx.quick else run_cache("loraplus_width_cache/full",
                                                            "loraplus-width/runs")
    data = run_protocol(protocol, runs_dir, cache,
                        workers=1 if ctx.quick else default_workers())
    summary = summarize(protocol, data)
    t = summary["trends"]
    figures = ["loraplus_width.png", "curves.png"]
    plot_loraplus_width(summary["widths"], t, ctx.path(figures[0]))
    plot_loraplus_width_curves(summary["widths"], ctx.path(figures[1]))
    seeds = list(protocol.seeds)
    spreads: dict[str, Any] = {}
    ps = t["per_seed"]
    if ps:
        spreads["best_ratio_loglog_slope"] = spread([ps[s]["ratio_slope"] for s in seeds], seeds)
        spreads["heldout_gain_slope_per_doubling"] = spread(
            [ps[s]["gain_slope"] for s in seeds], seeds)
    for r in summary["widths"]:
        gains = [(p["seed"], p["gain"]) for p in r.get("per_seed", []) if p.get("gain") is not None]
        if gains:
            spreads[f"heldout_gain_w{r['width']}"] = spread([g for _, g in gains],
                                                           [s for s, _ in gains])
    verdict = {True: "holds", False: "does not hold"}[t["holds"]]
    observed = describe_results(summary) + (
        f"\n\nCriterion parts: best ratio grows {t['ratio_grows']}, held-out gain grows "
        f"{t['gain_grows']}, LoRA+ pays at the largest width {t['pays_at_largest']}")
    if ctx.quick:
        observed += (". Quick mode (tiny widths, a few steps) is a smoke run: not judged.")
    else:
        observed += f": the claim {verdict} at these widths."
        if not t["holds"]:
            observed += (" What limits this measurement: the widths reachable on 2 CPU cores "
                         f"({protocol.widths[0]}-{protocol.widths[-1]}, a factor "
                         f"{protocol.widths[-1] // protocol.widths[0]}), "
                         f"{protocol.pretrain_steps} pre-training steps, and seed noise of the "
                         "eval loss comparable to the differences measured.")
    ran = describe_protocol(protocol) + (
        f" {summary['runs']} fine-tuning runs ({summary['cached']} read from the per-run cache "
        f"at {runs_dir}).")
    return Outcome(result={"protocol": protocol.to_dict(), "criterion": CRITERION, **summary},
                   figures=figures, ran=ran, observed=observed,
                   claim_holds=None if ctx.quick else t["holds"], seeds=seeds, spread=spreads,
                   indicative=bool(ctx.quick or t["indicative"]))


LORAPLUS_WIDTH = register(Experiment(
    name="loraplus-width",
    description=("LoRA vs LoRA+ on BERT-style encoders of widths 64-512 pre-trained from "
                 "scratch: best ratio and gain against width"),
    paper="arXiv:2402.12354",
    claim=("The best LoRA+ ratio lr_B / lr_A and LoRA+'s gain over a tuned LoRA grow with the "
           "model width (efficient feature learning needs lr_B / lr_A = Theta(width))."),
    run=run,
    criterion=CRITERION,
    min_seeds=3,
))
