"""Data pruning (arXiv 2302.06960): subset selection, calibration, and the per-example scores."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from scalelab.prune.data import (
    forgetting_counts,
    grand_scores,
    keep_count,
    score_examples,
    select_subset,
)

# ------------------------------------------------------------------------------ select_subset


def _expected(n, keep):
    return keep if isinstance(keep, int) else math.floor(keep * n + 0.5)


# (n, keep) pairs that keep at least one and at most n examples (the others are errors).
SIZES = [(n, k) for n in (1, 7, 100) for k in (1, 0.1, 0.25, 0.5, 1.0, 3)
         if 1 <= _expected(n, k) <= n]


@pytest.mark.parametrize("n,keep", SIZES)
@pytest.mark.parametrize("method,calibration", [("top", None), ("bottom", None),
                                                ("random", None),
                                                ("top", "random-exploration"),
                                                ("bottom", "random-exploration")])
def test_exact_kept_count(n, keep, method, calibration):
    expected = _expected(n, keep)
    scores = np.random.default_rng(n).normal(size=n)
    idx = select_subset(scores, keep, method, calibration, alpha=0.3, seed=1)
    assert len(idx) == expected == keep_count(n, keep)
    assert len(set(idx.tolist())) == len(idx)  # no duplicates
    assert idx.min() >= 0 and idx.max() < n and np.all(np.diff(idx) > 0)  # sorted, in range


def test_top_and_bottom_match_a_sorting_oracle():
    scores = np.random.default_rng(0).permutation(50).astype(float)  # distinct scores
    k = 12
    top = sorted(range(50), key=lambda i: -scores[i])[:k]
    bottom = sorted(range(50), key=lambda i: scores[i])[:k]
    assert select_subset(scores, k, "top").tolist() == sorted(top)
    assert select_subset(scores, k, "bottom").tolist() == sorted(bottom)


def test_same_seed_same_subset_and_seeds_differ():
    scores = np.random.default_rng(3).normal(size=200)
    for method, cal in [("random", None), ("top", "random-exploration")]:
        a = select_subset(scores, 0.3, method, cal, alpha=0.5, seed=7)
        b = select_subset(scores, 0.3, method, cal, alpha=0.5, seed=7)
        c = select_subset(scores, 0.3, method, cal, alpha=0.5, seed=8)
        assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_alpha_zero_is_pure_score_selection():
    scores = np.random.default_rng(4).normal(size=300)
    for seed in range(3):
        for method in ("top", "bottom"):
            assert np.array_equal(
                select_subset(scores, 0.2, method, "random-exploration", alpha=0.0, seed=seed),
                select_subset(scores, 0.2, method, None, seed=seed))


def test_alpha_one_is_random_pruning_exactly():
    scores = np.random.default_rng(5).normal(size=300)
    for seed in range(5):
        assert np.array_equal(
            select_subset(scores, 0.2, "top", "random-exploration", alpha=1.0, seed=seed),
            select_subset(scores, 0.2, "random", seed=seed))


def test_alpha_one_inclusion_is_uniform_statistically():
    """Chi-square on inclusion counts over 600 seeds: uniform for alpha=1, far from it for top
    with alpha=0.5 (the wrong distribution is rejected)."""
    n, k, seeds = 40, 10, 600
    scores = np.arange(n, dtype=float)

    def counts(alpha):
        c = np.zeros(n)
        for s in range(seeds):
            c[select_subset(scores, k, "top", "random-exploration", alpha=alpha, seed=s)] += 1
        return c

    expected = np.full(n, seeds * k / n)
    p_uniform = stats.chisquare(counts(1.0), expected).pvalue
    p_half = stats.chisquare(counts(0.5), expected).pvalue
    assert p_uniform > 1e-3
    assert p_half < 1e-12


def test_calibrated_subset_keeps_the_best_scored_part():
    scores = np.random.default_rng(6).normal(size=100)
    k, alpha = 20, 0.25
    n_random = math.floor(alpha * k + 0.5)
    best = set(np.argsort(-scores)[: k - n_random].tolist())
    for seed in range(5):
        idx = set(select_subset(scores, k, "top", "random-exploration", alpha=alpha,
                                seed=seed).tolist())
        assert best <= idx and len(idx) == k


@pytest.mark.parametrize("kwargs,match", [
    (dict(keep=0), "keep"), (dict(keep=0.0), "keep"), (dict(keep=1.5), "keep"),
    (dict(keep=11), r"keep must be a count in \[1, 10\]"), (dict(keep=True), "keep"),
    (dict(keep=0.01), "keeps no example"), (dict(keep=0.5, method="best"), "method"),
    (dict(keep=0.5, calibration="exact"), "calibration"),
    (dict(keep=0.5, method="random", calibration="random-exploration"), "calibration"),
    (dict(keep=0.5, calibration="random-exploration", alpha=1.2), "alpha"),
])
def test_bad_arguments_raise_value_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        select_subset(np.arange(10.0), **kwargs)


def test_bad_scores_raise():
    with pytest.raises(ValueError, match="finite"):
        select_subset([1.0, float("nan"), 2.0], 1)
    with pytest.raises(ValueError, match="non-empty"):
        select_subset([], 1)


# ------------------------------------------------------------------------------ scores


def _tiny_linear():
    """logits = W x + b with hand-picked W, b (2 inputs, 3 classes), float64."""
    lin = torch.nn.Linear(2, 3).double()
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, -1.0], [0.5, 0.5]]))
        lin.bias.copy_(torch.tensor([0.0, 0.5, -1.0]))
    return lin


def _hand_scores(x, y):
    """Softmax, EL2N, GraNd, loss and margin of the tiny linear model, in plain Python."""
    W = [[1.0, 0.0], [0.0, -1.0], [0.5, 0.5]]
    b = [0.0, 0.5, -1.0]
    z = [sum(W[c][j] * x[j] for j in range(2)) + b[c] for c in range(3)]
    e = [math.exp(v) for v in z]
    p = [v / sum(e) for v in e]
    r = [p[c] - (1.0 if c == y else 0.0) for c in range(3)]  # dCE/dz
    el2n = math.sqrt(sum(v * v for v in r))
    # dCE/dW[c, j] = r_c x_j and dCE/db_c = r_c  =>  ||grad|| = ||r|| sqrt(1 + ||x||^2)
    grand = math.sqrt(sum((r[c] * x[j]) ** 2 for c in range(3) for j in range(2))
                      + sum(v * v for v in r))
    loss = -math.log(p[y])
    margin = z[y] - max(z[c] for c in range(3) if c != y)
    return el2n, grand, loss, margin


def test_el2n_grand_loss_margin_match_hand_computation():
    X = torch.tensor([[1.0, 2.0], [-0.5, 0.3], [2.0, -1.0], [0.0, 0.0]], dtype=torch.float64)
    y = torch.tensor([0, 2, 1, 1])
    got = score_examples((X, y), ("el2n", "grand", "loss", "margin"), model=_tiny_linear(),
                         epochs=0)
    for i in range(4):
        el2n, grand, loss, margin = _hand_scores(X[i].tolist(), int(y[i]))
        assert got["el2n"][i] == pytest.approx(el2n, rel=1e-12)
        assert got["grand"][i] == pytest.approx(grand, rel=1e-12)
        assert got["loss"][i] == pytest.approx(loss, rel=1e-12)
        assert got["margin"][i] == pytest.approx(margin, rel=1e-12)


def test_grand_fallback_loop_equals_vmap(monkeypatch):
    import torch.func

    X = torch.randn(6, 2, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    fast = grand_scores(_tiny_linear(), X, y)

    def broken_vmap(*a, **k):
        raise RuntimeError("vmap unsupported here")

    monkeypatch.setattr(torch.func, "vmap", broken_vmap)
    slow = grand_scores(_tiny_linear(), X, y)
    np.testing.assert_allclose(slow, fast, rtol=1e-12)


def test_forgetting_counts_on_a_scripted_history():
    # rows: presentations; columns: examples
    history = np.array([[1, 0, 1, 0, 1],
                        [0, 0, 1, 1, 1],
                        [1, 0, 0, 1, 1],
                        [0, 0, 1, 1, 1]], dtype=bool)
    # ex0: 1->0 twice; ex1: never learned (= 4 presentations); ex2: once; ex3, ex4: never
    assert forgetting_counts(history).tolist() == [2.0, 4.0, 1.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="presentations"):
        forgetting_counts(np.zeros((0, 3), dtype=bool))


def _digits(n=400):
    from scalelab.data import load_digits

    d = load_digits("sklearn-digits", n_train=n, seed=0)
    return d.x_train, d.y_train


def test_every_input_form_gives_the_same_scores():
    from torch.utils.data import TensorDataset

    from scalelab.data import load_digits

    d = load_digits("sklearn-digits", n_train=150, seed=0)
    kw = dict(scores=("el2n", "forgetting"), epochs=2, seed=3, hidden=32)
    a = score_examples((d.x_train, d.y_train), **kw)
    b = score_examples(d, **kw)
    c = score_examples(TensorDataset(d.x_train, d.y_train), **kw)
    e = score_examples((d.x_train.numpy(), d.y_train.numpy()), **kw)
    for other in (b, c, e):
        for k in kw["scores"]:
            np.testing.assert_array_equal(a[k], other[k])
    assert set(np.unique(a["forgetting"])) <= {0.0, 1.0, 2.0}


def test_el2n_finds_mislabelled_examples():
    """Flip 10% of the labels: their EL2N after a short run is far above the clean ones'."""
    x, y = _digits(400)
    y = y.clone()
    flipped = np.random.default_rng(0).choice(len(y), 40, replace=False)
    y[flipped] = (y[flipped] + 1 + torch.randint(0, 9, (40,))) % 10
    s = score_examples((x, y), ("el2n", "forgetting"), epochs=6, lr=1e-2, runs=2, hidden=64,
                       seed=0)
    clean = np.setdiff1d(np.arange(len(y)), flipped)
    assert s["el2n"][flipped].mean() > s["el2n"][clean].mean() + 0.5
    auc = stats.mannwhitneyu(s["el2n"][flipped], s["el2n"][clean]).statistic / (40 * len(clean))
    assert auc > 0.9
    assert s["forgetting"][flipped].mean() > s["forgetting"][clean].mean() + 2


def test_user_module_is_not_modified_and_runs_need_a_factory():
    x, y = _digits(60)
    model = torch.nn.Sequential(torch.nn.Linear(64, 10))
    before = [p.detach().clone() for p in model.parameters()]
    score_examples((x, y), "loss", model=model, epochs=1)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    with pytest.raises(ValueError, match="factory"):
        score_examples((x, y), "loss", model=model, runs=2)
    out = score_examples((x, y), "loss", model=lambda: torch.nn.Linear(64, 10), runs=2, epochs=1)
    assert out["loss"].shape == (60,)


def test_float64_arrays_and_prune_dataset():
    from scalelab.prune.data import prune_dataset

    x, y = _digits(80)
    x64 = x.double().numpy()
    s = score_examples((x64, y.numpy()), "el2n", epochs=2, hidden=16, seed=1)["el2n"]
    assert s.shape == (80,) and np.all(np.isfinite(s))
    idx = prune_dataset((x64, y.numpy()), 0.25, "el2n", "top", "random-exploration", alpha=0.5,
                        seed=1, epochs=2, hidden=16)
    assert np.array_equal(idx, select_subset(s, 0.25, "top", "random-exploration", alpha=0.5,
                                             seed=1))
    assert np.array_equal(prune_dataset((x64, y.numpy()), 10, method="random", seed=2),
                          select_subset(np.zeros(80), 10, "random", seed=2))


@pytest.mark.parametrize("kwargs,match", [
    (dict(scores="entropy"), "score"), (dict(scores="forgetting", epochs=1), "epochs >= 2"),
    (dict(epochs=-1), "epochs"), (dict(lr=0.0), "lr"), (dict(scores=()), "at least one"),
])
def test_score_examples_bad_arguments(kwargs, match):
    x, y = _digits(20)
    with pytest.raises(ValueError, match=match):
        score_examples((x, y), **kwargs)


def test_bad_data_raises():
    with pytest.raises(ValueError, match="one label per row"):
        score_examples((np.zeros((5, 2)), np.zeros(4, dtype=int)))
    with pytest.raises(ValueError, match="integer class labels"):
        score_examples((np.zeros((3, 2)), np.array([0.5, 1.0, 0.0])))
    with pytest.raises(ValueError, match="data must be"):
        score_examples("not data")


def test_reproduction_verdict_is_computed_from_the_numbers():
    from scalelab.experiments.data_pruning import judge

    def records(el2n, cal):
        rows = []
        for keep, r, e, c in zip((0.05, 0.1, 0.3), (0.7, 0.75, 0.85), el2n, cal, strict=True):
            rows += [{"keep": keep, "strategy": "random", "accuracy_mean": r},
                     {"keep": keep, "strategy": "el2n", "accuracy_mean": e},
                     {"keep": keep, "strategy": "calibrated", "accuracy_mean": c}]
        return rows

    assert judge(records((0.3, 0.5, 0.87), (0.6, 0.7, 0.86)))["claim_holds"]
    assert not judge(records((0.72, 0.8, 0.9), (0.7, 0.75, 0.85)))["claim_holds"]  # EL2N wins
    assert not judge(records((0.3, 0.5, 0.87), (0.35, 0.5, 0.86)))["claim_holds"]  # no recovery
