"""Reading the user's table files (CSV, JSON lines, JSON arrays, plain lines) strictly.

Two loaders sit on top: :func:`scalelab.data.load_text_dataset` (text and labels, for
``scalelab finetune``) and :func:`read_feature_table` (numeric features and labels, for
``scalelab prune-data``); both turn class names into indices with :func:`index_labels`, so
one label order (:func:`label_order`) holds everywhere.

Every file scalelab reads from a user goes through :func:`read_table`: text is decoded as
UTF-8 (a byte-order mark is fine) unless another ``encoding`` is named, and anything that
does not decode is a one-line ``ValueError`` naming the file, the line and the way out
(``--encoding``), never a silent replacement character. A UTF-16/32 file (byte-order mark
or NUL bytes) is recognised and named as such, not reported as "wrong columns".
"""

from __future__ import annotations

import codecs
import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

#: Suffixes :func:`read_table` reads, and what each holds.
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".txt")
#: Suffixes :func:`read_feature_table` reads.
FEATURE_SUFFIXES = (".csv", ".npz", ".npy")

_WIDE_BOMS = ((codecs.BOM_UTF32_LE, "UTF-32"), (codecs.BOM_UTF32_BE, "UTF-32"),
              (codecs.BOM_UTF16_LE, "UTF-16"), (codecs.BOM_UTF16_BE, "UTF-16"))


@dataclass(frozen=True)
class Table:
    """Rows of a file as dicts, with the column names (in file order for CSV)."""

    path: str
    rows: tuple[dict, ...]
    columns: tuple[str, ...]


def decode_text(data: bytes, where: str, encoding: str = "utf-8") -> str:
    """``data`` decoded strictly; a ``ValueError`` naming ``where``, the line and
    ``--encoding`` when it does not decode (a UTF-8 byte-order mark is dropped)."""
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise ValueError(f"encoding {encoding!r} is not a known text encoding (e.g. utf-8, "
                         "latin-1, utf-16)") from None
    utf8 = codecs.lookup(encoding).name == "utf-8"
    if utf8:
        for bom, name in _WIDE_BOMS:
            if data.startswith(bom):
                raise ValueError(f"{where} is {name} encoded (byte-order mark), not UTF-8: "
                                 f"pass --encoding {name.lower()} or convert it to UTF-8")
        if data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8):]
    try:
        text = data.decode(encoding, errors="strict")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        byte = data[e.start:e.start + 1].hex()
        raise ValueError(f"{where} line {line} is not valid {encoding} (byte 0x{byte}): pass "
                         "--encoding with the file's encoding (e.g. --encoding latin-1) or "
                         "convert it to UTF-8") from None
    if utf8 and "\x00" in text:
        line = text[:text.index("\x00")].count("\n") + 1
        raise ValueError(f"{where} line {line} holds NUL bytes: it looks UTF-16 encoded "
                         "without a byte-order mark; pass --encoding utf-16-le (or -be) or "
                         "convert it to UTF-8")
    return text


def read_table(path: str | Path, *, encoding: str = "utf-8", what: str = "file") -> Table:
    """Read ``path`` into rows of dicts.

    - ``.csv`` / ``.tsv``: a header line, then rows (values are strings, cells stripped of
      surrounding blanks in the column names only);
    - ``.jsonl``: one JSON object per non-blank line; ``.json``: a JSON array of objects (or
      JSON lines);
    - ``.txt``: one row per non-blank line, in a single column ``text``.

    Args:
        path: the file.
        encoding: its text encoding (UTF-8 by default; decoding is strict).
        what: how messages name the file (e.g. ``"dataset file"``).

    Raises:
        FileNotFoundError: no such file. ValueError: a folder, another suffix, text that does
        not decode, a JSON line that does not parse, a row that is not an object.
    """
    p = Path(path).expanduser()
    where = f"{what} {str(path)!r}"
    if not p.exists():
        raise FileNotFoundError(f"{what} not found: {str(path)!r}")
    if p.is_dir():
        raise ValueError(f"{what} must be a file, got a folder: {str(path)!r}")
    suffix = p.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ValueError(f"{where} must end in {', '.join(TABLE_SUFFIXES)}")
    text = decode_text(p.read_bytes(), where, encoding)
    return parse_table(text, suffix, where, path=str(p))


def parse_table(text: str, suffix: str, where: str = "input", *, path: str = "-") -> Table:
    """Parse already decoded ``text`` as a table of the kind ``suffix`` names (see
    :func:`read_table`)."""
    if suffix in (".csv", ".tsv"):
        reader = csv.DictReader(io.StringIO(text, newline=""),
                                delimiter="\t" if suffix == ".tsv" else ",")
        try:
            rows = [dict(r) for r in reader]
        except csv.Error as e:
            raise ValueError(f"{where} line {reader.line_num} is not valid CSV: {e}") from None
        cols = tuple(c.strip() for c in (reader.fieldnames or []))
        rows = [{(k.strip() if isinstance(k, str) else k): v for k, v in r.items()}
                for r in rows]
        return Table(path, tuple(rows), cols)
    if suffix == ".txt":
        rows = [{"text": ln.strip()} for ln in text.splitlines() if ln.strip()]
        return Table(path, tuple(rows), ("text",))
    if suffix == ".json" and text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"{where} line {e.lineno} is not JSON: {e.msg}") from None
        if not isinstance(rows, list):
            raise ValueError(f"{where} must hold a JSON array of objects")
    else:
        rows = []
        for i, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise ValueError(f"{where} line {i} is not JSON: {e.msg}") from None
    for i, r in enumerate(rows, 1):
        if not isinstance(r, dict):
            raise ValueError(f"{where} row {i} is not a JSON object (one object per row)")
    cols = tuple(sorted({k for r in rows for k in r}))
    return Table(path, tuple(rows), cols)


def label_order(names) -> list[str]:
    """Class names in the order their indices follow: sorted, numerically when every name is
    a number ("2" before "10")."""
    names = sorted({str(n) for n in names})
    try:
        return sorted(names, key=float)
    except ValueError:
        return names


def index_labels(values, where: str) -> tuple[np.ndarray, list[str]]:
    """Class labels -> indices ``0..C-1`` in :func:`label_order`, and the class names.

    Args:
        values: one label per example (strings or numbers; compared as stripped strings).
        where: how messages name the data (e.g. ``"dataset 'a.csv'"``).
    Returns:
        ``(indices, names)``: int64 indices into ``names``.
    Raises:
        ValueError: fewer than two classes.
    """
    raw = [str(v).strip() for v in np.asarray(values).ravel().tolist()]
    names = label_order(raw)
    if len(names) < 2:
        shown = repr(names[0]) if names else "none"
        raise ValueError(f"{where}: the label column has one class ({shown}); need at least 2")
    index = {c: i for i, c in enumerate(names)}
    return np.array([index[v] for v in raw], dtype=np.int64), names


@dataclass(frozen=True)
class FeatureTable:
    """A labelled numeric dataset: features ``x`` (float32, N x D), labels ``y`` (int64
    indices into ``classes``), the class names in :func:`label_order`."""

    path: str
    x: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]


def read_feature_table(path: str | Path, label: str | None = None, *, encoding: str = "utf-8",
                       label_arg: str = "label") -> FeatureTable:
    """Read numeric features and class labels from a ``.csv``, ``.npz`` or ``.npy`` file.

    - ``.csv`` with a header (read by :func:`read_table`): numeric feature columns and a label
      column (``label`` unless named; any values);
    - ``.npz``: arrays ``X`` (or ``x``; flattened per row) and ``y`` (or ``label``, or the
      array named ``label``);
    - ``.npy``: one 2-D array whose last column is the label.

    Labels are indexed in :func:`label_order` (sorted, numerically when all are numbers), the
    order :func:`scalelab.data.load_text_dataset` uses.

    Args:
        path: the file.
        label: the label column (.csv) or array (.npz); default ``label`` / ``y``.
        encoding: text encoding of a .csv (strict; UTF-8 by default).
        label_arg: how messages name the ``label`` argument (the CLI passes ``--label``).
    Returns:
        A :class:`FeatureTable`.
    Raises:
        FileNotFoundError: no such file. ValueError: another suffix, a missing label column or
        array, a cell that is not a number, non-finite features, fewer than two classes.
    """
    p = Path(path).expanduser()
    where = repr(str(path))
    if not p.exists():
        raise FileNotFoundError(f"data file not found: {str(path)!r}")
    suffix = p.suffix.lower()
    if p.is_dir() or suffix not in FEATURE_SUFFIXES:
        raise ValueError(f"data must be a .csv, .npz or .npy file, got {str(path)!r}")
    if suffix == ".csv":
        table = read_table(p, encoding=encoding, what="data file")
        col = label or "label"
        if col not in table.columns:
            raise ValueError(f"{label_arg}: column {col!r} is not in {where}; columns: "
                             f"{', '.join(table.columns) or '(none)'}")
        feats = [c for c in table.columns if c != col]
        if not table.rows or not feats:
            raise ValueError(f"{where} needs at least one row and one feature column")
        x = np.empty((len(table.rows), len(feats)), dtype=np.float32)
        for i, r in enumerate(table.rows, 1):
            for j, c in enumerate(feats):
                try:
                    x[i - 1, j] = float(r[c])
                except (TypeError, ValueError):
                    raise ValueError(f"{where} row {i}, column {c!r}: not a number: "
                                     f"{r[c]!r}") from None
        raw = [r[col] for r in table.rows]
    elif suffix == ".npz":
        arrays = np.load(p, allow_pickle=False)
        xkey = next((k for k in ("X", "x") if k in arrays), None)
        ykey = label or next((k for k in ("y", "label") if k in arrays), None)
        if xkey is None or ykey not in arrays:
            raise ValueError(f"{where} must hold arrays 'X' and 'y' (or name the label "
                             f"array with {label_arg}); found {', '.join(arrays.files)}")
        x = np.asarray(arrays[xkey], dtype=np.float32).reshape(len(arrays[xkey]), -1)
        raw = arrays[ykey]
    else:
        a = np.load(p, allow_pickle=False)
        if a.ndim != 2 or a.shape[1] < 2:
            raise ValueError(f"{where} must be a 2-D array: features then the label in the "
                             f"last column; got shape {a.shape}")
        x = np.asarray(a[:, :-1], dtype=np.float32)
        raw = a[:, -1]
    y, names = index_labels(raw, where)
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{where}: {x.shape[0]} feature rows but {y.shape[0]} labels")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{where}: features must be finite (found nan or inf)")
    return FeatureTable(str(p), x, y, tuple(names))
