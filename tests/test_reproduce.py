"""Every registered reproduction runs at its --quick size, so the docs cannot rot."""

import json

import pytest

from scalelab.cli import main
from scalelab.experiments import list_experiments, run_experiment

EXPERIMENTS = list_experiments()


def test_list_prints_one_name_per_line(capsys):
    assert main(["reproduce", "list"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [ln.split("\t")[0] for ln in lines] == [e.name for e in EXPERIMENTS]
    assert all(" " not in ln.split("\t")[0] for ln in lines)


@pytest.mark.parametrize(
    "exp",
    [pytest.param(e, id=e.name, marks=[pytest.mark.slow] if e.slow_quick else []) for e in EXPERIMENTS],
)
def test_quick_run_writes_report(exp, tmp_path):
    (tmp_path / "unrelated.txt").write_text("kept")  # --out may hold other files
    doc = run_experiment(exp.name, tmp_path, quick=True, seed=0)
    assert (tmp_path / "unrelated.txt").read_text() == "kept"
    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk["name"] == exp.name and on_disk["quick"] is True
    assert on_disk == json.loads(json.dumps(doc))
    assert doc["figures"], "every reproduction draws at least one figure"
    for f in doc["figures"]:
        assert f.endswith(".png") and (tmp_path / f).stat().st_size > 1000
    report = (tmp_path / "REPORT.md").read_text()
    assert exp.claim in report and "## What came out" in report
