"""The Python examples in docs/lora.md run as written (so the documentation cannot rot)."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[1] / "docs" / "lora.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_doc_has_examples():
    assert len(BLOCKS) == 3


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_runs(index, capsys):
    pytest.importorskip("peft")
    exec(compile(BLOCKS[index], f"{DOC.name}[block {index}]", "exec"), {"__name__": "__doc__"})
    if index == 0:
        out = capsys.readouterr().out
        assert "lora_A   lr=0.0001 weight_decay=0.01 tensors=4" in out
        assert "lora_B   lr=0.0016 weight_decay=0.01 tensors=4" in out
