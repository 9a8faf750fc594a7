"""The Python example in docs/data_pruning.md runs as written (so the documentation cannot rot)."""

from _docs import doc_blocks, run_block

BLOCKS = doc_blocks("data_pruning")


def test_the_doc_example_runs(capsys, tmp_path):
    assert len(BLOCKS) == 1
    run_block("data_pruning", 0, tmp_path)
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == ["random", "el2n", "calibrated"]
    assert all("kept 72" in ln for ln in lines)
    acc = {ln.split()[0]: float(ln.split()[-1]) for ln in lines}
    assert all(0.1 < a <= 1.0 for a in acc.values())
