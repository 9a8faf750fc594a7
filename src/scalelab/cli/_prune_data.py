"""``scalelab prune-data``: score a user's CSV / array dataset and keep a subset."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def _parse_keep(text: str) -> float | int:
    """``"0.3"`` -> a fraction, ``"300"`` -> a count (``"1"`` is one example, ``"1.0"`` all)."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"--keep must be a fraction in (0, 1] or an integer count, got {text!r}"
                         ) from None


def prune_data(
    data: Path = typer.Argument(..., help="A .csv (header; numeric features and a label column), "
                                "a .npz (arrays X and y) or a .npy (label in the last column)."),
    keep: str = typer.Option(..., "--keep", help="How much to keep: a fraction in (0, 1] "
                             "(0.3) or an integer count (300)."),
    score: str = typer.Option("el2n", "--score", help="Per-example score: el2n, grand, "
                              "forgetting, loss, margin (low margin = hard) or lipschitz "
                              "(LiPrune: last-layer gradient norm)."),
    method: str = typer.Option("top", "--method", help="top (highest scores), bottom (lowest), "
                               "random (no scoring) or importance (drawn with probability "
                               "proportional to the score)."),
    calibration: str = typer.Option("none", "--calibration", help="none, or random-exploration: "
                                    "a share --alpha of the budget drawn at random."),
    alpha: float = typer.Option(0.5, "--alpha", help="Random share of the budget with "
                                "--calibration random-exploration (0 = pure score, 1 = random)."),
    label: str = typer.Option(None, "--label", help="Label column (.csv, default 'label') or "
                              "array name (.npz, default 'y')."),
    encoding: str = typer.Option("utf-8", "--encoding", help="Text encoding of a .csv "
                                 "(decoded strictly)."),
    epochs: int = typer.Option(10, "--epochs", help="Training epochs of the scoring model "
                               "(forgetting needs >= 2)."),
    runs: int = typer.Option(1, "--runs", help="Independent initialisations averaged."),
    hidden: int = typer.Option(256, "--hidden", help="Width of the scoring MLP."),
    standardize: bool = typer.Option(True, "--standardize/--no-standardize",
                                     help="Z-score each feature column before scoring."),
    seed: int = typer.Option(0, "--seed", help="Random seed; same seed, same subset."),
    out: Path = typer.Option(None, "--out", help="Write the kept indices here (one per line; "
                             ".npy for a numpy array). Default: print them."),
    save_scores: Path = typer.Option(None, "--save-scores", help="Also write every example's "
                                     "score to this CSV (index,score)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object on stdout."),
) -> None:
    """Keep a subset of a labelled dataset by a data-pruning score (arXiv 2302.06960).

    Trains a small MLP for a few epochs to score every example (EL2N, GraNd, forgetting,
    loss, margin or LiPrune's lipschitz), then keeps the top/bottom-scored examples,
    optionally calibrated by random exploration. Indices refer to the rows of DATA (0-based).
    """
    import numpy as np

    from ..data import read_feature_table
    from ..errors import check_choice
    from ..prune.data import (
        CALIBRATIONS,
        METHODS,
        SCORES,
        keep_count,
        score_examples,
        select_subset,
    )

    check_choice("--score", score, SCORES)
    check_choice("--method", method, METHODS)
    check_choice("--calibration", calibration, ("none", *CALIBRATIONS))
    keep_value = _parse_keep(keep)
    table = read_feature_table(data, label, encoding=encoding, label_arg="--label")
    X, y = table.x, table.y
    calib = None if calibration == "none" else calibration
    k = keep_count(len(y), keep_value)  # validates --keep before any training
    if standardize:
        X = (X - X.mean(0)) / (X.std(0) + 1e-8)
    scores = None
    if method != "random":
        typer.echo(f"scoring {len(y)} examples ({score}, {epochs} epochs x {runs} runs)", err=True)
        scores = score_examples((X, y), score, epochs=epochs, runs=runs, hidden=hidden,
                                seed=seed, progress=True)[score]
    idx = select_subset(scores if scores is not None else np.zeros(len(y)), keep_value, method,
                        calib, alpha=alpha, seed=seed)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.suffix.lower() == ".npy":
            np.save(out, idx)
        else:
            out.write_text("".join(f"{i}\n" for i in idx))
    if save_scores is not None and scores is not None:
        save_scores.parent.mkdir(parents=True, exist_ok=True)
        save_scores.write_text("index,score\n" + "".join(f"{i},{v:.10g}\n"
                                                         for i, v in enumerate(scores)))
    doc = {"data": str(data), "n": int(len(y)), "classes": list(table.classes), "kept": int(k),
           "keep": keep_value, "score": None if method == "random" else score, "method": method,
           "calibration": calib, "alpha": alpha if calib else None, "seed": seed,
           "epochs": epochs, "runs": runs, "out": str(out) if out is not None else None,
           "indices": idx.tolist()}
    if as_json:
        typer.echo(json.dumps(doc))
    elif out is not None:
        typer.echo(f"kept {k} of {len(y)} examples -> {out}")
    else:
        typer.echo("\n".join(str(i) for i in idx))


def register(app: typer.Typer) -> None:
    app.command("prune-data")(prune_data)
