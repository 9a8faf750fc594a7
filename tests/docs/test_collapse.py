"""The Python examples in docs/collapse_and_lood.md run as written and print what they say."""

import numpy as np

from _docs import doc_blocks, run_block

BLOCKS = doc_blocks("collapse_and_lood")


def _run(index):
    return run_block("collapse_and_lood", index)


def test_the_doc_has_two_examples():
    assert len(BLOCKS) == 2


def test_collapse_example(capsys):
    s = _run(0)
    capsys.readouterr()
    sim, formula = s["trace"].mean_purity[[1, 10, 60]], s["collapse_purity"]([1, 10, 60], 20,
                                                                             s["s0"])
    np.testing.assert_allclose(sim, formula, rtol=0.05)
    assert abs(s["mixed"].mean_deviation[-1] - s["deviation_limit"](30, 20, s["s0"])) < 0.01


def test_lood_example(capsys):
    s = _run(1)
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4
    assert float(lines[0]) > 0 and float(lines[1]) >= 0 and float(lines[2]) > 0
    assert s["res"].lood >= s["res"].initial_lood
    assert s["scores"].shape == (60,)
