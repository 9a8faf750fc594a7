"""`scalelab eoc` and `scalelab phase`."""

import json
import math

import pytest

from scalelab.cli import main

KEYS = {"activation", "sigma_b", "sigma_w", "q", "chi1", "stable", "xi_q", "xi_c"}


def test_eoc_json_is_one_flat_object(capsys):
    assert main(["eoc", "tanh", "--sigma-b", "0.2", "--json"]) == 0
    out = capsys.readouterr().out
    rec = json.loads(out)
    assert set(rec) == KEYS and out.count("\n") == 1
    assert rec["activation"] == "tanh" and rec["sigma_b"] == 0.2
    assert abs(rec["chi1"] - 1) < 1e-9 and rec["stable"] is True and rec["xi_c"] is None
    assert rec["sigma_w"] == pytest.approx(1.3041458, abs=1e-6)
    assert main(["eoc", "relu", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["q"] is None and rec["sigma_w"] == pytest.approx(math.sqrt(2))


def test_eoc_text_and_plot(capsys, tmp_path):
    assert main(["eoc", "elu", "--param", "alpha=0.5", "--plot", str(tmp_path / "c.png")]) == 0
    cap = capsys.readouterr()
    assert "sigma_w" in cap.out and "xi_q" in cap.out and "alpha=0.5" in cap.out
    assert (tmp_path / "c.png").stat().st_size > 1000 and "wrote" in cap.err


def test_phase_plot_and_point(capsys, tmp_path):
    assert main(["phase", "tanh", "--plot", str(tmp_path / "p.png"), "--resolution", "12"]) == 0
    assert (tmp_path / "p.png").stat().st_size > 1000
    capsys.readouterr()
    assert main(["phase", "tanh", "--sigma-w", "3", "--sigma-b", "0.2"]) == 0
    assert capsys.readouterr().out.strip() == "chaotic"


@pytest.mark.parametrize("argv,msg", [
    (["eoc", "foo"], "error: unknown activation 'foo'; known: relu, leaky_relu, tanh"),
    (["eoc", "relu", "--sigma-b", "0.3"], "error: sigma_b must be 0"),
    (["eoc", "softplus"], "error: no Edge of Chaos point"),
    (["eoc", "elu", "--param", "alpha"], "error: --param must look like KEY=VALUE"),
    (["phase", "foo", "--plot", "x.png"], "error: unknown activation 'foo'"),
    (["phase", "tanh", "--sigma-w", "1.0"], "error: --sigma-w and --sigma-b go together"),
])
def test_errors_one_line_exit_2(argv, msg, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(msg) and "\n" not in err
