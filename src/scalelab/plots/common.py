"""Shared matplotlib set-up: a headless backend and one way to save figures."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def savefig(fig, path: str | Path, dpi: int = 120) -> Path:
    """Save ``fig`` as PNG at ``path`` (parents created), close it, and return the path."""
    path = Path(path)
    if path.parent and not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path
