"""LoRA+ and LoRA initialisation on a real pretrained model: the toy results, for real.

Both fine-tune the embedded MiniLM-L6 encoder on tweet sentiment (3 classes).

- ``loraplus-finetune`` (arXiv 2402.12354), full mode: the protocol of
  ``benchmarks/finetune_speedup.py``, fixed there before its numbers — tune on seed S (a LoRA
  lr grid; a LoRA+ lr x ratio x head-policy grid), then evaluate the two chosen
  configurations on the fresh seeds S+1..S+3. Eval curves are smoothed by a centred 3-point
  average; per seed, speed-up = the step at which LoRA reaches its best smoothed eval loss /
  the first step at which LoRA+ reaches that loss (0 when it never does). Every run is read
  from (or written to) the benchmark's per-configuration cache, so with the default seed the
  full mode reads the 22 cached runs and trains nothing. Quick mode: LoRA against LoRA+ at the
  defaults of ``scalelab finetune`` for a few steps (a smoke test, not judged).
- ``lora-init-finetune`` (arXiv 2406.08447): plain LoRA with Init[A] against Init[B] at
  three learning rates, on three seeds (the same seed and data order for both inits); the
  claim is that Init[A] reaches the lower (smoothed) eval loss at its best lr.

Interpretation: a cached run is reused when its stored configuration agrees with the
requested one on every field both have (so a field added to ``FinetuneConfig`` later, at its
default, does not invalidate the cache).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
from pathlib import Path
from typing import Any

from ._common import run_cache, seeds_for, spread
from .registry import Context, Experiment, Outcome, register

INIT_STEPS = 100  # per run in lora-init-finetune's full mode (3 lrs x 2 inits x 3 seeds)
INIT_LRS = (1e-3, 3e-3, 1e-2)
# the benchmark's protocol (benchmarks/finetune_speedup.py, full mode)
SPEEDUP_BASE = dict(steps=300, eval_every=25, eval_size=1000, batch_size=16, rank=8, alpha=8.0)
HEAD_OWN = 3e-3
LORA_GRID = [dict(method="lora", lr=lr) for lr in (1e-3, 2e-3, 3e-3, 5e-3)]
PLUS_GRID = [dict(method="loraplus", lr=lr, ratio=r, head_lr=h)
             for lr in (2.5e-4, 5e-4, 1e-3) for r in (4.0, 16.0) for h in (HEAD_OWN, "official")]
EVAL_SEEDS = 3
CACHE_ENV = "SCALELAB_SPEEDUP_CACHE"

LORAPLUS_CRITERION = (
    "Full mode, the protocol of benchmarks/finetune_speedup.py: tune on seed S, evaluate the "
    "chosen LoRA and LoRA+ configurations on seeds S+1..S+3 (eval loss smoothed by a centred "
    "3-point average). Holds when the median speed-up over the 3 evaluation seeds is > 1 (the "
    "benchmark's own target, 1.5x, is reported too) and the median of LoRA+'s best smoothed "
    "eval loss minus LoRA's is <= 0. Quick mode is a smoke test and is not judged.")
INIT_CRITERION = (
    "Full mode: on each of 3 seeds, Init[A]'s best smoothed eval loss over the lrs "
    f"{', '.join(f'{lr:g}' for lr in INIT_LRS)} is lower than Init[B]'s (every seed). The lr "
    "each init prefers is reported, not judged. Quick mode is a smoke test and is not judged.")


def smooth(values: list[float | None]) -> list[float | None]:
    """Centred 3-point moving average over the finite neighbours (edges: 2 points), as in
    benchmarks/finetune_speedup.py."""
    out: list[float | None] = []
    for i in range(len(values)):
        window = [v for v in values[max(0, i - 1):i + 2] if v is not None]
        out.append(sum(window) / len(window) if values[i] is not None and window else None)
    return out


def best_smoothed(run: dict[str, Any]) -> tuple[float | None, int | None]:
    """The lowest smoothed eval loss and the first step at which the smoothed curve hits it."""
    from ..train.report import best_loss, steps_to_target

    sm = smooth(run["eval_loss"])
    best = best_loss(sm)
    return (best, steps_to_target(run["eval_steps"], sm, best)) if best is not None else (
        None, None)


def _f(v: float | None) -> str:
    return "diverged" if v is None else f"{v:.4f}"


def speedup_cache_dir() -> Path:
    """Where the speed-up protocol's runs are cached: ``$SCALELAB_SPEEDUP_CACHE``, else the
    repository's ``benchmarks/results/finetune_speedup_cache/full`` when scalelab runs from a
    checkout that has it, else ``<scalelab cache>/finetune_speedup/full``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env)
    return run_cache("finetune_speedup_cache/full", "finetune_speedup/full")


def _label(overrides: dict, seed: int) -> str:
    return "-".join(f"{k}{v}" for k, v in overrides.items()) + f"-s{seed}"


#: The configuration fields the protocol fixed when its cache was made (2026-11-27). Later
#: fields (schedule, precision, grad accumulation, chat rendering, ...) are at values that
#: reproduce that loop exactly for this task (constant lr, no warm-up, fp32 on CPU).
PROTOCOL_FIELDS = ("model", "dataset", "method", "lr", "ratio", "head_lr", "rank", "alpha",
                   "targets", "dropout", "init", "steps", "epochs", "batch_size", "max_length",
                   "seed", "eval_every", "eval_size", "checkpoint_every", "weight_decay",
                   "warmup_steps")


def protocol_dict(cfg: Any) -> dict:
    """The protocol fields of a config (or of a cached run's config dict): the cache key of
    this experiment and of ``benchmarks/finetune_speedup.py``."""
    d = cfg if isinstance(cfg, dict) else cfg.to_dict()
    out = {k: d.get(k) for k in PROTOCOL_FIELDS}
    # a resolved config (a run.json written since) holds the defaults the cache left implicit
    if out["max_length"] == 48 and d.get("dataset") == "tweets":
        out["max_length"] = None
    if d.get("method") == "lora" and out["head_lr"] == d.get("lr"):
        out["head_lr"] = None
    out["warmup_steps"] = out["warmup_steps"] or 0
    return out


def run_folder(overrides: dict, seed: int, base: dict, cache: Path) -> Path:
    """The cache folder of one run: its label and the hash of its protocol fields."""
    from ..train import FinetuneConfig

    protocol = protocol_dict(FinetuneConfig(**base, **overrides, seed=seed))
    key = hashlib.sha1(json.dumps(protocol, sort_keys=True).encode()).hexdigest()[:10]
    return cache / f"{_label(overrides, seed)}-{key}"


def find_cached(overrides: dict, seed: int, cache: Path,
                base: dict | None = None) -> dict | None:
    """The finished cached run of this configuration (``run.json``'s document), or None: a
    run matches when its protocol fields (:func:`protocol_dict`) equal the requested ones."""
    from ..train import FinetuneConfig

    want = protocol_dict(FinetuneConfig(**(base or SPEEDUP_BASE), **overrides, seed=seed))
    label = _label(overrides, seed)
    for done in sorted(cache.glob(f"{label}-*/run.json")) if cache.is_dir() else []:
        doc = json.loads(done.read_text())
        if doc.get("status") in ("ok", "diverged") and protocol_dict(doc.get("config") or {}) == want:
            return doc
    return None


def cached_run(overrides: dict, seed: int, cache: Path, accelerator=None,
               base: dict | None = None) -> dict:
    """One run of the protocol: read from ``cache`` when :func:`find_cached` finds it,
    trained and cached otherwise (resuming its checkpoint; folder names as the benchmark's)."""
    from ..train import FinetuneConfig, finetune

    base = base or SPEEDUP_BASE
    doc = find_cached(overrides, seed, cache, base)
    if doc is not None:
        return doc
    folder = run_folder(overrides, seed, base, cache)
    result = finetune(FinetuneConfig(**base, **overrides, seed=seed), folder, resume=True,
                      quiet=True, accelerator=accelerator)
    if result.status == "interrupted":
        raise RuntimeError(f"loraplus-finetune: run {folder.name} was interrupted; rerun to resume")
    shutil.rmtree(folder / "checkpoint", ignore_errors=True)  # keep the cache small
    return json.loads((folder / "run.json").read_text())


def _describe_config(o: dict) -> str:
    if o["method"] == "lora":
        return f"LoRA lr {o['lr']:g}"
    head = "official" if o["head_lr"] == "official" else f"head {o['head_lr']:g}"
    return f"LoRA+ lr {o['lr']:g} ratio {o['ratio']:g} {head}"


def speedup_protocol(tune_seed: int, eval_seeds: list[int], cache: Path) -> dict:
    """Stage 1 (tuning on ``tune_seed``) and stage 2 (``eval_seeds``) of the benchmark."""
    from ..train.report import steps_to_target

    acc = None
    tuning = [(o, cached_run(o, tune_seed, cache, acc)) for o in LORA_GRID + PLUS_GRID]
    lora_runs = [(o, r) for o, r in tuning if o["method"] == "lora"]
    best_lora = min(lora_runs, key=lambda t: best_smoothed(t[1])[0] or float("inf"))
    target0 = best_smoothed(best_lora[1])[0]

    def plus_key(t):
        s = steps_to_target(t[1]["eval_steps"], smooth(t[1]["eval_loss"]), target0)
        return (s is None, s or 0, best_smoothed(t[1])[0] or float("inf"))

    best_plus = min(((o, r) for o, r in tuning if o["method"] == "loraplus"), key=plus_key)
    stage1 = []
    for o, r in tuning:
        b, at = best_smoothed(r)
        stage1.append({"config": _describe_config(o), "overrides": o, "best_smoothed": b,
                       "at": at, "status": r["status"], "final_accuracy": r["accuracy"],
                       "reaches_lora_best_at": steps_to_target(r["eval_steps"],
                                                               smooth(r["eval_loss"]), target0)})
    stage2 = []
    for s in eval_seeds:
        lr_run = cached_run(best_lora[0], s, cache, acc)
        pl_run = cached_run(best_plus[0], s, cache, acc)
        target, step_l = best_smoothed(lr_run)
        step_p = steps_to_target(pl_run["eval_steps"], smooth(pl_run["eval_loss"]), target)
        plus_best = best_smoothed(pl_run)[0]
        stage2.append({
            "seed": s, "lora_best_smoothed": target, "lora_step": step_l,
            "loraplus_best_smoothed": plus_best, "loraplus_step": step_p,
            "speedup": (step_l / step_p) if step_p and step_l else 0.0,
            "loss_difference": (plus_best - target) if None not in (plus_best, target)
            else float("inf"),
            "lora_accuracy": lr_run["accuracy"], "loraplus_accuracy": pl_run["accuracy"],
            "lora_curve": {"steps": lr_run["eval_steps"], "eval_loss": lr_run["eval_loss"]},
            "loraplus_curve": {"steps": pl_run["eval_steps"], "eval_loss": pl_run["eval_loss"]},
        })
    return {"tuning": stage1, "evaluation": stage2, "best_lora": _describe_config(best_lora[0]),
            "best_loraplus": _describe_config(best_plus[0]), "tune_seed": tune_seed}


def _loraplus_quick(ctx: Context) -> Outcome:
    from ..plots import plot_finetune_curves
    from ..train import FinetuneConfig, compare

    cfg = FinetuneConfig(seed=ctx.seed, steps=8, eval_every=4, eval_size=64)
    report = compare(cfg, ("lora", "loraplus"), ctx.path("runs"), quiet=True)
    lora, plus = report["runs"]
    target, lora_step = best_smoothed(lora)
    plus_best, _ = best_smoothed(plus)
    plot_finetune_curves(report, ctx.path("loss.png"),
                         title="MiniLM-L6 on tweets: LoRA vs LoRA+ (eval loss)")
    observed = (f"LoRA's best smoothed eval loss {_f(target)} at step {lora_step}; LoRA+ best "
                f"{_f(plus_best)}. Final accuracy LoRA {lora['accuracy']:.3f}, LoRA+ "
                f"{plus['accuracy']:.3f}. Quick mode (a few steps) is a smoke test: not judged.")
    ran = (f"MiniLM-L6 + tweet sentiment, LoRA r=8 alpha=8 on query/value, {cfg.steps} steps, "
           f"eval on {cfg.eval_size} held-out tweets every {cfg.eval_every} steps, seed "
           f"{ctx.seed}: LoRA lr {lora['lr']:g} vs LoRA+ ratio {plus['ratio']:g}, lr "
           f"{plus['lr']:g}, head lr {plus['head_lr']:g}.")
    return Outcome(result={"report": report, "lora_best_smoothed": target,
                           "loraplus_best_smoothed": plus_best},
                   figures=["loss.png"], ran=ran, observed=observed, claim_holds=None,
                   seeds=[ctx.seed])


def run_loraplus(ctx: Context) -> Outcome:
    if ctx.quick:
        return _loraplus_quick(ctx)
    from ..plots import plot_speedup_protocol

    cache = speedup_cache_dir()
    seeds = [ctx.seed + 1 + k for k in range(EVAL_SEEDS)]
    res = speedup_protocol(ctx.seed, seeds, cache)
    rows = res["evaluation"]
    speedups = [r["speedup"] for r in rows]
    diffs = [r["loss_difference"] for r in rows]
    median = statistics.median(speedups)
    median_diff = statistics.median(diffs)
    holds = bool(median > 1.0 and median_diff <= 0.0)
    plot_speedup_protocol(res, ctx.path("speedup_protocol.png"))
    per = "; ".join(
        f"seed {r['seed']}: LoRA best smoothed {_f(r['lora_best_smoothed'])} at step "
        f"{r['lora_step']}, LoRA+ best {_f(r['loraplus_best_smoothed'])}, reaches LoRA's at "
        f"{r['loraplus_step'] if r['loraplus_step'] is not None else 'never'} (speed-up "
        f"{r['speedup']:.2f}x), accuracy {r['lora_accuracy']:.3f} / {r['loraplus_accuracy']:.3f}"
        for r in rows)
    observed = (f"Tuning on seed {ctx.seed} chose {res['best_lora']} and {res['best_loraplus']}. "
                f"{per}. Median speed-up {median:.2f}x (min {min(speedups):.2f}, max "
                f"{max(speedups):.2f}; the benchmark's target 1.5x "
                f"{'met' if median >= 1.5 else 'not met'}); median loss difference (LoRA+ - "
                f"LoRA) {median_diff:+.4f}.")
    ran = (f"The protocol of benchmarks/finetune_speedup.py: MiniLM-L6 + tweets, LoRA r=8 "
           f"alpha=8 on query/value, head trained, batch 16, {SPEEDUP_BASE['steps']} steps, "
           f"eval every {SPEEDUP_BASE['eval_every']} steps on {SPEEDUP_BASE['eval_size']} "
           f"held-out tweets; stage 1 tunes {len(LORA_GRID)} LoRA and {len(PLUS_GRID)} LoRA+ "
           f"configurations on seed {ctx.seed}, stage 2 evaluates the chosen two on seeds "
           f"{seeds}. Runs read from / cached in {cache}.")
    return Outcome(result={**res, "median_speedup": median, "median_loss_difference":
                           median_diff, "benchmark_target_met": median >= 1.5,
                           "cache": str(cache)},
                   figures=["speedup_protocol.png"], ran=ran, observed=observed,
                   claim_holds=holds, seeds=seeds,
                   spread={"speedup": spread(speedups, seeds),
                           "loraplus_minus_lora_best_smoothed_loss": spread(diffs, seeds)})


def run_init(ctx: Context) -> Outcome:
    from ..plots import plot_finetune_curves
    from ..train import FinetuneConfig, compare

    lrs = (3e-3,) if ctx.quick else INIT_LRS
    seeds = seeds_for(ctx, 1 if ctx.quick else 3)
    size = (dict(steps=8, eval_every=4, eval_size=64) if ctx.quick else
            dict(steps=INIT_STEPS, eval_every=max(INIT_STEPS // 8, 1), eval_size=256))
    rows, figures = [], []
    for seed in seeds:
        for lr in lrs:
            cfg = FinetuneConfig(method="lora", lr=lr, seed=seed, **size)
            report = compare(cfg, ("init-a", "init-b"), ctx.path(f"runs/s{seed}/lr{lr:g}"),
                             quiet=True)
            if seed == seeds[0]:
                name = f"loss_lr{lr:g}.png"
                plot_finetune_curves(report, ctx.path(name),
                                     title=f"LoRA lr {lr:g}, seed {seed}: Init[A] vs Init[B]")
                figures.append(name)
            a, b = report["runs"]
            rows.append({"seed": seed, "lr": lr, "init_a_best": best_smoothed(a)[0],
                         "init_b_best": best_smoothed(b)[0], "init_a_status": a["status"],
                         "init_b_status": b["status"], "init_a_accuracy": a["accuracy"],
                         "init_b_accuracy": b["accuracy"]})

    def best(seed, key):
        vals = [(r[key], r["lr"]) for r in rows if r["seed"] == seed and r[key] is not None]
        return min(vals) if vals else (None, None)

    per_seed = []
    for seed in seeds:
        (la, lr_a), (lb, lr_b) = best(seed, "init_a_best"), best(seed, "init_b_best")
        per_seed.append({"seed": seed, "best_init_a": la, "best_lr_init_a": lr_a,
                         "best_init_b": lb, "best_lr_init_b": lr_b,
                         "b_minus_a": (lb - la) if None not in (la, lb) else
                         (float("inf") if la is not None else float("-inf"))})
    holds = None if ctx.quick else bool(all(p["b_minus_a"] > 0 for p in per_seed))
    lines = [f"seed {r['seed']}, lr {r['lr']:g}: best smoothed eval loss Init[A] "
             f"{_f(r['init_a_best'])}, Init[B] {_f(r['init_b_best'])} "
             f"({r['init_a_status']}/{r['init_b_status']})" for r in rows]
    observed = "; ".join(lines) + ". Best over lrs per seed: " + "; ".join(
        f"seed {p['seed']}: Init[A] {_f(p['best_init_a'])} (lr {p['best_lr_init_a']}), Init[B] "
        f"{_f(p['best_init_b'])} (lr {p['best_lr_init_b']})" for p in per_seed) + "."
    if ctx.quick:
        observed += " Quick mode (a few steps) is a smoke test: not judged."
    ran = (f"MiniLM-L6 + tweet sentiment, plain LoRA r=8 on query/value, lrs "
           f"{', '.join(f'{lr:g}' for lr in lrs)}, {size['steps']} steps each, eval on "
           f"{size['eval_size']} held-out tweets every {size['eval_every']} steps (3-point "
           f"smoothed), seeds {seeds}; Init[A] (A ~ N(0, 1/n), B = 0) vs Init[B] (A = 0, "
           "B ~ N(0, 1/r)), same seed and data order.")
    finite = [p["b_minus_a"] for p in per_seed]
    return Outcome(result={"rows": rows, "per_seed": per_seed}, figures=figures, ran=ran,
                   observed=observed, claim_holds=holds, seeds=seeds,
                   spread={"init_b_minus_init_a_best_smoothed_loss": spread(finite, seeds)})


LORAPLUS_FINETUNE = register(Experiment(
    name="loraplus-finetune",
    description="LoRA vs LoRA+ fine-tuning the real MiniLM-L6 on tweets (benchmark protocol)",
    paper="arXiv:2402.12354",
    claim=("LoRA+ (lr_B = ratio x lr_A) fine-tunes faster than LoRA at equal compute (up to "
           "~2x fewer steps) and reaches a loss at least as low."),
    run=run_loraplus,
    slow_quick=True,
    criterion=LORAPLUS_CRITERION,
    min_seeds=3,
))

LORA_INIT_FINETUNE = register(Experiment(
    name="lora-init-finetune",
    description="LoRA Init[A] vs Init[B] fine-tuning the real MiniLM-L6 on tweets, per lr",
    paper="arXiv:2406.08447",
    claim=("Init[A] (A random, B = 0) reaches a lower loss than Init[B] (A = 0, B random) at "
           "its best learning rate, tolerating larger learning rates."),
    run=run_init,
    slow_quick=True,
    criterion=INIT_CRITERION,
    min_seeds=3,
))
