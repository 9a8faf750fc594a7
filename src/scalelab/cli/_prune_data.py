"""``scalelab prune-data``: score a user's CSV / array dataset and keep a subset."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import typer

SUFFIXES = (".csv", ".npz", ".npy")


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


def _labels_to_ints(raw: list[str] | object, where: str):
    """Class labels -> indices 0..C-1 in sorted order (numerically when all are integers)."""
    import numpy as np

    raw = [str(v).strip() for v in np.asarray(raw).ravel().tolist()]
    names = sorted(set(raw))
    try:
        names = sorted(names, key=lambda v: float(v))
    except ValueError:
        pass
    if len(names) < 2:
        raise ValueError(f"{where}: the labels hold one class ({names[0]!r}); need at least 2")
    index = {c: i for i, c in enumerate(names)}
    return np.array([index[v] for v in raw], dtype=np.int64), names


def load_table(path: Path, label: str | None = None):
    """Features ``X`` (float32, N x D), labels ``y`` (int64) and class names from a file.

    - ``.csv`` with a header: numeric feature columns and a label column (``label`` unless
      named, any values: sorted, then indexed).
    - ``.npz``: arrays ``X`` (or ``x``) and ``y`` (or the key ``label``).
    - ``.npy``: one 2-D array whose last column is the label.
    """
    import numpy as np

    if not path.exists():
        raise FileNotFoundError(f"data file not found: {str(path)!r}")
    suffix = path.suffix.lower()
    if path.is_dir() or suffix not in SUFFIXES:
        raise ValueError(f"data must be a .csv, .npz or .npy file, got {str(path)!r}")
    if suffix == ".csv":
        col = label or "label"
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            rows, cols = list(reader), [c.strip() for c in reader.fieldnames or []]
        if col not in cols:
            raise ValueError(f"--label: column {col!r} is not in {str(path)!r}; columns: "
                             f"{', '.join(cols) or '(none)'}")
        feats = [c for c in cols if c != col]
        if not rows or not feats:
            raise ValueError(f"{str(path)!r} needs at least one row and one feature column")
        X = np.empty((len(rows), len(feats)), dtype=np.float32)
        for i, r in enumerate(rows, 1):
            for j, c in enumerate(feats):
                try:
                    X[i - 1, j] = float(r[c])
                except (TypeError, ValueError):
                    raise ValueError(f"{str(path)!r} row {i}, column {c!r}: not a number: "
                                     f"{r[c]!r}") from None
        y, names = _labels_to_ints([r[col] for r in rows], str(path))
    elif suffix == ".npz":
        arrays = np.load(path, allow_pickle=False)
        xkey = next((k for k in ("X", "x") if k in arrays), None)
        ykey = label or next((k for k in ("y", "label") if k in arrays), None)
        if xkey is None or ykey not in arrays:
            raise ValueError(f"{str(path)!r} must hold arrays 'X' and 'y' (or name the label "
                             f"array with --label); found {', '.join(arrays.files)}")
        X = np.asarray(arrays[xkey], dtype=np.float32).reshape(len(arrays[xkey]), -1)
        y, names = _labels_to_ints(arrays[ykey], str(path))
    else:
        a = np.load(path, allow_pickle=False)
        if a.ndim != 2 or a.shape[1] < 2:
            raise ValueError(f"{str(path)!r} must be a 2-D array: features then the label in the "
                             f"last column; got shape {a.shape}")
        X = np.asarray(a[:, :-1], dtype=np.float32)
        y, names = _labels_to_ints(a[:, -1], str(path))
    if X.shape[0] != y.shape[0]:
        raise ValueError(f"{str(path)!r}: {X.shape[0]} feature rows but {y.shape[0]} labels")
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{str(path)!r}: features must be finite (found nan or inf)")
    return X, y, names


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

    from .._errors import check_choice
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
    X, y, names = load_table(data, label)
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
    doc = {"data": str(data), "n": int(len(y)), "classes": names, "kept": int(k),
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
