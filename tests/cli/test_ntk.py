"""`scalelab ntk`: the NTK depth profile from the command line."""

import json
import math

import numpy as np
import pytest

from scalelab.cli import main
from scalelab.experiments.ntk_setup import digit_inputs
from scalelab.theory import ntk_kernel


def test_json_is_one_object_with_the_profile(capsys):
    assert main(["ntk", "relu", "--depth", "20", "--n-inputs", "5", "--json"]) == 0
    out = capsys.readouterr().out
    rec = json.loads(out)
    assert out.count("\n") == 1
    assert rec["activation"] == "relu" and rec["phase"] == "edge" and rec["n_inputs"] == 5
    assert rec["sigma_w"] == pytest.approx(math.sqrt(2)) and rec["sigma_b"] == 0.0
    assert rec["limit"] == 0.25 and rec["depths"][0] == 1 and rec["depths"][-1] == 20
    assert set(rec["fit"]) >= {"rate", "exponent", "r2_exponential", "r2_power", "better"}
    # the numbers are the kernel's: recompute the last distance from ntk_kernel
    T = ntk_kernel("relu", math.sqrt(2), 0.0, 20, digit_inputs(5, 0))
    Tn = T / np.sqrt(np.outer(np.diag(T), np.diag(T)))
    assert rec["distance"][-1] == pytest.approx(
        np.abs(Tn - 0.25)[~np.eye(5, dtype=bool)].max(), rel=1e-10)


def test_defaults_are_the_eoc_point_and_text_output(capsys, tmp_path):
    assert main(["ntk", "erf", "--depth", "12", "--n-inputs", "3",
                 "--plot", str(tmp_path / "p.png")]) == 0
    cap = capsys.readouterr()
    assert "(edge)" in cap.out and "sigma_b=0.2" in cap.out and "fits better" in cap.out
    assert (tmp_path / "p.png").stat().st_size > 1000 and "wrote" in cap.err
    assert main(["ntk", "erf", "--sigma-w", "2.5", "--sigma-b", "0.3", "--depth", "8",
                 "--n-inputs", "3", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["phase"] == "chaotic" and rec["limit"] == 0.0


def test_resnet_profile(capsys):
    assert main(["ntk", "relu", "--resnet", "--depth", "16", "--n-inputs", "3", "--json"]) == 0
    rec = json.loads(capsys.readouterr().out)
    assert rec["architecture"] == "resnet" and rec["limit"] == "infinite-depth NTK"
    assert rec["distance"][-1] < rec["distance"][0]


def test_help_says_the_defaults(capsys):
    assert main(["ntk", "--help"]) == 0
    text = capsys.readouterr().out
    assert "Edge of Chaos" in text and "--sigma-w" in text and "--resnet" in text


@pytest.mark.parametrize("argv,msg", [
    (["ntk", "foo"], "error: unknown activation 'foo'"),
    (["ntk", "relu", "--sigma-b", "0.3"], "error: sigma_b must be 0"),
    (["ntk", "relu", "--depth", "0"], "error: --depth must be an integer >= 1"),
    (["ntk", "relu", "--n-inputs", "1"], "error: n_inputs must be an integer >= 2"),
    (["ntk", "relu", "--n-inputs", "500"], "error: n_inputs must be <= 200"),
    (["ntk", "linear"], "error: a linear network's normalised NTK keeps its inputs"),
    (["ntk", "relu", "--resnet", "--sigma-w", "1"], "error: --resnet takes no --sigma-w"),
    (["ntk", "relu", "--sigma-w", "1", "--depth", "3000"], "error: the kernel's diagonal"),
])
def test_errors_one_line_exit_2(argv, msg, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(msg) and "\n" not in err, err


def test_digit_helpers_and_kernel_regression():
    from scalelab.experiments.ntk_setup import chance, digit_split, kernel_regression_accuracy

    s = digit_split(60, 40, 3)
    assert s.x.shape == (100, 784) and s.y_train.size == 60 and s.y_test.size == 40
    np.testing.assert_allclose((s.x**2).sum(1), 784.0, rtol=1e-12)  # on the sphere
    assert len({row.tobytes() for row in s.x}) == 100  # distinct digits
    np.testing.assert_array_equal(digit_split(60, 40, 3).x, s.x)  # seeded
    assert not np.array_equal(digit_split(60, 40, 4).x, s.x)
    # a kernel that knows the labels classifies perfectly; a constant one cannot beat chance
    label_kernel = (s.y[:, None] == s.y[None, :]).astype(float) + 1e-3 * np.eye(100)
    acc, spread = kernel_regression_accuracy(label_kernel, s)
    assert acc == 1.0 and spread == pytest.approx(1 / 1.001)
    acc, spread = kernel_regression_accuracy(np.ones((100, 100)) + 1e-6 * np.eye(100), s)
    assert acc <= chance(s) and spread == 0.0
    x = digit_inputs(12, 0)
    assert x.shape == (12, 784)
