"""LoRA+ and LoRA initialisation on a real pretrained model: the toy results, for real.

Both fine-tune the embedded MiniLM-L6 encoder on tweet sentiment (3 classes) with
``scalelab.train.compare`` — same seed, same data order for every variant.

- ``loraplus-finetune`` (arXiv 2402.12354): LoRA against LoRA+ (ratio 16, head at its own
  lr), each at the default lr of ``scalelab finetune`` (``train.config.DEFAULT_LR``).
  Speedup = the step at which LoRA reaches its best eval loss / the first step at which
  LoRA+ reaches that loss.
- ``lora-init-finetune`` (arXiv 2406.08447): plain LoRA with Init[A] against Init[B] at a
  few learning rates; the claim is that Init[A] reaches the lower loss at its best lr.

Quick mode is a smoke test (a few steps): it reports the numbers but does not judge.
"""

from __future__ import annotations

from typing import Any

from ._registry import Context, Experiment, Outcome, register

INIT_STEPS = 100  # per run in lora-init-finetune's full mode (6 runs)


def _best(run: dict[str, Any]) -> tuple[float | None, int | None]:
    """(best eval loss, first step reaching it) of a report row."""
    from ..train.report import best_loss, steps_to_target

    best = best_loss(run["eval_loss"])
    return best, steps_to_target(run["eval_steps"], run["eval_loss"], best)


def _f(v: float | None) -> str:
    return "diverged" if v is None else f"{v:.4f}"


def _size(ctx: Context, steps: int = 200) -> dict[str, int]:
    if ctx.quick:
        return dict(steps=8, eval_every=4, eval_size=64)
    return dict(steps=steps, eval_every=max(steps // 8, 1), eval_size=512 if steps > 100 else 256)


def _run_loraplus(ctx: Context) -> Outcome:
    from ..plots import plot_finetune_curves
    from ..train import FinetuneConfig, compare

    cfg = FinetuneConfig(seed=ctx.seed, **_size(ctx))
    report = compare(cfg, ("lora", "loraplus"), ctx.path("runs"), quiet=True)
    lora, plus = report["runs"]
    target, lora_step = _best(lora)
    plus_best, _ = _best(plus)
    reached = plus["steps_to_target"]
    speedup = (lora_step / reached) if (lora_step and reached) else None
    plot_finetune_curves(report, ctx.path("loss.png"),
                         title="MiniLM-L6 on tweets: LoRA vs LoRA+ (eval loss)")
    result = {"report": report, "lora_best": target, "lora_best_step": lora_step,
              "loraplus_best": plus_best, "loraplus_steps_to_target": reached,
              "speedup": speedup, "accuracy": {r["variant"]: r["accuracy"] for r in (lora, plus)}}
    both_ok = lora["status"] == plus["status"] == "ok"
    holds = None if ctx.quick else bool(
        both_ok and plus_best is not None and target is not None and plus_best <= target
        and speedup is not None and speedup > 1.0)
    sp = f"{speedup:.2f}x" if speedup is not None else "not reached"
    observed = (f"LoRA's best eval loss {target:.4f} at step {lora_step}; LoRA+ best "
                f"{plus_best:.4f}, reaching LoRA's best at step {reached} (speedup {sp}). "
                f"Final accuracy LoRA {lora['accuracy']:.3f}, LoRA+ {plus['accuracy']:.3f}."
                if target is not None and plus_best is not None else
                f"a run diverged: statuses {lora['status']}, {plus['status']}.")
    if ctx.quick:
        observed += " Quick mode (a few steps) is a smoke test: not judged."
    ran = (f"MiniLM-L6 + tweet sentiment, LoRA r=8 alpha=8 on query/value, batch 16, length "
           f"48, {cfg.steps} steps, eval on {cfg.eval_size} held-out tweets every "
           f"{cfg.eval_every} steps, seed {ctx.seed}: LoRA lr {lora['lr']:g} vs LoRA+ ratio "
           f"{plus['ratio']:g}, lr {plus['lr']:g}, head lr {plus['head_lr']:g} (one seed; "
           "benchmarks/finetune_speedup.py averages seeds).")
    return Outcome(result=result, figures=["loss.png"], ran=ran, observed=observed,
                   claim_holds=holds)


def _run_init(ctx: Context) -> Outcome:
    from ..plots import plot_finetune_curves
    from ..train import FinetuneConfig, compare

    lrs = (3e-3,) if ctx.quick else (1e-3, 3e-3, 1e-2)
    rows, figures = [], []
    for lr in lrs:
        cfg = FinetuneConfig(method="lora", lr=lr, seed=ctx.seed, **_size(ctx, INIT_STEPS))
        report = compare(cfg, ("init-a", "init-b"), ctx.path(f"runs/lr{lr:g}"), quiet=True)
        name = f"loss_lr{lr:g}.png"
        plot_finetune_curves(report, ctx.path(name), title=f"LoRA lr {lr:g}: Init[A] vs Init[B]")
        figures.append(name)
        a, b = report["runs"]
        rows.append({"lr": lr, "init_a_best": _best(a)[0], "init_b_best": _best(b)[0],
                     "init_a_status": a["status"], "init_b_status": b["status"],
                     "init_a_accuracy": a["accuracy"], "init_b_accuracy": b["accuracy"]})
    best_a = min((r["init_a_best"] for r in rows if r["init_a_best"] is not None), default=None)
    best_b = min((r["init_b_best"] for r in rows if r["init_b_best"] is not None), default=None)
    holds = None if ctx.quick else bool(
        best_a is not None and (best_b is None or best_a < best_b))
    lines = [f"lr {r['lr']:g}: best eval loss Init[A] {_f(r['init_a_best'])}, Init[B] "
             f"{_f(r['init_b_best'])} ({r['init_a_status']}/{r['init_b_status']})" for r in rows]
    observed = "; ".join(lines) + f". Best over lrs: Init[A] {_f(best_a)}, Init[B] {_f(best_b)}."
    if ctx.quick:
        observed += " Quick mode (a few steps) is a smoke test: not judged."
    n_steps = _size(ctx, INIT_STEPS)["steps"]
    ran = (f"MiniLM-L6 + tweet sentiment, plain LoRA r=8 on query/value, lrs "
           f"{', '.join(f'{lr:g}' for lr in lrs)}, {n_steps} steps each, Init[A] "
           "(A ~ N(0, 1/n), B = 0) vs Init[B] (A = 0, B ~ N(0, 1/r)), same seed and data.")
    return Outcome(result={"rows": rows, "best_init_a": best_a, "best_init_b": best_b},
                   figures=figures, ran=ran, observed=observed, claim_holds=holds)


LORAPLUS_FINETUNE = register(Experiment(
    name="loraplus-finetune",
    description="LoRA vs LoRA+ fine-tuning the real MiniLM-L6 on tweet sentiment (eval loss)",
    paper="arXiv:2402.12354",
    claim=("LoRA+ (lr_B = ratio x lr_A) fine-tunes faster than LoRA at equal compute (up to "
           "~2x fewer steps) and reaches a loss at least as low."),
    run=_run_loraplus,
    slow_quick=True,
))

LORA_INIT_FINETUNE = register(Experiment(
    name="lora-init-finetune",
    description="LoRA Init[A] vs Init[B] fine-tuning the real MiniLM-L6 on tweets, per lr",
    paper="arXiv:2406.08447",
    claim=("Init[A] (A random, B = 0) reaches a lower loss than Init[B] (A = 0, B random) at "
           "its best learning rate, tolerating larger learning rates."),
    run=_run_init,
    slow_quick=True,
))
