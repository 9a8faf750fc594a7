"""``scalelab lgi`` (the LGI fit of a recorded trajectory) and ``scalelab prune-data --score
lipschitz`` (LiPrune) on the command line."""

import csv
import json
import math

import numpy as np
import pytest

from scalelab.cli import main
from scalelab.diagnostics import lgi_bound, lojasiewicz_fit


def _trajectory(tmp_path, kind="json"):
    """An exact power law ||g|| = 0.5 L^0.7 over 30 epochs (theta = 0.7, c = 0.5)."""
    losses = np.geomspace(1.0, 1e-4, 30)
    grads = 0.5 * losses**0.7
    if kind == "json":
        path = tmp_path / "traj.json"
        path.write_text(json.dumps([{"epoch": i + 1, "loss": float(v), "grad_norm": float(g)}
                                    for i, (v, g) in enumerate(zip(losses, grads, strict=True))]))
    elif kind == "csv":
        path = tmp_path / "traj.csv"
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch", "loss", "grad_norm", "acc"])
            for i, (v, g) in enumerate(zip(losses, grads, strict=True)):
                w.writerow([i + 1, repr(float(v)), repr(float(g)), 0.5])
    else:
        path = tmp_path / "traj_obj.json"
        path.write_text(json.dumps({"losses": losses.tolist(), "grad_norms": grads.tolist()}))
    return path, losses, grads


@pytest.mark.parametrize("kind", ["json", "csv", "object"])
def test_lgi_json_output_matches_the_library(tmp_path, capsys, kind):
    path, losses, grads = _trajectory(tmp_path, kind)
    assert main(["lgi", str(path), "--n", "1000", "--width", "512", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["theta"] == pytest.approx(0.7, abs=1e-9) and doc["c"] == pytest.approx(0.5)
    assert doc["rows"] == 30 and doc["n_points"] == 30 and doc["in_lgi_range"] is True
    assert doc["bound"] == pytest.approx(1 / (math.sqrt(1000) * 0.25 * 0.09) + math.sqrt(0.512))


def test_lgi_l_star_min_and_plain_text(tmp_path, capsys):
    path, losses, grads = _trajectory(tmp_path)
    assert main(["lgi", str(path), "--l-star", "min", "--n", "200"]) == 0
    out = capsys.readouterr().out
    fit = lojasiewicz_fit(losses, grads, l_star="min")
    assert f"theta  {fit.theta:.6g}" in out and "points 29 of 30" in out
    assert f"bound  {lgi_bound(200, fit.c, fit.theta):.6g}" in out
    assert "smallest recorded loss" in out


@pytest.mark.parametrize("argv_tail,match", [
    (["--l-star", "lowest"], "--l-star must be a number or 'min'"),
    (["--width", "512"], "--width needs --n"),
    (["--l-star", "0.5"], "at or below"),
    (["--n", "0"], "n must be an integer >= 1"),
])
def test_lgi_bad_input_is_one_line(tmp_path, capsys, argv_tail, match):
    path, _, _ = _trajectory(tmp_path)
    assert main(["lgi", str(path), *argv_tail]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and match in err and "\n" not in err


def test_lgi_file_errors(tmp_path, capsys):
    assert main(["lgi", str(tmp_path / "nope.json")]) == 2
    assert "not found" in capsys.readouterr().err
    short = tmp_path / "short.csv"
    short.write_text("loss,grad_norm\n1.0,0.5\n0.5,0.3\n")
    assert main(["lgi", str(short)]) == 2
    assert "at least 3 usable points" in capsys.readouterr().err
    bad = tmp_path / "bad.csv"
    bad.write_text("loss,norm\n1.0,0.5\n")
    assert main(["lgi", str(bad)]) == 2
    assert "'loss' and 'grad_norm'" in capsys.readouterr().err
    txt = tmp_path / "t.txt"
    txt.write_text("x")
    assert main(["lgi", str(txt)]) == 2
    assert ".json or .csv" in capsys.readouterr().err


def test_prune_data_score_lipschitz_matches_the_library(tmp_path, capsys):
    from sklearn.datasets import load_iris

    from scalelab.prune.data import score_examples, select_subset

    d = load_iris()
    path = tmp_path / "iris.npz"
    np.savez(path, X=d.data, y=d.target)
    argv = ["prune-data", str(path), "--keep", "0.2", "--score", "lipschitz", "--epochs", "3",
            "--seed", "2", "--json"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    X = d.data.astype(np.float32)
    X = (X - X.mean(0)) / (X.std(0) + 1e-8)
    s = score_examples((X, d.target), "lipschitz", epochs=3, seed=2)["lipschitz"]
    assert doc["score"] == "lipschitz" and doc["indices"] == select_subset(s, 0.2, seed=2).tolist()
    assert main([*argv[:-1], "--method", "importance", "--json"]) == 0
    doc2 = json.loads(capsys.readouterr().out)
    assert doc2["indices"] == select_subset(s, 0.2, "importance", seed=2).tolist()
