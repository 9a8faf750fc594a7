"""Every Python example in docs/ runs as written (docs with their own checks have a
test_<area>_docs.py that also compares what they print)."""

import pytest

from _docs import doc_blocks, run_block

CHECKED_ELSEWHERE = {"lora", "residual", "data_pruning", "collapse_and_lood", "finetune"}
SLOW: set[str] = set()
DOCS = ["bounds", "covariance", "diagnostics", "eoc", "pruning", "reproductions_lora",
        "../README"]
DOCS += ["kernels"]
DOCS += ["generalisation"]
DOCS += ["design", "methods"]

CASES = [
    pytest.param(name, i, id=f"{name.strip('./')}-{i}", marks=[pytest.mark.slow] if name in SLOW else [])
    for name in DOCS
    for i in range(len(doc_blocks(name)))
]


def test_every_doc_is_covered():
    from _docs import DOCS as folder

    assert {p.stem for p in folder.glob("*.md")} == (set(DOCS) | CHECKED_ELSEWHERE) - {"../README"}


@pytest.mark.parametrize("name,index", CASES)
def test_example_runs(name, index, tmp_path):
    run_block(name, index, tmp_path)
