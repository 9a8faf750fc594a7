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


def test_report_records_criterion_seeds_and_spread(tmp_path):
    from scalelab.experiments import Experiment, Outcome
    from scalelab.experiments._common import spread

    def run(ctx):
        vals = [0.1, 0.3]
        return Outcome(result={"x": 1}, claim_holds=True, seeds=[ctx.seed, ctx.seed + 1],
                       spread={"gain": spread(vals, [ctx.seed, ctx.seed + 1])})

    exp = Experiment(name="t-exp", description="d", paper="p", claim="c", run=run,
                     criterion="gain > 0 on every seed", min_seeds=3)
    doc = run_experiment(exp, tmp_path, seed=5)
    assert doc["criterion"] == "gain > 0 on every seed"
    assert doc["seeds"] == [5, 6] and doc["indicative"] is True
    assert doc["verdict"] == "indicative: holds"
    assert doc["spread"]["gain"]["per_seed"] == {"5": 0.1, "6": 0.3}
    report = (tmp_path / "REPORT.md").read_text()
    assert "gain > 0 on every seed" in report and "indicative only" in report
    assert "range [0.1, 0.3] over 2 seed(s)" in report


def test_report_survives_non_finite_spreads(tmp_path):
    from scalelab.experiments import Experiment, Outcome
    from scalelab.experiments._common import spread

    exp = Experiment(name="t-nan", description="d", paper="p", claim="c", criterion="x",
                     run=lambda ctx: Outcome(result={}, claim_holds=False,
                                             spread={"gap": spread([float("nan"), 1.0])}))
    doc = run_experiment(exp, tmp_path)
    assert doc["spread"]["gap"]["mean"] is None
    assert "gap: mean n/a" in (tmp_path / "REPORT.md").read_text()


def test_report_counts_cpu_of_the_process_and_its_children(tmp_path):
    """cpu_s covers work done in worker processes: a child that burns 0.3 s of its own CPU
    time (measured by the child itself, so no clock or load enters) must show up."""
    import subprocess
    import sys

    from scalelab.experiments import Experiment, Outcome

    burn = "import time\nwhile time.process_time() < 0.3: pass"

    def run(ctx):
        subprocess.run([sys.executable, "-c", burn], check=True)
        return Outcome(result={}, claim_holds=None)

    exp = Experiment(name="t-cpu", description="d", paper="p", claim="c", run=run)
    doc = run_experiment(exp, tmp_path)
    assert doc["cpu_s"] >= 0.3
    assert f"{doc['cpu_s']:.1f} s CPU" in (tmp_path / "REPORT.md").read_text()
def test_slope_helpers_have_one_home():
    """loglog_slope / loglog_fit / linear_fit: exact on a power law, the 95% half-width covers
    the true exponent on noisy data about 95% of the time, and the old import paths are the
    same objects."""
    import math

    import numpy as np

    from scalelab.experiments import _common, _lora_toy_common, _width_analysis
    x = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    y = 3.0 * x**-0.5
    assert _common.loglog_slope(x, y) == pytest.approx(-0.5, abs=1e-12)
    fit = _common.loglog_fit([*x, 0.0, 5.0], [*y, 1.0, math.nan])  # bad points dropped
    assert fit["n"] == 5 and fit["slope"] == pytest.approx(-0.5, abs=1e-12)
    assert fit["intercept"] == pytest.approx(math.log(3.0), abs=1e-12)
    assert math.isnan(_common.loglog_slope([2, 2, 2], [1, 2, 3]))  # one x: no slope
    assert math.isnan(_common.loglog_fit([1], [1])["slope"])
    # Coverage of the Student-t interval (oracle: the textbook formula holds for iid normal
    # noise): 400 noisy lines, coverage within 3 binomial sd of 0.95.
    rng = np.random.default_rng(0)
    t = np.arange(6.0)
    hits = 0
    for _ in range(400):
        f = _common.linear_fit(t, 2 * t + rng.normal(size=6))
        hits += abs(f["slope"] - 2) <= f["ci95"]
    assert abs(hits / 400 - 0.95) < 3 * math.sqrt(0.95 * 0.05 / 400)
    assert _lora_toy_common.loglog_slope is _common.loglog_slope
    assert _width_analysis.linear_fit is _common.linear_fit
