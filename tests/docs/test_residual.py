"""The Python examples in docs/residual.md run as written and print what the doc says."""

import re

import pytest

from _docs import doc_blocks, run_block

BLOCKS = doc_blocks("residual")


def test_the_doc_has_examples():
    assert len(BLOCKS) == 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_runs(index, capsys, tmp_path):
    run_block("residual", index, tmp_path)
    out = capsys.readouterr().out
    expected = {
        0: ["[0.5, 0.5, 0.5, 0.5]", "[1.0, 0.5, 0.3333333333333333, 0.25]"],
        1: ["16"],
        2: ["[0.75, 0.75, 0.75]", "12.0 0.5294", "6.0 True"],
        3: ["other 0.003 1e-08 4", "blocks 0.000375 1.25e-09 64"],
    }[index]
    for line in expected:
        assert line in out
    if index == 0:  # the Stable ResNet's variance ratio is near e, nowhere near 2^64
        ratio = float(re.search(r"q_L / q_0 = ([\d.]+)", out).group(1))
        assert 1.5 < ratio < 4.0
