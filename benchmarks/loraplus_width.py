"""LoRA+ across width: best ratio and gain over tuned LoRA on BERT-style encoders of widths 64-512.

The protocol is ``scalelab.experiments.loraplus_width.FULL`` (``--quick``: ``QUICK``), fixed
in the code before the first number, and its criterion is ``CRITERION`` there; docs/lora.md
("LoRA+ across width") states every rule. In short: encoders of widths 64, 128, 256, 512
(depth 4, head dim 64), each pre-trained for 300 masked-LM steps from scratch on the packaged
text, then fine-tuned on tweet sentiment with LoRA r=8 on the attention projections for 120
steps (linear warm-up/decay), head at its own lr 3e-3; a LoRA lr grid {2e-3, 4e-3, 8e-3}
and a LoRA+ grid eta = sqrt(lr_A lr_B) in {2e-3, 4e-3, 8e-3} x ratio in {2, 8, 32}, seeds
0, 1, 2: 144 fine-tuning runs.

Every run is one JSON file under ``--cache`` (default
``benchmarks/results/loraplus_width_cache/``, committed), the pre-trained encoders live under
the scalelab cache (``$SCALELAB_CACHE`` or ``~/.cache/scalelab``, not committed: rebuilt on
first use, deterministic). Stop it at any time and rerun to resume. About an hour on 2 idle
cores with ``--workers 2``.

Run: ``.venv/bin/python benchmarks/loraplus_width.py [--quick] [--workers 2]`` (prints a
table, writes benchmarks/results/loraplus_width.json, or loraplus_width_quick.json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from scalelab._utils import to_jsonable
from scalelab.data.models import cache_dir
from scalelab.experiments._width_protocol import cached_records, default_workers, run_protocol
from scalelab.experiments.loraplus_width import CRITERION, FULL, QUICK, describe_results, summarize

HERE = Path(__file__).resolve().parent


def _f(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def table(summary: dict) -> str:
    head = (f"{'width':>5} {'MLM':>5} {'LoRA lr':>8} {'LoRA best':>9} {'eta':>6} {'ratio':>5} "
            f"{'LoRA+ best':>10} {'gain':>8} {'speed-up':>8} {'held-out gain':>13} "
            f"{'own ratios':>10} {'acc L/L+':>11}")
    lines = [head]
    for r in summary["widths"]:
        if r["undetermined"]:
            lines.append(f"{r['width']:>5}  (no non-diverged choice)")
            continue
        own = "/".join(_f(p["own_best_ratio"], "g") for p in r["per_seed"])
        acc = r["final_accuracy"]
        lines.append(
            f"{r['width']:>5} {_f(r['pretrain_heldout_mlm_loss'], '.2f'):>5} "
            f"{r['lora_lr']:>8g} {r['lora_best']:>9.4f} {r['loraplus_eta']:>6g} "
            f"{r['best_ratio']:>5g} {r['loraplus_best']:>10.4f} {r['gain']:>+8.4f} "
            f"{_f(r['speedup'], '.2f'):>8} {_f(r['heldout_gain'], '+.4f'):>13} {own:>10} "
            f"{_f(acc['lora'], '.3f')}/{_f(acc['loraplus'], '.3f')}")
    return "\n".join(lines)


def status(protocol, runs_dir: Path) -> None:
    """What is cached, what is missing, and the per-width table of the complete widths."""
    import dataclasses

    done, missing = cached_records(protocol, runs_dir)
    print(f"{len(done)} of {len(done) + len(missing)} runs cached under {runs_dir}")
    for spec in missing:
        print(f"  missing: {spec.label()}")
    complete = [w for w in protocol.widths
                if not any(s.pretrain.width == w for s in missing)]
    if len(complete) >= 2:
        part = dataclasses.replace(protocol, widths=tuple(complete))
        summary = summarize(part, {"pretrain": {}, "runs": [r for r in done if
                                                           r["spec"]["pretrain"]["width"]
                                                           in complete]})
        print(f"complete widths {complete} (partial: not the judged protocol):")
        print(table(summary))
        print(describe_results(summary))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="the smoke protocol (seconds)")
    p.add_argument("--workers", type=int, default=default_workers(),
                   help="worker processes, one torch thread each (default: 2 on >= 2 cores)")
    p.add_argument("--cache", type=Path, default=HERE / "results" / "loraplus_width_cache")
    p.add_argument("--status", action="store_true",
                   help="run nothing: list the runs still missing from the cache and summarise "
                        "the widths that are complete")
    args = p.parse_args()
    protocol = QUICK if args.quick else FULL
    runs_dir = args.cache / ("quick" if args.quick else "full")
    if args.status:
        status(protocol, runs_dir)
        return
    t0 = time.perf_counter()
    data = run_protocol(protocol, runs_dir, cache_dir() / "loraplus-width",
                        workers=args.workers, log=lambda s: print(s, file=sys.stderr, flush=True))
    summary = summarize(protocol, data)
    print(table(summary))
    print(describe_results(summary))
    t = summary["trends"]
    print(f"claim (best ratio and gain grow with width): "
          f"{'holds' if t['holds'] else 'does not hold'}"
          f"{' (indicative)' if t['indicative'] else ''}; ratio grows {t['ratio_grows']}, "
          f"gain grows {t['gain_grows']}, pays at the largest width {t['pays_at_largest']}")
    doc = {"protocol": protocol.to_dict(), "criterion": CRITERION, "quick": args.quick,
           "machine": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs, "
                      f"{args.workers} worker process(es)",
           "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
           "wall_s_this_session": round(time.perf_counter() - t0, 1),
           "run_wall_s_total": round(sum(r["wall_s"] for r in data["runs"]), 1),
           "pretrain": {str(w): {k: m[k] for k in ("heldout_mlm_loss", "train_loss")}
                        for w, m in data["pretrain"].items()},
           **summary}
    out = HERE / "results" / ("loraplus_width_quick.json" if args.quick else "loraplus_width.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(to_jsonable(doc), indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
