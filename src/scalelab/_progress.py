"""Progress bars on stderr (rich), so stdout stays clean for ``--json``."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def progress_enabled() -> bool:
    """Bars are shown when stderr is a terminal and ``SCALELAB_QUIET`` is not set."""
    return sys.stderr.isatty() and not os.environ.get("SCALELAB_QUIET")


def track(iterable: Iterable[T], description: str = "", total: int | None = None,
          disable: bool | None = None) -> Iterator[T]:
    """Iterate ``iterable`` with a rich progress bar on stderr (a plain pass-through when off)."""
    if disable is None:
        disable = not progress_enabled()
    if disable:
        yield from iterable
        return
    from rich.console import Console
    from rich.progress import track as rich_track

    yield from rich_track(iterable, description=description, total=total,
                          console=Console(stderr=True), transient=True)
