"""The Python example in docs/data_pruning.md runs as written (so the documentation cannot rot)."""

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "data_pruning.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_doc_example_runs(capsys):
    assert len(BLOCKS) == 1
    exec(compile(BLOCKS[0], f"{DOC.name}[block 0]", "exec"), {"__name__": "__doc__"})
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == ["random", "el2n", "calibrated"]
    assert all("kept 72" in ln for ln in lines)
    acc = {ln.split()[0]: float(ln.split()[-1]) for ln in lines}
    assert all(0.1 < a <= 1.0 for a in acc.values())
