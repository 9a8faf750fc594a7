"""``scalelab predict``, ``scalelab evaluate`` and ``scalelab export``: use a trained run.

RUN is a run's output folder (``scalelab finetune --out``), its ``adapter/`` folder, or a
merged export; a ``--compare`` folder names its variants. These commands parse, call
:mod:`scalelab.train` and print.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer


def predict_cmd(
    run: Path = typer.Argument(..., help="A run folder (scalelab finetune --out), its adapter/, "
                               "or a merged export."),
    input: str = typer.Option(..., "--input", "-i", help="A .csv/.jsonl/.txt file, or - for "
                              "standard input. Classification: a 'text' column; causal LMs: "
                              "'prompt' (or 'text', or 'messages'). Plain lines are texts."),
    fmt: str = typer.Option("auto", "--format", help="How to read --input: auto (by suffix; "
                            "stdin: JSON lines if every line starts with '{', else plain "
                            "lines), csv, jsonl or lines."),
    max_new_tokens: int = typer.Option(64, "--max-new-tokens", help="Causal LMs: most tokens "
                                       "generated per answer."),
    temperature: float = typer.Option(0.0, "--temperature", help="Causal LMs: 0 is greedy "
                                      "(default); > 0 samples at that temperature."),
    batch_size: int = typer.Option(16, "--batch-size", help="Rows per forward pass."),
    seed: int = typer.Option(0, "--seed", help="Seed of sampling (temperature > 0)."),
    encoding: str = typer.Option("utf-8", "--encoding", help="Text encoding of --input."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON list (an object per "
                                 "row) alone on stdout."),
) -> None:
    """Predict with a trained run: class and probabilities per row (classification) or the
    generated answer (causal LM; greedy unless --temperature)."""
    from ..train import load_run, predict, read_inputs
    from ..train.export import find_adapter

    find_adapter(run)  # a bad RUN fails before standard input is read
    rows = read_inputs(input, encoding=encoding, fmt=fmt)
    loaded = load_run(run)
    preds = predict(loaded, rows, max_new_tokens=max_new_tokens, temperature=temperature,
                    batch_size=batch_size, seed=seed, where=f"input {input!r}")
    if as_json:
        typer.echo(json.dumps(preds, indent=1, ensure_ascii=False))
        return
    for p in preds:
        if loaded.task == "classification":
            probs = "  ".join(f"{k} {v:.3f}" for k, v in p["probabilities"].items())
            typer.echo(f"{p['label']}\t{probs}\t{p['text']}")
        else:
            typer.echo(f"> {p['prompt']}\n{p['response']}\n")


def evaluate_cmd(
    run: Path = typer.Argument(..., help="A run folder, its adapter/, or a merged export."),
    dataset: str = typer.Option(None, "--dataset", help="tweets, bbc, chat or a file in the "
                                "run's format (scored whole). Default: the run's own held-out "
                                "split, which reproduces its final eval loss."),
    eval_size: int = typer.Option(None, "--eval-size", help="Held-out size of an embedded "
                                  "dataset (default: the run's)."),
    encoding: str = typer.Option("utf-8", "--encoding", help="Text encoding of --dataset."),
    as_json: bool = typer.Option(False, "--json", help="Print the numbers as JSON alone on "
                                 "stdout."),
) -> None:
    """Evaluate a trained run: eval loss and accuracy (classification) or perplexity (causal
    LM)."""
    from ..train import evaluate_run, load_run

    result = evaluate_run(load_run(run), dataset, eval_size=eval_size, encoding=encoding)
    if as_json:
        typer.echo(json.dumps(result, indent=1))
        return
    metric = (f"accuracy {result['accuracy']:.4f}" if "accuracy" in result
              else f"perplexity {result['perplexity']:.3f}")
    typer.echo(f"{result['dataset']}: {result['examples']} examples, loss {result['loss']:.4f}, "
               f"{metric}")


def export_cmd(
    run: Path = typer.Argument(..., help="A run folder or its adapter/."),
    out: Path = typer.Option(..., "--out", help="A new (or empty) folder to write."),
    merge: bool = typer.Option(False, "--merge", help="Merge LoRA into the weights: a plain "
                               "transformers model (safetensors) that loads without PEFT or "
                               "scalelab. Without it: the PEFT adapter folder."),
) -> None:
    """Export a trained run: the PEFT adapter, or with --merge a plain transformers model."""
    from ..train import export_run

    folder = export_run(run, out, merge=merge)
    kind = "merged model" if merge else "adapter"
    typer.echo(f"{kind} written to {folder}", err=True)


def register(app: typer.Typer) -> None:
    app.command("predict")(predict_cmd)
    app.command("evaluate")(evaluate_cmd)
    app.command("export")(export_cmd)
