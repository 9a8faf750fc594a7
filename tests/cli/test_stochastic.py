"""``scalelab prune --method stochastic`` and ``scalelab certify``: JSON alone on stdout,
exact sparsity, certificates that bound what they certify, one-line errors."""

import json

import pytest

from scalelab.bounds import maurer_bound, sample_convergence_bound
from scalelab.cli import main

PRUNE = ["prune", "--model", "mlp", "--depth", "2", "--width", "32", "--act", "relu",
         "--dataset", "sklearn-digits", "--method", "stochastic", "--sparsity", "0.9",
         "--pretrain-steps", "60", "--mask-steps", "20"]
CERTIFY = ["certify", "--dataset", "sklearn-digits", "--hidden", "32", "--dense-steps", "60",
           "--prior-steps", "20", "--bound-steps", "20", "--passes", "2"]


def test_prune_stochastic_json(capsys):
    assert main(PRUNE + ["--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    total = 64 * 32 + 32 * 32 + 32 * 10
    assert doc["method"] == "stochastic" and doc["total"] == total
    assert doc["kept"] == round(0.1 * total) and doc["rescaled"] is False
    for key in ("dense_accuracy", "start_accuracy", "stochastic_accuracy", "threshold_accuracy"):
        assert 0.0 <= doc[key] <= 1.0
    assert doc["dense_accuracy"] > 0.5 and doc["max_density_error"] < 1e-3
    assert doc["start"] == "magnitude" and doc["mask_steps"] == 20


def test_prune_stochastic_table_and_errors(capsys):
    assert main(PRUNE + ["--start", "random", "--estimator", "lrt"]) == 0
    out = capsys.readouterr().out
    assert "method stochastic, scope global" in out and "start mask (random)" in out
    for argv, msg in [
        (PRUNE + ["--start", "stochastic"], "error: --start must be a deterministic method"),
        (PRUNE + ["--estimator", "reinforce"], "error: estimator must be one of"),
        (["prune", "--dataset", "sklearn-digits", "--depth", "2", "--method", "snip",
          "--pretrain-steps", "5"], "error: --pretrain-steps applies to --method stochastic"),
    ]:
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith(msg), err


@pytest.mark.parametrize("extra", [[], ["--prior", "data-independent", "--weight-noise", "0.01"]])
def test_certify_json(capsys, extra):
    assert main(CERTIFY + extra + ["--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["n_networks"] == doc["n_samples"] * doc["n"] // doc["examples_per_network"]
    assert doc["n"] % doc["examples_per_network"] == 0
    up = sample_convergence_bound(doc["empirical_error"], doc["n_networks"], 0.01)
    assert doc["empirical_error_bound"] == pytest.approx(up)
    assert doc["certified_error"] == pytest.approx(maurer_bound(up, doc["kl"], doc["n"], 0.025))
    assert doc["certified_error"] >= doc["empirical_error"] and 0 <= doc["test_error"] <= 1
    assert doc["prior"] == (extra[1] if extra else "data-dependent")
    if extra:
        assert doc["n"] == 1430  # the whole training set (1437 cut to a multiple of 10)


@pytest.mark.parametrize("extra,msg", [
    (["--delta", "1.5"], "error: --delta"),
    (["--hidden", "a,b"], "error: --hidden must be comma-separated widths"),
    (["--sparsity", "1"], "error: --sparsity must be in (0, 1)"),
    (["--form", "seeger"], "error: --form must be one of"),
    (["--passes", "0"], "error: --passes must be an integer >= 1"),
])
def test_certify_bad_options(capsys, extra, msg):
    assert main(CERTIFY + extra) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(msg), err


def test_help_lists_the_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "certify" in out and "prune" in out
    assert main(["certify", "--help"]) == 0
    assert "Maurer" in capsys.readouterr().out
