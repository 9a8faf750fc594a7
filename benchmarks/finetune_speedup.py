"""LoRA+ speedup over tuned LoRA on the default task, with a protocol fixed before the numbers.

Task: the embedded MiniLM-L6 encoder + tweet sentiment (3 classes), LoRA r=8 alpha=8 on
query/value, classifier head trained fully, batch 16, length 48, ``--steps`` (300) steps,
eval every 25 steps on ``--eval-size`` (1,000) held-out tweets (the same ones for every run).
Eval curves are smoothed by a centred 3-point moving average before anything is read off
them (ANCHORS.md saw ~0.03 of noise between evaluations).

1. Tuning on seed 0. LoRA: lr in {1e-3, 2e-3, 3e-3, 5e-3}. LoRA+: lr in {2.5e-4, 5e-4, 1e-3}
   x ratio in {4, 16} x head policy in {own lr 3e-3, "official" (matrices at lr, biases at
   lr * ratio)}. Best LoRA = lowest best smoothed eval loss. Best LoRA+ = fewest steps to
   reach best-LoRA's best smoothed loss (ties: lower best loss; if none reaches it, the
   lowest best loss).
2. Evaluation on seeds 1, 2, 3 (not the tuning seed) of the two chosen configurations. Per
   seed: target = LoRA's best smoothed loss, step_L = the first step LoRA reaches it,
   step_P = the first step LoRA+ reaches it; speedup = step_L / step_P (0 when LoRA+ never
   reaches it). Headline: the median speedup with min/max, and final accuracy of both.

Every run is cached under ``--cache`` (one folder per configuration, checkpointed while it
runs), so the benchmark resumes where it stopped, across sessions. The full protocol is
about an hour on 2 CPU cores; ``--reduced`` (150 steps, 500 eval tweets, a 2 + 4 grid,
seeds 1-2) about a quarter of that.

Run: ``.venv/bin/python benchmarks/finetune_speedup.py [--reduced]`` (prints a table, writes
benchmarks/results/finetune_speedup.json, or finetune_speedup_reduced.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import time
from pathlib import Path

from scalelab.experiments.loraplus_finetune import find_cached, run_folder
from scalelab.train.report import best_loss, steps_to_target

HERE = Path(__file__).resolve().parent
HEAD_OWN = 3e-3


def grids(reduced: bool) -> tuple[list[dict], list[dict], list[int]]:
    if reduced:
        lora = [dict(method="lora", lr=lr) for lr in (1e-3, 3e-3)]
        plus = [dict(method="loraplus", lr=lr, ratio=r, head_lr=HEAD_OWN)
                for lr in (5e-4, 1e-3) for r in (4.0, 16.0)]
        return lora, plus, [1, 2]
    lora = [dict(method="lora", lr=lr) for lr in (1e-3, 2e-3, 3e-3, 5e-3)]
    plus = [dict(method="loraplus", lr=lr, ratio=r, head_lr=h)
            for lr in (2.5e-4, 5e-4, 1e-3) for r in (4.0, 16.0) for h in (HEAD_OWN, "official")]
    return lora, plus, [1, 2, 3]


def smooth(values: list[float | None]) -> list[float | None]:
    """Centred 3-point moving average over the finite neighbours (edges: 2 points)."""
    out = []
    for i in range(len(values)):
        window = [v for v in values[max(0, i - 1):i + 2] if v is not None]
        out.append(sum(window) / len(window) if values[i] is not None and window else None)
    return out


def best_smoothed(run: dict) -> tuple[float, int] | tuple[None, None]:
    """The lowest smoothed eval loss and the first step at which the smoothed curve hits it."""
    sm = smooth(run["eval_loss"])
    best = best_loss(sm)
    return (best, steps_to_target(run["eval_steps"], sm, best)) if best is not None else (
        None, None)


def run_cached(overrides: dict, seed: int, base: dict, cache: Path, accelerator) -> dict:
    """One fine-tuning run, read from the cache when it finished before; resumed otherwise."""
    from scalelab.train import FinetuneConfig, finetune

    doc = find_cached(overrides, seed, cache, base)
    if doc is not None:
        return doc
    cfg = FinetuneConfig(**base, **overrides, seed=seed)
    folder = run_folder(overrides, seed, base, cache)
    label, done = folder.name, folder / "run.json"
    t0 = time.perf_counter()
    result = finetune(cfg, folder, resume=True, quiet=True, accelerator=accelerator)
    if result.status == "interrupted":
        raise SystemExit(f"interrupted in {label}; rerun to resume")
    shutil.rmtree(folder / "checkpoint", ignore_errors=True)  # keep the cache small
    print(f"  ran {label}: best smoothed {best_smoothed(result.to_dict())[0]}, "
          f"{time.perf_counter() - t0:.0f} s", flush=True)
    return json.loads(done.read_text())


def describe(o: dict) -> str:
    if o["method"] == "lora":
        return f"LoRA lr {o['lr']:g}"
    head = "official" if o["head_lr"] == "official" else f"head {o['head_lr']:g}"
    return f"LoRA+ lr {o['lr']:g} ratio {o['ratio']:g} {head}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--reduced", action="store_true", help="smaller grid and runs (~15 min)")
    p.add_argument("--cache", type=Path, default=HERE / "results" / "finetune_speedup_cache")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 2)))
    args = p.parse_args()
    import torch

    from scalelab.train.setup import make_accelerator

    torch.set_num_threads(args.threads)
    steps, eval_size = (150, 500) if args.reduced else (300, 1000)
    base = dict(steps=steps, eval_every=25, eval_size=eval_size, batch_size=16, rank=8,
                alpha=8.0)
    lora_grid, plus_grid, seeds = grids(args.reduced)
    cache = args.cache / ("reduced" if args.reduced else "full")
    acc = make_accelerator()
    t0 = time.perf_counter()

    print(f"stage 1: tuning on seed 0 ({len(lora_grid)} LoRA + {len(plus_grid)} LoRA+ runs)")
    tuning = [(o, run_cached(o, 0, base, cache, acc)) for o in lora_grid + plus_grid]
    lora_runs = [(o, r) for o, r in tuning if o["method"] == "lora"]
    best_lora = min(lora_runs, key=lambda t: best_smoothed(t[1])[0] or float("inf"))
    target0 = best_smoothed(best_lora[1])[0]

    def plus_key(t):
        steps_ = steps_to_target(t[1]["eval_steps"], smooth(t[1]["eval_loss"]), target0)
        return (steps_ is None, steps_ or 0, best_smoothed(t[1])[0] or float("inf"))
    best_plus = min(((o, r) for o, r in tuning if o["method"] == "loraplus"), key=plus_key)
    rows1 = []
    for o, r in tuning:
        b, at = best_smoothed(r)
        reach = steps_to_target(r["eval_steps"], smooth(r["eval_loss"]), target0)
        rows1.append({"config": describe(o), "overrides": o, "best_smoothed": b, "at": at,
                      "reaches_lora_best_at": reach, "final_accuracy": r["accuracy"],
                      "status": r["status"]})

    print(f"stage 2: seeds {seeds}: {describe(best_lora[0])} vs {describe(best_plus[0])}")
    rows2 = []
    for s in seeds:
        lr_run = run_cached(best_lora[0], s, base, cache, acc)
        pl_run = run_cached(best_plus[0], s, base, cache, acc)
        target, step_l = best_smoothed(lr_run)
        step_p = steps_to_target(pl_run["eval_steps"], smooth(pl_run["eval_loss"]), target)
        rows2.append({"seed": s, "lora_best_smoothed": target, "lora_step": step_l,
                      "loraplus_best_smoothed": best_smoothed(pl_run)[0],
                      "loraplus_step": step_p,
                      "speedup": (step_l / step_p) if step_p else 0.0,
                      "lora_accuracy": lr_run["accuracy"], "loraplus_accuracy": pl_run["accuracy"]})
    speedups = [r["speedup"] for r in rows2]
    summary = {"median_speedup": statistics.median(speedups), "min_speedup": min(speedups),
               "max_speedup": max(speedups), "target_median": 1.5,
               "meets_target": statistics.median(speedups) >= 1.5,
               "lora_accuracy_mean": statistics.mean(r["lora_accuracy"] for r in rows2),
               "loraplus_accuracy_mean": statistics.mean(r["loraplus_accuracy"] for r in rows2),
               "best_lora": describe(best_lora[0]), "best_loraplus": describe(best_plus[0])}

    print(f"\n{'configuration (seed 0)':44} {'best(sm)':>9} {'at':>5} {'reach':>6} {'acc':>6}")
    for r in rows1:
        b = f"{r['best_smoothed']:.4f}" if r["best_smoothed"] is not None else "-"
        print(f"{r['config']:44} {b:>9} {str(r['at']):>5} {str(r['reaches_lora_best_at']):>6} "
              f"{r['final_accuracy'] or 0:>6.3f}")
    print(f"\n{'seed':>4} {'LoRA best':>10} {'at':>5} {'LoRA+ reach':>12} {'speedup':>8} "
          f"{'acc LoRA':>9} {'acc LoRA+':>10}")
    for r in rows2:
        print(f"{r['seed']:>4} {r['lora_best_smoothed']:>10.4f} {r['lora_step']:>5} "
              f"{str(r['loraplus_step']):>12} {r['speedup']:>8.2f} {r['lora_accuracy']:>9.3f} "
              f"{r['loraplus_accuracy']:>10.3f}")
    print(f"\nmedian speedup {summary['median_speedup']:.2f}x (min {summary['min_speedup']:.2f}, "
          f"max {summary['max_speedup']:.2f}); target >= 1.5x: "
          f"{'met' if summary['meets_target'] else 'not met'}")
    doc = {"protocol": __doc__, "reduced": args.reduced, "base": base,
           "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, "
                      f"{args.threads} torch threads",
           "wall_s_this_session": round(time.perf_counter() - t0, 1),
           "tuning": rows1, "evaluation": rows2, "summary": summary}
    name = "finetune_speedup_reduced.json" if args.reduced else "finetune_speedup.json"
    out = HERE / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
