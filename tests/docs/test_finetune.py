"""docs/finetune.md's Python examples run as written, in order, in one folder (the second
loads the adapter the first trained). They train the real MiniLM: slow."""

import pytest

from _docs import doc_blocks, run_block


@pytest.mark.slow
def test_finetune_examples_run_in_order(tmp_path):
    n = len(doc_blocks("finetune"))
    assert n == 3
    first = run_block("finetune", 0, tmp_path)
    assert first["result"].adapter.endswith("runs/ft/adapter")
    second = run_block("finetune", 1, tmp_path)
    assert second["config"].id2label == {0: "negative", 1: "neutral", 2: "positive"}
    run_block("finetune", 2, tmp_path)
