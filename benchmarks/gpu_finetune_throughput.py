"""GPU LoRA+ fine-tuning throughput (issue 22): eager PEFT vs torch.compile vs scalelab's path.

The work (fixed, so numbers compare with ANCHORS): a randomly initialised Llama (hidden 2048,
16 layers, MLP 5632, 16 heads, vocab 32000; 963M parameters with the adapters), bf16 base
weights with PEFT's fp32 LoRA adapters (r=16, alpha 32, dropout 0, on q,k,v,o,gate,up,down),
SDPA attention, batch 8 x 1024 tokens, LoRA+ AdamW (ratio 16, lr 2e-4, no weight decay),
50 steps. Every variant starts from the same seeded weights and sees the same batches:
tokens drawn from a Zipf(1.1) unigram law (so the loss has something to learn in 50
steps), all positions scored. Variants, in one run on one device:

- a: PEFT eager, ``model(..., labels=).loss``, AdamW (foreach) -- the anchor;
- b: PEFT + ``torch.compile(model)`` (whole model), fused AdamW;
- c: scalelab: ``compile_regions`` (decoder blocks compiled in place), fused LoRA+ AdamW
  (``fast_optimizer``), ``ScoredCausalLM`` (LM head + cross-entropy fused in 1024-row
  chunks, the chunk arithmetic compiled on CUDA: the 8k x 32k logits never exist), TF32
  for the fp32 matmuls that remain (PEFT's fp32 LoRA adapters);
- c_notf32: c without TF32 (the ablation that isolates it);
- c_autocast: c with the adapters computing in bf16 under autocast (``autocast_lora``:
  no fp32 activation copies; fp32 master weights) instead of TF32;
- and, with ``--variants``: c_eager (c without any compilation), c_graphs (c with
  ``mode="reduce-overhead"``, CUDA graphs).

Measured per variant: step time (median of steps 6..50, each step ends with ``float(loss)``
as a training loop does), tokens/s = batch * seq / step, time to first step (from the
compile call to the end of step 1: compilation included), peak GPU memory
(``max_memory_allocated``), MFU, and the loss at every step against variant a.

FLOPs per token (stated; frozen weights make 6N wrong): 4 N_frozen (forward + input
gradients of every frozen matmul weight, LM head included; embeddings do no matmul)
+ 6 N_lora (forward, input and weight gradients) + 6 L h T (causal attention: QK^T and PV
forward 2 h T per layer, backward twice that). For the work above: 4 x 887.6M + 6 x 10.1M
+ 6 x 16 x 2048 x 1024 = 3.81 GFLOP/token. MFU = tokens/s x that / the card's dense bf16
peak (989.5 TFLOP/s for H100/H200 SXM by the datasheet; ``--peak-tflops`` to change).
ANCHORS' "about 23%" counted 4 x all 963M parameters + non-causal attention (4.25 GFLOP)
against the measured 788 TFLOP/s matmul rate; the JSON carries that figure too.

Pass rule (fixed before any GPU number): c >= 2.2x a and >= 1.3x b in tokens/s; c's peak
memory <= a's; the loss of every step within 2% of a's (bf16: 8 mantissa bits, ~0.4% per
rounding, over 50 steps); LoRA+ groups of c identical to a's.

Run on the GPU machine (one call, ~6 min): ``PYTHONPATH=src python
benchmarks/gpu_finetune_throughput.py`` -- writes
benchmarks/results/gpu_finetune_throughput.json and, when ``$OUT`` is set (the device
tool), a copy there. CPU development: ``--small`` (hidden 128, 2 layers, vocab 8000, batch
4 x 128, 10 steps, fp32; about 2 minutes of CPU time, mostly compilation; writes
..._small.json).
Needs only torch, transformers, peft (accelerate not used) and scalelab from the tree.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import statistics
import time
import traceback
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
FULL = dict(hidden=2048, layers=16, mlp=5632, heads=16, vocab=32000, batch=8, seq=1024,
            steps=50, dtype="bfloat16")
SMALL = dict(hidden=128, layers=2, mlp=352, heads=4, vocab=8000, batch=4, seq=128, steps=10,
             dtype="float32")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
LR, RATIO, SEED = 2e-4, 16.0, 0
VARIANTS = {
    "a": "PEFT eager + AdamW (foreach)",
    "b": "PEFT + torch.compile + fused AdamW",
    "c": "scalelab: compile_regions + fused LoRA+ AdamW + fused CE + TF32 LoRA",
    "c_notf32": "c without TF32",
    "c_autocast": "c with bf16 autocast LoRA instead of TF32",
    "c_eager": "c without compilation",
    "c_graphs": "c with mode='reduce-overhead' (CUDA graphs)",
}
DATASHEET_PEAK_TFLOPS = 989.5  # dense bf16, H100/H200 SXM
MEASURED_PEAK_TFLOPS = 788.0  # 8192^3 bf16 matmul on an H200 here (KINDS.md)


def flops_per_token(cfg: dict, n_lora: int) -> dict:
    """Training FLOPs per token (see the module docstring) and the ANCHORS convention."""
    h, L, m, v, T = cfg["hidden"], cfg["layers"], cfg["mlp"], cfg["vocab"], cfg["seq"]
    n_frozen = L * (4 * h * h + 3 * h * m) + v * h  # matmul weights (kv heads = heads)
    ours = 4 * n_frozen + 6 * n_lora + 6 * L * h * T
    n_all = n_frozen + v * h + n_lora  # + the input embedding
    anchors = 4 * n_all + 12 * L * h * T
    return {"per_token": ours, "n_frozen_matmul": n_frozen, "n_lora": n_lora,
            "anchors_convention": anchors}


def build(cfg: dict, device: str, dtype: torch.dtype):
    """The seeded random Llama under PEFT LoRA (adapters fp32, PEFT's default)."""
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    config = LlamaConfig(hidden_size=cfg["hidden"], intermediate_size=cfg["mlp"],
                         num_hidden_layers=cfg["layers"], num_attention_heads=cfg["heads"],
                         num_key_value_heads=cfg["heads"], vocab_size=cfg["vocab"],
                         max_position_embeddings=cfg["seq"], tie_word_embeddings=False,
                         use_cache=False, attn_implementation="sdpa")
    torch.manual_seed(SEED)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype)
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules=TARGETS,
                      task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def batches(cfg: dict, device: str):
    """Step -> (input_ids, labels): Zipf(1.1) tokens, the same for every variant."""
    ranks = torch.arange(1, cfg["vocab"] + 1, dtype=torch.float64)
    cdf = torch.cumsum(ranks ** -1.1, 0)
    cdf = (cdf / cdf[-1]).to(device)
    cache: dict[int, torch.Tensor] = {}

    def get(step: int):
        if step not in cache:
            g = torch.Generator(device=device).manual_seed(1000 + step)
            u = torch.rand((cfg["batch"], cfg["seq"]), generator=g, device=device,
                           dtype=torch.float64)
            cache[step] = torch.searchsorted(cdf, u).clamp_max(cfg["vocab"] - 1)
        ids = cache[step]
        return ids, ids
    return get


def _groups(opt) -> list:
    return [(g.get("name"), g["lr"], len(g["params"])) for g in opt.param_groups]


def run_variant(name: str, cfg: dict, device: str, dtype: torch.dtype, get_batch,
                profile: bool) -> dict:
    from scalelab.lora import create_loraplus_optimizer
    from scalelab.nn.lm_loss import ScoredCausalLM
    from scalelab.train.fast import (
        autocast_lora,
        compile_regions,
        fast_optimizer,
        use_tf32_matmuls,
    )

    cuda = device == "cuda"
    torch._dynamo.reset()
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    model = build(cfg, device, dtype)
    n_lora = sum(p.numel() for p in model.parameters() if p.requires_grad)
    if name in ("c", "c_eager", "c_graphs"):
        context = use_tf32_matmuls()
    elif name == "c_autocast":
        context = autocast_lora(model, torch.bfloat16)
    else:
        context = contextlib.nullcontext()
    t_setup = time.perf_counter()
    if name == "a":
        opt = create_loraplus_optimizer(model, torch.optim.AdamW, lr=LR, ratio=RATIO)

        def loss_of(ids, labels):
            return model(input_ids=ids, labels=labels, use_cache=False).loss
    elif name == "b":
        compiled = torch.compile(model)
        opt = create_loraplus_optimizer(model, torch.optim.AdamW, lr=LR, ratio=RATIO,
                                        fused=True)

        def loss_of(ids, labels):
            return compiled(input_ids=ids, labels=labels, use_cache=False).loss
    elif name.startswith("c"):
        if name != "c_eager":
            kw = {"mode": "reduce-overhead"} if name == "c_graphs" else {}
            compile_regions(model, **kw)
        opt = fast_optimizer(model, lr=LR, ratio=RATIO)  # fused on CUDA only
        wrapped = ScoredCausalLM(model, compile_chunks=cuda and name != "c_eager")

        def loss_of(ids, labels):
            loss_sum, n = wrapped(ids, None, labels)
            return loss_sum / n
    else:
        raise ValueError(f"unknown variant {name!r}; choose from {', '.join(VARIANTS)}")

    def step(s: int) -> float:
        ids, labels = get_batch(s)
        loss = loss_of(ids, labels)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return float(loss.detach())  # syncs, as a training loop that logs the loss does

    losses, times = [], []
    with context:
        for s in range(cfg["steps"]):
            t0 = time.perf_counter()
            losses.append(step(s))
            times.append(time.perf_counter() - t0)
            if s == 0:
                first = time.perf_counter() - t_setup
        table = _profile(step, cfg["steps"], cuda) if profile else None
    warm = times[5:] if len(times) > 8 else times[len(times) // 2:]
    step_s = statistics.median(warm)
    tokens = cfg["batch"] * cfg["seq"]
    out = {"variant": name, "what": VARIANTS[name], "fused_adamw": bool(opt.defaults.get("fused")),
           "groups": _groups(opt), "losses": losses, "step_times_s": times, "step_s": step_s,
           "tokens_per_s": tokens / step_s, "first_step_s": first, "n_lora": n_lora,
           "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
           "profile": table}
    return out


def _profile(step, start: int, cuda: bool) -> str:
    """Top kernels of 3 more steps (after the timed ones), by self device (or CPU) time.

    A profiler failure is reported in the text, never lost timings."""
    try:
        from torch.profiler import ProfilerActivity, profile

        acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
        with profile(activities=acts) as prof:
            for s in range(start, start + 3):
                step(s)
        averages = prof.key_averages()
    except Exception as e:  # noqa: BLE001 - the timings above must survive
        return f"profiler failed: {type(e).__name__}: {e}"
    keys = ("self_device_time_total", "self_cuda_time_total") if cuda else ("self_cpu_time_total",)
    for key in keys:
        try:
            return averages.table(sort_by=key, row_limit=15, max_name_column_width=60)
        except Exception:  # noqa: BLE001, S112 - try the next name of the column
            continue
    return averages.table(row_limit=15)


def main() -> None:
    import warnings

    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")  # PEFT 0.21
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--small", action="store_true", help="the CPU development configuration")
    p.add_argument("--variants", default=None,
                   help=f"comma list of {', '.join(VARIANTS)} (default a,b,c,c_notf32,c_autocast; "
                        "a,b,c with --small, where TF32 does nothing)")
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None,
                   help="profile 3 extra steps of b and c (default: on for the full work)")
    p.add_argument("--peak-tflops", type=float, default=DATASHEET_PEAK_TFLOPS)
    p.add_argument("--budget-s", type=float, default=540.0,
                   help="skip the remaining variants once this much time has passed")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/"
                   "gpu_finetune_throughput.json, or ..._small.json with --small)")
    args = p.parse_args()
    cfg = dict(SMALL if args.small else FULL)
    if args.steps:
        cfg["steps"] = args.steps
    variants = args.variants or ("a,b,c" if args.small else "a,b,c,c_notf32,c_autocast")
    names = [v.strip() for v in variants.split(",") if v.strip()]
    bad = [v for v in names if v not in VARIANTS]
    if bad:
        p.error(f"unknown variant(s) {bad}; choose from {', '.join(VARIANTS)}")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", 2)))
    dtype = getattr(torch, cfg["dtype"])
    profile = (not args.small) if args.profile is None else args.profile
    import peft
    import transformers

    name = torch.cuda.get_device_name(0) if device == "cuda" else (
        f"CPU ({torch.get_num_threads()} torch threads)")
    env = {"device": name, "torch": torch.__version__, "transformers": transformers.__version__,
           "peft": peft.__version__, "python": platform.python_version(),
           "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs"}
    print(f"{env}\nconfig {cfg}", flush=True)
    get_batch = batches(cfg, device)
    t_all = time.perf_counter()
    runs: dict[str, dict] = {}
    for v in names:
        if time.perf_counter() - t_all > args.budget_s:
            runs[v] = {"variant": v, "error": f"skipped: past --budget-s {args.budget_s}"}
            continue
        try:
            runs[v] = run_variant(v, cfg, device, dtype, get_batch, profile and v != "a")
            r = runs[v]
            print(f"  {v}: {r['tokens_per_s']:,.0f} tokens/s, step {r['step_s'] * 1e3:.1f} ms, "
                  f"first step {r['first_step_s']:.1f} s, final loss {r['losses'][-1]:.4f}",
                  flush=True)
        except Exception as e:  # one failing variant must not cost the others' figures
            runs[v] = {"variant": v, "error": f"{type(e).__name__}: {e}",
                       "traceback": traceback.format_exc()[-3000:]}
            print(f"  {v}: FAILED {runs[v]['error']}", flush=True)
        gc.collect()
        if device == "cuda":
            torch.cuda.empty_cache()
    ok = {k: r for k, r in runs.items() if "error" not in r}
    n_lora = next(iter(ok.values()))["n_lora"] if ok else 0
    fl = flops_per_token(cfg, n_lora)
    for r in ok.values():
        tps = r["tokens_per_s"]
        r["achieved_tflops"] = tps * fl["per_token"] / 1e12
        if device == "cuda":
            r["mfu"] = r["achieved_tflops"] / args.peak_tflops
            r["mfu_anchors_convention"] = tps * fl["anchors_convention"] / 1e12 / (
                MEASURED_PEAK_TFLOPS)
        else:
            r["mfu"] = r["mfu_anchors_convention"] = None
    ref = ok.get("a")
    for r in ok.values():
        if ref is not None and r is not ref:
            d = [abs(x - y) / abs(y) for x, y in zip(r["losses"], ref["losses"], strict=True)]
            r["loss_max_rel_diff_vs_a"] = max(d)
            r["groups_equal_a"] = r["groups"] == ref["groups"]
            r["speedup_vs_a"] = r["tokens_per_s"] / ref["tokens_per_s"]
        if "b" in ok and r is not ok["b"]:
            r["speedup_vs_b"] = r["tokens_per_s"] / ok["b"]["tokens_per_s"]
    verdict = None
    if {"a", "b", "c"} <= set(ok):
        c, a = ok["c"], ok["a"]
        verdict = {"c_vs_a>=2.2": c["speedup_vs_a"] >= 2.2, "c_vs_b>=1.3": c["speedup_vs_b"] >= 1.3,
                   "loss_within_2pct": c["loss_max_rel_diff_vs_a"] <= 0.02,
                   "groups_unchanged": c["groups_equal_a"],
                   "peak_mem_le_a": (c["peak_mem_gib"] <= a["peak_mem_gib"]
                                     if device == "cuda" else None)}
    for r in ok.values():
        if r.get("profile"):
            print(f"\n-- profile of {r['variant']} (3 steps) --\n{r['profile']}")
    print(f"\nFLOPs/token {fl['per_token'] / 1e9:.3f} G (4 x {fl['n_frozen_matmul'] / 1e6:.1f}M "
          f"frozen + 6 x {fl['n_lora'] / 1e6:.2f}M LoRA + causal attention); peak "
          f"{args.peak_tflops} TFLOP/s")
    print(f"{'variant':9} {'tokens/s':>10} {'step ms':>8} {'1st step s':>10} {'peak GiB':>8} "
          f"{'MFU':>6} {'vs a':>5} {'vs b':>5} {'loss Δ':>8}  what")
    for v in names:
        r = runs[v]
        if "error" in r:
            print(f"{v:9} {r['error'][:100]}")
            continue
        mem = f"{r['peak_mem_gib']:.1f}" if r["peak_mem_gib"] is not None else "-"
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "-"
        vs_b = f"{r['speedup_vs_b']:.2f}" if "speedup_vs_b" in r else "-"
        print(f"{v:9} {r['tokens_per_s']:>10,.0f} {r['step_s'] * 1e3:>8.1f} "
              f"{r['first_step_s']:>10.1f} {mem:>8} {mfu:>6} "
              f"{r.get('speedup_vs_a', 1.0):>5.2f} {vs_b:>5} "
              f"{r.get('loss_max_rel_diff_vs_a', 0.0):>8.1e}  {r['what']}")
    if verdict:
        print(f"targets: {verdict}")
    doc = {"protocol": __doc__, "config": cfg, "small": args.small, "env": env, "flops": fl,
           "peak_tflops": args.peak_tflops, "runs": runs, "verdict": verdict,
           "wall_s": time.perf_counter() - t_all}
    out = Path(args.out or HERE / "results" / (
        "gpu_finetune_throughput_small.json" if args.small else "gpu_finetune_throughput.json"))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")
    if os.environ.get("OUT") and Path(os.environ["OUT"]).is_dir():
        copy = Path(os.environ["OUT"]) / out.name
        copy.write_text(out.read_text())
        print(f"wrote {copy}")


if __name__ == "__main__":
    main()
