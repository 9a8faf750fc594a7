"""Time to score and prune a ResNet-sized conv net at initialisation, per method.

The model is :class:`scalelab.nn.ConvResNet` (default width 128, 16 blocks: ~2.4M prunable
weights) on 3x8x8 inputs. Each method runs :func:`scalelab.prune.prune_at_init` at 90%
sparsity (global scope, rescaling off, so every row is "score + exact top-k + mask") on a
fresh copy of the same model; the baseline is ``torch.nn.utils.prune.global_unstructured``
with ``L1Unstructured`` on the same layers. Also timed: ``magnitude`` with the rescaling trick
on, and SynFlow with a float32 pass instead of float64; and checked: whether scalelab's
magnitude masks equal torch's L1 masks (they rank the same scores). SNIP / GraSP see one
batch of ``--batch`` random images; SynFlow runs ``--rounds`` rounds (100 in the paper).
Each method runs interleaved with the baseline (alternating which goes first) for
``--repeats`` rounds, one for GraSP and SynFlow; the headline is the median of the
per-round time ratios, robust to load from other processes.

Run: ``.venv/bin/python benchmarks/prune_speed.py`` (prints a table, writes
benchmarks/results/prune_speed.json).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch.nn.utils import prune as torch_prune

from scalelab._utils import seed_everything, to_jsonable
from scalelab.nn import ConvResNet
from scalelab.prune import apply_masks_, prunable_layers, prune_at_init, synflow_masks

RESULTS = Path(__file__).resolve().parent / "results" / "prune_speed.json"
METHODS = ("magnitude", "random", "snip", "grasp", "synflow")
EXTRA = ("magnitude + rescale", "synflow (float32 pass)")


def torch_l1(model, sparsity: float) -> None:
    params = [(m, "weight") for _, m in prunable_layers(model)]
    torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured,
                                    amount=sparsity)


def masks_of(model) -> torch.Tensor:
    return torch.cat([m.weight_mask.flatten() for _, m in prunable_layers(model)])


def timed(fn, base) -> tuple[float, object]:
    """Seconds of ``fn(fresh copy of base)`` (the copy is not timed), and the pruned copy."""
    model = copy.deepcopy(base)
    start = time.perf_counter()
    fn(model)
    return time.perf_counter() - start, model


def interleaved(fn, baseline, base, rounds: int) -> tuple[float, float, float, object]:
    """Run ``fn`` and ``baseline`` in alternating order for ``rounds`` rounds, so load bursts
    from other processes hit both alike. Returns the medians of ``fn``'s and the baseline's
    seconds, the median of the per-round ratios, and ``fn``'s last pruned model."""
    t_fn, t_base, ratios, model = [], [], [], None
    for i in range(rounds):
        if i % 2:
            tb, _ = timed(baseline, base)
            tf, model = timed(fn, base)
        else:
            tf, model = timed(fn, base)
            tb, _ = timed(baseline, base)
        t_fn.append(tf)
        t_base.append(tb)
        ratios.append(tf / tb)
    return (statistics.median(t_fn), statistics.median(t_base), statistics.median(ratios),
            model)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--depth", type=int, default=16)
    ap.add_argument("--image", type=int, default=8, help="input height = width")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=100, help="SynFlow rounds")
    ap.add_argument("--sparsity", type=float, default=0.9)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--methods", default=",".join(METHODS + EXTRA),
                    help="comma-separated subset of the rows to run")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1: stable timings on a shared machine, where two "
                         "threads per process oversubscribe the cores)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)
    base = ConvResNet(3, args.width, args.depth, 10)
    n_weights = sum(m.weight.numel() for _, m in prunable_layers(base))
    x = torch.randn(args.batch, 3, args.image, args.image)
    y = torch.randint(0, 10, (args.batch,))
    shape = (3, args.image, args.image)

    def baseline(m):
        torch_l1(m, args.sparsity)

    def ours(name, rescale):
        return lambda m: prune_at_init(m, args.sparsity, name, data=(x, y), rescale=rescale,
                                       input_shape=shape, iterations=args.rounds,
                                       seed=args.seed)

    def synflow32(m):
        apply_masks_(m, synflow_masks(m, args.sparsity, iterations=args.rounds,
                                      input_shape=shape, dtype=torch.float32))

    _, ref = timed(baseline, base)
    cases = [(m, ours(m, False)) for m in METHODS] + [
        ("magnitude + rescale", ours("magnitude", True)), ("synflow (float32 pass)", synflow32)]
    wanted = [m.strip() for m in args.methods.split(",")]
    unknown = [m for m in wanted if m not in METHODS + EXTRA]
    if unknown:
        raise SystemExit(f"--methods: unknown {unknown}; known: {', '.join(METHODS + EXTRA)}")
    rows = []
    for method, fn in cases:
        if method not in wanted:
            continue
        slow = method.startswith(("synflow", "grasp"))
        t, t_base, ratio, model = interleaved(fn, baseline, base, 1 if slow else args.repeats)
        row = {"method": method, "seconds": t, "baseline_seconds": t_base,
               "ratio_to_baseline": ratio, "kept": int(masks_of(model).sum())}
        if method == "magnitude":
            row["same_masks_as_torch_l1"] = bool(torch.equal(masks_of(model), masks_of(ref)))
        rows.append(row)
    t_base = statistics.median(r["baseline_seconds"] for r in rows)
    rows.insert(0, {"method": "torch L1 global_unstructured (baseline)", "seconds": t_base,
                    "baseline_seconds": t_base, "ratio_to_baseline": 1.0,
                    "kept": int(masks_of(ref).sum())})

    print(f"ConvResNet width {args.width}, {args.depth} blocks, {n_weights:,} prunable weights; "
          f"input 3x{args.image}x{args.image}; sparsity {args.sparsity}; "
          f"{torch.get_num_threads()} torch threads")
    print(f"{'method':42s} {'seconds':>9s} {'x baseline':>11s} {'kept':>10s}")
    for r in rows:
        print(f"{r['method']:42s} {r['seconds']:9.3f} {r['ratio_to_baseline']:11.2f} "
              f"{r['kept']:10,d}")
    same = [r["same_masks_as_torch_l1"] for r in rows if "same_masks_as_torch_l1" in r]
    if same:
        print(f"magnitude masks identical to torch's L1 masks: {same[0]}")
    doc = {
        "benchmark": "prune_speed",
        "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, "
                   f"{torch.get_num_threads()} torch threads, torch {torch.__version__}",
        "config": vars(args) | {"prunable_weights": n_weights},
        "rows": rows,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(to_jsonable(doc), indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
