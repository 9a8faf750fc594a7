"""The Python examples in docs/lora.md run as written (so the documentation cannot rot)."""


import pytest

from _docs import doc_blocks, run_block

BLOCKS = doc_blocks("lora")


def test_the_doc_has_examples():
    assert len(BLOCKS) == 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_runs(index, capsys, tmp_path):
    pytest.importorskip("peft")
    if "trl" in BLOCKS[index]:
        pytest.importorskip("trl")
    run_block("lora", index, tmp_path)
    if index == 0:
        out = capsys.readouterr().out
        assert "lora_A   lr=0.0001 weight_decay=0.01 tensors=4" in out
        assert "lora_B   lr=0.0016 weight_decay=0.01 tensors=4" in out
    if index == 2:  # TRL's SFTTrainer with the mixin
        assert "'lora_A': 0.0001, 'lora_B': 0.0016" in capsys.readouterr().out
