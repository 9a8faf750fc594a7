"""LoRA+ overhead: optimizer steps with LoRA+ groups vs one-group AdamW, and group-building time.

1. Same PEFT model (a Llama-shaped model built from a config, LoRA r=16 on all seven
   projections), same fixed gradients: 200 AdamW steps with scalelab's LoRA+ groups vs 200 with
   one plain group, interleaved in rounds (alternating which goes first) so machine noise hits
   both alike; the headline is the median over rounds of the per-round time ratio, robust to
   bursts of load from other processes, next to an A/A control (one group against an
   identical one group) that shows the machine's noise floor. Target: ratio <= 1.02.
2. Building the groups for a model with 1,000 LoRA layers (PEFT, and scalelab's ``add_lora``),
   median of repeats; PEFT's own ``create_loraplus_optimizer`` on the same model alongside.
   Target: < 50 ms.

Run: ``.venv/bin/python benchmarks/loraplus_overhead.py`` (prints a table, writes
benchmarks/results/loraplus_overhead.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
from torch import nn

from scalelab._utils import seed_everything, to_jsonable
from scalelab.lora import add_lora, create_loraplus_optimizer, loraplus_param_groups

RESULTS = Path(__file__).resolve().parent / "results" / "loraplus_overhead.json"
PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def llama_lora(hidden: int, layers: int, r: int) -> nn.Module:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=1000, hidden_size=hidden, intermediate_size=int(2.75 * hidden),
                         num_hidden_layers=layers, num_attention_heads=8, num_key_value_heads=8)
    return get_peft_model(LlamaForCausalLM(config), LoraConfig(r=r, lora_alpha=2 * r,
                                                                  target_modules=PROJECTIONS))


def time_steps(optimizer: torch.optim.Optimizer, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return time.perf_counter() - start


def step_overhead(model: nn.Module, steps: int, rounds: int, lr: float,
                  foreach: bool | None) -> dict:
    """Interleave rounds of ``steps // rounds`` steps of each optimizer on the same gradients.

    Three optimizers: LoRA+ groups, one plain group, and a second identical plain group as a
    control: the control's ratio to the first (an A/A test) is the noise floor of the machine.
    ``foreach=None`` is torch's default (the per-tensor loop on CPU); ``True`` batches tensors
    per group (the GPU default), where each extra group costs extra kernel launches.
    """
    trainable = [p for p in model.parameters() if p.requires_grad]
    for p in trainable:
        p.grad = torch.randn_like(p) * 1e-3
    opts = {
        "loraplus": create_loraplus_optimizer(model, torch.optim.AdamW, lr=lr, ratio=16.0,
                                              foreach=foreach),
        "adamw": torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0, foreach=foreach),
        "control": torch.optim.AdamW(trainable, lr=lr, weight_decay=0.0, foreach=foreach),
    }
    per_round, times = steps // rounds, {k: [] for k in opts}
    for opt in opts.values():
        time_steps(opt, 10)  # warm-up: optimizer state allocation
    for i in range(rounds):  # alternate the order too
        for key in (list(opts) if i % 2 == 0 else list(reversed(opts))):
            times[key].append(time_steps(opts[key], per_round))

    def median_ratio(a: str, b: str) -> float:
        return statistics.median(x / y for x, y in zip(times[a], times[b], strict=True))

    n = per_round * rounds
    return {
        "steps_each": n,
        "trainable_params": sum(p.numel() for p in trainable),
        "trainable_tensors": len(trainable),
        "groups": [g["name"] for g in opts["loraplus"].param_groups],
        "loraplus_ms_per_step": 1e3 * sum(times["loraplus"]) / n,
        "adamw_ms_per_step": 1e3 * sum(times["adamw"]) / n,
        "ratio": sum(times["loraplus"]) / sum(times["adamw"]),
        "ratio_median_of_rounds": median_ratio("loraplus", "adamw"),
        "control_ratio_median_of_rounds": median_ratio("control", "adamw"),
    }


def _times_ms(fn, repeats: int) -> dict:
    """Median and minimum wall time of ``fn`` in ms (the minimum is the least disturbed run)."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(1e3 * (time.perf_counter() - start))
    return {"median_ms": statistics.median(times), "min_ms": min(times)}


class _Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.q, self.v, self.norm = nn.Linear(d, d), nn.Linear(d, d), nn.LayerNorm(d)


def group_build_times(repeats: int) -> dict:
    from peft import LoraConfig, get_peft_model
    from peft.optimizers import create_loraplus_optimizer as peft_create

    peft_model = get_peft_model(nn.ModuleList([_Block(32) for _ in range(500)]),
                                LoraConfig(r=4, target_modules=["q", "v"]))
    own_model = add_lora(nn.Sequential(*[nn.Linear(32, 32) for _ in range(1000)]), "all-linear",
                         r=4)
    return {
        "lora_layers": 1000,
        "peft_modules": sum(1 for _ in peft_model.modules()),
        "groups_peft_model": _times_ms(lambda: loraplus_param_groups(peft_model, lr=1e-4),
                                       repeats),
        "groups_add_lora_model": _times_ms(lambda: loraplus_param_groups(own_model, lr=1e-4),
                                           repeats),
        "optimizer_scalelab_peft_model": _times_ms(
            lambda: create_loraplus_optimizer(peft_model, lr=1e-4), repeats),
        "optimizer_peft_create_loraplus": _times_ms(
            lambda: peft_create(peft_model, torch.optim.AdamW, lr=1e-4, loraplus_lr_ratio=16.0),
            max(1, repeats // 3)),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps per variant")
    parser.add_argument("--rounds", type=int, default=40, help="interleaved rounds")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=15, help="repeats for build times")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    seed_everything(args.seed)
    torch.set_num_threads(args.threads)

    model = llama_lora(args.hidden, args.layers, r=16)
    steps = step_overhead(model, args.steps, args.rounds, lr=1e-4, foreach=None)
    steps_foreach = step_overhead(model, args.steps, args.rounds, lr=1e-4, foreach=True)
    build = group_build_times(args.repeats)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores, "
                   f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        "model": f"Llama-shaped, hidden {args.hidden}, {args.layers} layers, PEFT LoRA r=16 on "
                 "all 7 projections",
        "optimizer_steps": steps, "optimizer_steps_foreach": steps_foreach,
        "group_building": build,
        "targets": {"ratio": 1.02, "groups_ms": 50.0},
    }
    rows = []
    for label, st in (("", steps), (" foreach", steps_foreach)):
        rows += [
            (f"AdamW{label} step, LoRA+ groups (ms)", f"{st['loraplus_ms_per_step']:.3f}", ""),
            (f"AdamW{label} step, one group (ms)", f"{st['adamw_ms_per_step']:.3f}", ""),
            (f"ratio{label} LoRA+ / one group, median of rounds",
             f"{st['ratio_median_of_rounds']:.3f}", "<= 1.02"),
            (f"ratio{label}, total times", f"{st['ratio']:.3f}", ""),
            (f"control{label}: one group / same one group (noise)",
             f"{st['control_ratio_median_of_rounds']:.3f}", "1"),
        ]
    for key, label, target in [
            ("groups_peft_model", "groups, 1000 PEFT LoRA layers (ms)", "< 50"),
            ("groups_add_lora_model", "groups, 1000 LoRALinear layers (ms)", "< 50"),
            ("optimizer_scalelab_peft_model", "scalelab create_loraplus_optimizer (ms)", ""),
            ("optimizer_peft_create_loraplus", "peft create_loraplus_optimizer (ms)", "")]:
        t = build[key]
        rows.append((label + " median/min", f"{t['median_ms']:.1f}/{t['min_ms']:.1f}", target))
    width = max(len(r[0]) for r in rows)
    print(f"{result['model']}; {steps['trainable_params']:,} trainable params in "
          f"{steps['trainable_tensors']} tensors; {steps['steps_each']} steps each, interleaved")
    print(f"{'measure':<{width}}  {'value':>11}  target")
    for name, value, target in rows:
        print(f"{name:<{width}}  {value:>11}  {target}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(to_jsonable(result), indent=2) + "\n")
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
