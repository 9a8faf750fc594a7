"""Run the ```python blocks of docs/*.md as written, so the documentation cannot rot."""

from __future__ import annotations

import os
import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def doc_blocks(name: str) -> list[str]:
    """The Python code blocks of ``docs/<name>.md``, in order."""
    return re.findall(r"```python\n(.*?)```", (DOCS / f"{name}.md").read_text(), flags=re.S)


def run_block(name: str, index: int, cwd: Path | None = None) -> dict:
    """Execute block ``index`` of ``docs/<name>.md`` (in ``cwd`` if given); return its globals."""
    scope = {"__name__": "__doc__"}
    code = compile(doc_blocks(name)[index], f"docs/{name}.md[block {index}]", "exec")
    old = Path.cwd()
    if cwd is not None:
        os.chdir(cwd)
    try:
        exec(code, scope)
    finally:
        os.chdir(old)
    return scope
