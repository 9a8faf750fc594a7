"""Reading the user's table files (CSV, JSON lines, JSON arrays, plain lines) strictly.

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

#: Suffixes :func:`read_table` reads, and what each holds.
TABLE_SUFFIXES = (".csv", ".tsv", ".jsonl", ".json", ".txt")

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
