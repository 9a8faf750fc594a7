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
- ``scored+rows``: ``packed_batch(row_length=T)`` (examples first-fit into rows as wide as
  the padded batch: nearly padding-free, attention stays per row);
- with ``--compile``: ``scored+packed+compiled`` (``compile_regions(dynamic=True)``; its
  compile time is reported apart and not in the steps timed).

Timing: one untimed warm-up call per path, then ``--rounds`` rounds over ``--batches``
batches; within each, the paths run back to back in a rotating order, so a shared
machine's load falls on all of them alike;
tokens/s = non-padding tokens / seconds, per path, over all timed steps; speed-ups are
ratios of those. Equality: each path's mean loss and LoRA gradients against ``hf`` (max
relative difference), and, on the first ``--fp64-rows`` examples, the fp32 ``hf`` and
``scored`` losses and gradients against the fp64 truth (the same model in fp64, full
logits, fp64 cross-entropy). One more untimed call per path on batch 0 runs under
``torch.profiler``: its self-CPU time is grouped into the LM head + loss (ops on
vocab-sized tensors), decoder matmuls, attention, elementwise/normalisation and the rest.

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

    def packed(b, **kw):
        p = packed_batch(b, **kw)
        s, n = scored_causal_lm_loss(model, p["input_ids"], None, p["labels"],
                                     position_ids=p["position_ids"])
        return s / n

    def rows(b):
        return packed(b, row_length=b["input_ids"].shape[1])

    paths = {"hf": hf, "scored": scored, "scored+packed": packed, "scored+rows": rows}
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


def fp64_check(model, batch: dict, rows: int) -> dict:
    """fp32 ``hf`` and ``scored`` losses/gradients vs the fp64 truth on ``rows`` examples."""
    import copy

    import torch.nn.functional as F

    from scalelab.nn.lm_loss import scored_causal_lm_loss

    b = {k: v[:rows] for k, v in batch.items()}
    width = int(b["attention_mask"].sum(1).max())
    b = {k: v[:, :width] for k, v in b.items()}

    def trainable(m):
        return [q for q in m.parameters() if q.requires_grad]

    m64 = copy.deepcopy(model).double()
    logits = m64(input_ids=b["input_ids"], attention_mask=b["attention_mask"]).logits
    truth = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                            b["labels"][:, 1:].reshape(-1))
    g_truth = torch.autograd.grad(truth, trainable(m64))
    del m64, logits
    out = {}
    for name in ("hf", "scored"):
        if name == "hf":
            loss = model(**b).loss
        else:
            s, n = scored_causal_lm_loss(model, b["input_ids"], b["attention_mask"], b["labels"])
            loss = s / n
        g = torch.autograd.grad(loss, trainable(model))
        out[name] = {
            "loss_rel_err": abs(float(loss.detach()) - float(truth.detach())) / float(truth.detach()),
            "grad_rel_err": max(float((a.double() - c).abs().max() / c.abs().max())
                                for a, c in zip(g, g_truth, strict=True) if c.abs().max() > 0)}
    return out


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
    p.add_argument("--fp64-rows", type=int, default=4,
                   help="examples for the fp64-truth check (0: skip)")
    p.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", 2)))
    p.add_argument("--out", default=str(HERE / "results" / "causal_lm_loss.json"))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from torch.profiler import ProfilerActivity, profile

    model, batches = setup(args.max_length, args.batch, args.batches)
    vocab = model.config.vocab_size
    paths = make_paths(model, args.compile)
    names = list(paths)
    shape = {"rows_x_width": [list(b["input_ids"].shape) for b in batches],
             "real_tokens": [int(b["attention_mask"].sum()) for b in batches],
             "scored_tokens": [int((b["labels"][:, 1:] != -100).sum()) for b in batches]}
    compile_s = None
    for name in names:  # warm-up (first calls allocate and initialise), untimed
        t0 = time.perf_counter()
        for b in batches if name.endswith("compiled") else batches[:1]:
            own = getattr(paths[name], "model", model)
            torch.autograd.grad(paths[name](b), [q for q in own.parameters() if q.requires_grad])
        if name.endswith("compiled"):
            compile_s = time.perf_counter() - t0
        print(f"  warm-up {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    fp64 = fp64_check(model, batches[0], args.fp64_rows) if args.fp64_rows else None
    breakdown: dict[str, dict] = {}
    for name in names:  # one profiled call per path on batch 0, untimed
        own = getattr(paths[name], "model", model)
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            t0 = time.perf_counter()
            torch.autograd.grad(paths[name](batches[0]),
                                [q for q in own.parameters() if q.requires_grad])
            dt = time.perf_counter() - t0
        breakdown[name] = {"total_s": dt, **categorise(prof, vocab)}
    seconds = dict.fromkeys(names, 0.0)
    tokens = dict.fromkeys(names, 0)
    losses: dict[str, list[float]] = {k: [] for k in names}
    grad_diff = dict.fromkeys(names, 0.0)
    for r in range(args.rounds):
        for i, b in enumerate(batches):
            order = names[(r + i) % len(names):] + names[:(r + i) % len(names)]
            grads = {}
            for name in order:
                own = getattr(paths[name], "model", model)
                ps = [q for q in own.parameters() if q.requires_grad]
                t0 = time.perf_counter()
                loss = paths[name](b)
                g = torch.autograd.grad(loss, ps)
                dt = time.perf_counter() - t0
                seconds[name] += dt
                tokens[name] += int(b["attention_mask"].sum())
                if r == 0:
                    losses[name].append(float(loss.detach()))
                    grads[name] = g
                print(f"  round {r} batch {i} {name}: {dt:.1f} s", flush=True)
            if r == 0:
                for name in names:
                    d = max(float((a - c).abs().max() / c.abs().max())
                            for a, c in zip(grads[name], grads["hf"], strict=True)
                            if c.abs().max() > 0)
                    grad_diff[name] = max(grad_diff[name], d)
    tps = {k: tokens[k] / seconds[k] for k in names}
    rows = {}
    for k in names:
        rel = max(abs(x - y) / abs(y) for x, y in zip(losses[k], losses["hf"], strict=True))
        rows[k] = {"tokens_per_s": tps[k], "seconds": seconds[k], "tokens": tokens[k],
                   "speedup_vs_hf": tps[k] / tps["hf"], "losses": losses[k],
                   "loss_max_rel_diff_vs_hf": rel, "grad_max_rel_diff_vs_hf": grad_diff[k],
                   "profile_s": breakdown.get(k)}
    print(f"\nbatches {shape}")
    print(f"{'path':24} {'tokens/s':>9} {'vs hf':>6} {'loss Δrel':>10} {'grad Δrel':>10}")
    for k, r in rows.items():
        print(f"{k:24} {r['tokens_per_s']:>9.1f} {r['speedup_vs_hf']:>6.2f} "
              f"{r['loss_max_rel_diff_vs_hf']:>10.1e} {r['grad_max_rel_diff_vs_hf']:>10.1e}")
    if compile_s is not None:
        print(f"compile (outside the timed steps): {compile_s:.0f} s")
    if fp64:
        print(f"fp32 vs the fp64 truth on {args.fp64_rows} examples: " + "; ".join(
            f"{k}: loss {v['loss_rel_err']:.1e}, grads {v['grad_rel_err']:.1e}"
            for k, v in fp64.items()))
    cats = sorted({c for b in breakdown.values() for c in b if c != "total_s"})
    print("\nprofile of one call on batch 0 (self CPU seconds; profiler overhead included):")
    print(f"{'category':46} " + " ".join(f"{k:>14}" for k in breakdown))
    for c in cats:
        print(f"{c:46} " + " ".join(f"{breakdown[k].get(c, 0.0):>14.2f}" for k in breakdown))
    print(f"{'wall time of the step':46} " + " ".join(f"{breakdown[k]['total_s']:>14.2f}"
                                                      for k in breakdown))
    doc = {"protocol": __doc__, "batch": args.batch, "max_length": args.max_length,
           "rounds": args.rounds, "threads": args.threads, "batches": shape,
           "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, "
                      f"load average {os.getloadavg()[0]:.1f} at the end (shared)",
           "torch": torch.__version__, "compile_s": compile_s, "fp64_check": fp64,
           "paths": rows}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
