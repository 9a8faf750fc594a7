"""Error and warning types, and the one-line argument checks every layer shares.

docs/design.md, Conventions: bad values raise ``ValueError`` (a subclass is fine) whose message
names the argument, the value and what is allowed. The CLI turns it into one line on stderr
and exit status 2.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any


class ScalelabWarning(UserWarning):
    """Warnings scalelab itself raises (the test suite turns them into errors)."""


def check_positive(name: str, value: Any, *, allow_zero: bool = False) -> float:
    """Return ``float(value)`` or raise ``ValueError`` naming ``name`` if it is not > 0 (>= 0)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    ok = v >= 0 if allow_zero else v > 0
    if not ok or not math.isfinite(v):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return v


def check_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Return ``int(value)`` or raise ``ValueError`` if it is not an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int,)) and not (
        isinstance(value, float) and value.is_integer()
    ):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    v = int(value)
    if v < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return v


def check_fraction(name: str, value: Any, *, low_open: bool = False, high_open: bool = False) -> float:
    """Return ``float(value)`` or raise ``ValueError`` if it is not in [0, 1] (ends as asked)."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in [0, 1], got {value!r}") from None
    lo_ok = v > 0 if low_open else v >= 0
    hi_ok = v < 1 if high_open else v <= 1
    if not (lo_ok and hi_ok) or math.isnan(v):
        interval = ("(" if low_open else "[") + "0, 1" + (")" if high_open else "]")
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return v


def check_choice(name: str, value: Any, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``allowed``; else a ``ValueError`` listing them."""
    allowed = list(allowed)
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, allowed))}; got {value!r}")
    return value


def check_out_dir(name: str, path: Any) -> Path:
    """Return ``Path(path)`` if it is a folder or does not exist yet; a ``ValueError`` naming
    ``name`` when it is a file (an output folder that cannot be one)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise ValueError(f"{name} must be a directory, got a file: {str(p)!r}")
    return p
