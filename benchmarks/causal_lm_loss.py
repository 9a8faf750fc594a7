"""Causal-LM forward+backward on CPU: the model's own ``labels=`` loss vs scalelab's scored loss.

The work (issue 15's case): SmolLM2-135M-Instruct (fp32, SDPA attention), PEFT LoRA r=8
alpha 8 on q_proj/v_proj, dropout 0; the embedded chat data rendered as
``scalelab.train.batches.encode_causal`` does (prompt format, response-only labels, right
padding to the longest row), batch 16, max length 96, batches ``batch_indices(s, n, 16, 0)``.
Paths, on the same weights and batches (forward + backward, no optimizer step, so every
path sees identical weights):

- ``hf``: ``model(**batch).loss`` (the full (16, T, 49152) logits, fp32 cross-entropy);
- ``scored``: ``scored_causal_lm_loss`` (LM head + cross-entropy only on the scored rows,
  in 1024-row chunks) divided by the scored count;
- ``scored+packed``: the same after ``scalelab.train.fast.packed_batch`` (padding-free: one
  row of the real tokens, positions reset per example);
- with ``--compile``: ``scored+packed+compiled`` (``compile_regions(dynamic=True)``; its
  compile time is reported apart and not in the steps timed).

Timing: ``--rounds`` rounds over ``--batches`` batches; within each, the paths run
back to back in a rotating order, so a shared machine's load falls on all of them alike;
tokens/s = non-padding tokens / seconds, per path, over all timed steps; speed-ups are
ratios of those. Equality: each path's mean loss and LoRA gradients against ``hf`` (max
relative difference). Round 0 runs under ``torch.profiler``: its self-CPU time is grouped
into the LM head + loss (ops on vocab-sized tensors), decoder matmuls, attention,
elementwise/normalisation and the rest.

Run: ``PYTHONPATH=src python benchmarks/causal_lm_loss.py`` (prints a table, writes
benchmarks/results/causal_lm_loss.json). The first run converts SmolLM2's GGUF file (~40 s).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from collections import defaultdict
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
MATMUL_OPS = {"aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear"}
ELEMENTWISE = {"aten::mul", "aten::add", "aten::add_", "aten::sub", "aten::div", "aten::neg",
               "aten::pow", "aten::rsqrt", "aten::mean", "aten::silu", "aten::silu_backward",
               "aten::cat", "aten::copy_", "aten::fill_", "aten::sum", "aten::where",
               "aten::mul_", "aten::exp", "aten::exp_", "aten::sub_", "aten::zero_",
               "aten::clone", "aten::contiguous", "aten::_to_copy", "aten::to"}


def setup(max_length: int, batch: int, n_batches: int):
    from peft import LoraConfig, get_peft_model

    from scalelab.data.models import load_model
    from scalelab.data.text import load_text_dataset
    from scalelab.train.batches import batch_indices, encode_causal

    torch.manual_seed(0)
    model, tok = load_model("smollm2", task="causal")
    model.config.use_cache = False
    model = get_peft_model(model, LoraConfig(r=8, lora_alpha=8, lora_dropout=0.0,
                                             target_modules=["q_proj", "v_proj"],
                                             task_type="CAUSAL_LM"))
    data = load_text_dataset("chat")
    batches = [encode_causal(tok, [data.train[i] for i in
                                   batch_indices(s, len(data.train), batch, 0)], max_length)
               for s in range(n_batches)]
    return model, batches


def make_paths(model, compile_: bool) -> dict:
    from scalelab.nn.lm_loss import scored_causal_lm_loss
    from scalelab.train.fast import compile_regions, packed_batch

    def hf(b):
        return model(**b).loss

    def scored(b):
        s, n = scored_causal_lm_loss(model, b["input_ids"], b["attention_mask"], b["labels"])
        return s / n

    def packed(b):
        p = packed_batch(b)
        s, n = scored_causal_lm_loss(model, p["input_ids"], None, p["labels"],
                                     position_ids=p["position_ids"])
        return s / n

    paths = {"hf": hf, "scored": scored, "scored+packed": packed}
    if compile_:
        import copy

        cmodel = copy.deepcopy(model)
        compile_regions(cmodel, dynamic=True)

        def compiled(b):
            p = packed_batch(b)
            s, n = scored_causal_lm_loss(cmodel, p["input_ids"], None, p["labels"],
                                         position_ids=p["position_ids"])
            return s / n
        compiled.model = cmodel
        paths["scored+packed+compiled"] = compiled
    return paths


def categorise(prof, vocab: int) -> dict:
    """Self-CPU seconds by category, from ops grouped by input shape."""
    out: dict[str, float] = defaultdict(float)
    for ev in prof.key_averages(group_by_input_shape=True):
        t = ev.self_cpu_time_total / 1e6
        shapes = [tuple(s) for s in (ev.input_shapes or []) if isinstance(s, (list, tuple))]
        if any(s and s[-1] == vocab or (len(s) == 2 and s[0] == vocab) for s in shapes):
            out["LM head + loss (vocab-sized)"] += t
        elif ev.key in MATMUL_OPS:
            out["decoder matmuls (linear layers, LoRA)"] += t
        elif "attention" in ev.key or "sdpa" in ev.key:
            out["attention (sdpa)"] += t
        elif ev.key in ELEMENTWISE:
            out["elementwise, norms, rope, copies"] += t
        else:
            out["other (autograd, indexing, compiled kernels)"] += t
    return dict(out)


def main() -> None:
    warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")  # PEFT 0.21
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--max-length", type=int, default=96)
    p.add_argument("--batches", type=int, default=2)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="add the compiled packed path")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 2)))
    p.add_argument("--out", default=str(HERE / "results" / "causal_lm_loss.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from torch.profiler import ProfilerActivity, profile

    model, batches = setup(args.max_length, args.batch, args.batches)
    vocab = model.config.vocab_size
    params = [q for q in model.parameters() if q.requires_grad]
    paths = make_paths(model, args.compile)
    names = list(paths)
    shape = {"rows_x_width": [list(b["input_ids"].shape) for b in batches],
             "real_tokens": [int(b["attention_mask"].sum()) for b in batches],
             "scored_tokens": [int((b["labels"][:, 1:] != -100).sum()) for b in batches]}
    compile_s = None
    if args.compile:  # compile outside the timed steps
        t0 = time.perf_counter()
        for b in batches:
            paths["scored+packed+compiled"](b).backward()
        paths["scored+packed+compiled"].model.zero_grad(set_to_none=True)
        compile_s = time.perf_counter() - t0
    seconds = dict.fromkeys(names, 0.0)
    tokens = dict.fromkeys(names, 0)
    losses: dict[str, list[float]] = {k: [] for k in names}
    grad_diff = dict.fromkeys(names, 0.0)
    breakdown: dict[str, dict] = {}
    for r in range(args.rounds):
        for i, b in enumerate(batches):
            order = names[(r + i) % len(names):] + names[:(r + i) % len(names)]
            grads = {}
            for name in order:
                prof = profile(activities=[ProfilerActivity.CPU], record_shapes=True) \
                    if r == 0 and i == 0 else None
                t0 = time.perf_counter()
                if prof is not None:
                    prof.__enter__()
                loss = paths[name](b)
                own = getattr(paths[name], "model", model)
                ps = [q for q in own.parameters() if q.requires_grad]
                g = torch.autograd.grad(loss, ps)
                if prof is not None:
                    prof.__exit__(None, None, None)
                dt = time.perf_counter() - t0
                seconds[name] += dt
                tokens[name] += int(b["attention_mask"].sum())
                if r == 0:
                    losses[name].append(float(loss.detach()))
                    grads[name] = g
                if prof is not None:
                    breakdown[name] = {"total_s": dt, **categorise(prof, vocab)}
                print(f"  round {r} batch {i} {name}: {dt:.1f} s", flush=True)
            if r == 0:
                for name in names:
                    d = max(float((a - c).abs().max() / c.abs().max().clamp_min(1e-30))
                            for a, c in zip(grads[name], grads["hf"], strict=True))
                    grad_diff[name] = max(grad_diff[name], d)
    del params
    tps = {k: tokens[k] / seconds[k] for k in names}
    rows = {}
    for k in names:
        rel = max(abs(x - y) / abs(y) for x, y in zip(losses[k], losses["hf"], strict=True))
        rows[k] = {"tokens_per_s": tps[k], "seconds": seconds[k], "tokens": tokens[k],
                   "speedup_vs_hf": tps[k] / tps["hf"], "losses": losses[k],
                   "loss_max_rel_diff_vs_hf": rel, "grad_max_rel_diff_vs_hf": grad_diff[k],
                   "profile_round0_s": breakdown.get(k)}
    print(f"\nbatches {shape}")
    print(f"{'path':24} {'tokens/s':>9} {'vs hf':>6} {'loss Δrel':>10} {'grad Δrel':>10}")
    for k, r in rows.items():
        print(f"{k:24} {r['tokens_per_s']:>9.1f} {r['speedup_vs_hf']:>6.2f} "
              f"{r['loss_max_rel_diff_vs_hf']:>10.1e} {r['grad_max_rel_diff_vs_hf']:>10.1e}")
    if compile_s is not None:
        print(f"compile (outside the timed steps): {compile_s:.0f} s")
    cats = sorted({c for b in breakdown.values() for c in b if c != "total_s"})
    print("\nprofile of round 0, batch 0 (self CPU seconds):")
    print(f"{'category':46} " + " ".join(f"{k:>14}" for k in breakdown))
    for c in cats:
        print(f"{c:46} " + " ".join(f"{breakdown[k].get(c, 0.0):>14.2f}" for k in breakdown))
    print(f"{'wall time of the step':46} " + " ".join(f"{breakdown[k]['total_s']:>14.2f}"
                                                      for k in breakdown))
    doc = {"protocol": __doc__, "batch": args.batch, "max_length": args.max_length,
           "rounds": args.rounds, "threads": args.threads, "batches": shape,
           "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, "
                      f"load average {os.getloadavg()[0]:.1f} at the end (shared)",
           "torch": torch.__version__, "compile_s": compile_s, "paths": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
