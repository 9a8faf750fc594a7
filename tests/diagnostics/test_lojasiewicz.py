"""lojasiewicz_fit, lgi_bound and LGIRecorder against independent oracles.

Oracles: exact power laws (closed-form theta and c); gradient flows of the official code's
toy losses integrated with scipy's solve_ivp, whose Lojasiewicz exponent is derived
analytically below; a mean-value bracket that any least-squares slope of points on a curve
must satisfy; hand-written full-batch autograd gradients for the recorder.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.integrate import solve_ivp

from scalelab.diagnostics import (
    LGIRecorder,
    full_batch_loss_and_grad_norm,
    lgi_bound,
    lojasiewicz_fit,
    read_trajectory,
)

# ---------------------------------------------------------------------------------------------
# Exact power laws
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("p,a", [(2.0, 0.5), (4.0, 1.0), (1.5, 2.0)])
def test_power_law_loss_under_gradient_flow_gives_theta_and_c_exactly(p, a):
    """f(w) = a |w|^p: |f'| = a p |w|^(p-1) and |w| = (f/a)^(1/p), so
    |f'| = p a^(1/p) f^(1 - 1/p) exactly: theta = 1 - 1/p, c = p a^(1/p), at every point of
    any path. The path is the gradient flow dw/dt = -a p w^(p-1) from w = 1, integrated by
    solve_ivp in s = log w (ds/dt = -a p e^{(p-2)s}, smooth), up to 0.9 of the extinction
    time 1/(a p (2-p)) when p < 2."""
    t_end = 0.9 / (a * p * (2 - p)) if p < 2 else 3.0
    sol = solve_ivp(lambda t, s: -a * p * np.exp((p - 2) * s), (0, t_end), [0.0],
                    t_eval=np.linspace(0, t_end, 200), rtol=1e-11, atol=1e-12, method="DOP853")
    assert sol.success
    w = np.exp(sol.y[0])
    f, g = a * w**p, a * p * w ** (p - 1)
    fit = lojasiewicz_fit(f, g)
    assert fit.theta == pytest.approx(1 - 1 / p, abs=1e-9)
    assert fit.c == pytest.approx(p * a ** (1 / p), rel=1e-8)
    assert np.allclose(fit.residuals, 0, atol=1e-8) and fit.r2 == pytest.approx(1.0)
    assert fit.n_points == 200 and fit.in_lgi_range == (0.5 <= 1 - 1 / p < 1)


def test_nonzero_l_star_and_noisy_power_law_envelope():
    """L = L* + u, ||g|| = c0 u^theta0 e^{eps} with eps >= 0: the envelope is the point with
    the smallest eps; c equals min_i g_i / u_i^theta (the definition of the lower envelope)
    and lies below every point, theta is within the noise of theta0."""
    rng = np.random.default_rng(0)
    u = np.geomspace(1.0, 1e-5, 300)
    eps = rng.exponential(0.05, size=u.size)
    g = 0.8 * u**0.7 * np.exp(eps)
    fit = lojasiewicz_fit(2.5 + u, g, l_star=2.5)
    assert fit.l_star == 2.5
    assert fit.theta == pytest.approx(0.7, abs=0.01)
    assert fit.c == pytest.approx(np.min(g / u**fit.theta), rel=1e-10)
    assert np.all(g >= fit.c * u**fit.theta * (1 - 1e-12))
    assert fit.c == pytest.approx(0.8, rel=0.05)


def test_l_star_min_drops_the_minimum_and_its_ties():
    """The official code deletes the argmin when L* = min(L) (log 0); ties go too."""
    u = np.geomspace(1.0, 1e-3, 20)
    losses = np.concatenate([0.1 + u, [0.1, 0.1]])
    grads = np.concatenate([u**0.6, [1e-4, 2e-4]])
    fit = lojasiewicz_fit(losses, grads, l_star="min")
    assert fit.l_star == pytest.approx(0.1)
    assert fit.indices.tolist() == list(range(20))
    assert fit.theta == pytest.approx(0.6, abs=1e-9)


# ---------------------------------------------------------------------------------------------
# The official code's toy losses under gradient flow
# ---------------------------------------------------------------------------------------------


def _local_theta_nonlgi(w):
    """f(w) = |w|^{4/3}/4 + w^2/2 (the official get_lgi_counter.py). With u = |w|^{2/3}:
    |f'| = (|w|^{1/3}/3)(1 + 3u) and f = (|w|^{4/3}/4)(1 + 2u), so along any path the local
    log-log slope d log|f'| / d log f is
    [1/3 + 2u/(1+3u)] / [4/3 + (4u/3)/(1+2u)], which tends to 1/4 as w -> 0; and
    |f'| / f^{1/4} -> (1/3) 4^{1/4}. Exponent 1/4 < 1/2: outside the LGI range."""
    u = np.abs(w) ** (2 / 3)
    return (1 / 3 + 2 * u / (1 + 3 * u)) / (4 / 3 + (4 * u / 3) / (1 + 2 * u))


def _flow_nonlgi(w0, t_end, points):
    """Gradient flow of f(w) = |w|^{4/3}/4 + w^2/2 in s = log w (w > 0 stays positive):
    ds/dt = -f'(w)/w = -(w^{-2/3}/3 + 1), smooth where w^{1/3} is not; the flow reaches 0
    in finite time, so t_end stays below it."""
    sol = solve_ivp(lambda t, s: -(np.exp(-2 * s / 3) / 3 + 1), (0, t_end), [math.log(w0)],
                    t_eval=np.linspace(0, t_end, points), rtol=1e-12, atol=1e-12, method="DOP853")
    assert sol.success
    w = np.exp(sol.y[0])
    return w, w ** (4 / 3) / 4 + w**2 / 2, w ** (1 / 3) / 3 + w


def test_non_lgi_toy_tail_recovers_theta_quarter_and_its_c():
    """Near w = 0 (u = |w|^{2/3} <= 2.2e-3 from w0 = 1e-4) the local slope is within 0.002 of
    1/4 (formula above), so the fitted theta is; c -> (1/3) 4^{1/4} up to the factors
    (1+3u)/(1+2u)^{1/4} <= 1.01 and f^{1/4-theta} (|log f| <= 30, |theta - 1/4| <= 0.002:
    within e^{0.06}), so 6%."""
    w0 = 1e-4
    t_star = 4.5 * w0 ** (2 / 3)  # extinction time of the dominant term: w^{2/3} falls by 2/9
    w, f, g = _flow_nonlgi(w0, 0.95 * t_star, 300)
    lo, hi = _local_theta_nonlgi(w).min(), _local_theta_nonlgi(w).max()
    fit = lojasiewicz_fit(f, g)
    assert lo - 1e-9 <= fit.theta <= hi + 1e-9  # least-squares slope of a curve: mean-value
    assert abs(fit.theta - 0.25) < 0.002
    assert fit.c == pytest.approx(4**0.25 / 3, rel=0.06)
    assert not fit.in_lgi_range


def test_non_lgi_toy_from_the_official_start_is_bracketed_by_the_local_slopes():
    """From w0 = 1 (the official start) the path mixes the w^2/2 regime (local slope ~0.47 at
    w = 1) with the w^{4/3}/4 one (1/4 near 0): a least-squares slope of points on a curve
    is a weighted mean of chord slopes, each a local slope by the mean-value theorem, so it
    lies between the extremes of the local slope over the path."""
    w, f, g = _flow_nonlgi(1.0, 1.0, 101)  # official: 1,000 steps of lr 1e-2 -> t = 10 > T*
    loc = _local_theta_nonlgi(w)
    fit = lojasiewicz_fit(f, g)
    assert loc.min() <= fit.theta <= loc.max()
    assert 0.25 < fit.theta < 0.5


def test_non_analytic_toy_exponent_tends_to_one():
    """f(w) = exp(-1/|w|) (the official "Non_analytic" toy): |f'| = f / w^2 = f (log f)^2,
    so the local slope is d log|f'| / d log f = 1 + 2 / log f = 1 - 2|w|: it tends to 1 as
    w -> 0 and no theta < 1 holds uniformly near the minimum (the function is not analytic).
    On a stretch of the gradient flow dw/dt = -exp(-1/w)/w^2 near w = 0.05 the fitted theta
    lies in [1 - 2 w_max, 1 - 2 w_min]; c is the lower envelope: the minimum over the
    stretch of the continuous ratio f^{1-theta} (log f)^2, within the sampling's resolution."""
    sol = solve_ivp(lambda t, w: -np.exp(-1 / w) / w**2, (0, 4e4), [0.05],
                    t_eval=np.linspace(0, 4e4, 400), rtol=1e-12, atol=1e-15, method="DOP853")
    w = sol.y[0]
    assert w[-1] < 0.049  # the flow moved
    f = np.exp(-1 / w)
    g = f / w**2
    fit = lojasiewicz_fit(f, g)
    assert 1 - 2 * w.max() - 1e-9 <= fit.theta <= 1 - 2 * w.min() + 1e-9
    assert 2 * (w.max() - w.min()) < 0.03  # the bracket is tight: theta in [0.9, 0.93]
    ws = np.linspace(w.min(), w.max(), 20001)
    fs = np.exp(-1 / ws)
    continuous_min = np.min(fs ** (1 - fit.theta) * np.log(fs) ** 2)
    assert fit.c == pytest.approx(continuous_min, rel=1e-3)


# ---------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("losses,grads,kw,match", [
    ([1.0, 0.5], [1.0, 0.5], {}, "at least 3 usable points"),
    ([1.0, 0.5, 0.5, 0.5], [1.0, 0.5, 0.4, 0.3], {"l_star": "min"}, "at least 3 usable"),
    ([1.0, np.nan, 0.2], [1.0, 0.5, 0.3], {}, "losses must be finite"),
    ([1.0, 0.5, 0.2], [1.0, np.inf, 0.3], {}, "grad_norms must be finite"),
    ([1.0, 0.5, 0.2], [1.0, 0.0, 0.3], {}, "grad_norms must be > 0"),
    ([1.0, 0.5, 0.2], [1.0, 0.5, 0.3], {"l_star": 0.2}, "at or below"),
    ([1.0, 0.5, -0.1], [1.0, 0.5, 0.3], {}, "at or below"),
    ([1.0, 0.5, 0.2], [1.0, 0.5], {}, "same length"),
    ([0.5, 0.5, 0.5], [1.0, 0.5, 0.3], {}, "all equal"),
    ([1.0, 0.5, 0.2], [1.0, 0.5, 0.3], {"l_star": "max"}, "l_star must be one of"),
    ([1.0, 0.5, 0.2], [1.0, 0.5, 0.3], {"l_star": math.inf}, "l_star must be a finite"),
    ([[1.0, 0.5, 0.2]], [1.0, 0.5, 0.3], {}, "must be 1-D"),
])
def test_fit_refuses_bad_input_with_one_line(losses, grads, kw, match):
    with pytest.raises(ValueError, match=match) as e:
        lojasiewicz_fit(losses, grads, **kw)
    assert "\n" not in str(e.value)


def test_lgi_bound_formula_and_errors():
    """Hand value: n = 1000, c = 0.5, theta = 0.5: 1/(sqrt(1000) 0.25 0.25) = 16/sqrt(1000);
    with m = 512 add sqrt(0.512) (the official plot_vary_size.py expression)."""
    assert lgi_bound(1000, 0.5, 0.5) == pytest.approx(16 / math.sqrt(1000), rel=1e-14)
    assert lgi_bound(1000, 0.5, 0.5, width=512) == pytest.approx(
        16 / math.sqrt(1000) + math.sqrt(0.512), rel=1e-14)
    assert lgi_bound(4000, 0.5, 0.5) == pytest.approx(lgi_bound(1000, 0.5, 0.5) / 2)
    for kw, match in [(dict(n=0, c=1, theta=0.5), "n must be"), (dict(n=10, c=0, theta=0.5), "c must"),
                      (dict(n=10, c=1, theta=1.0), "theta must"),
                      (dict(n=10, c=1, theta=math.nan), "theta must"),
                      (dict(n=10, c=1, theta=0.5, width=0), "width must")]:
        with pytest.raises(ValueError, match=match):
            lgi_bound(**kw)
    fit = lojasiewicz_fit([1.0, 0.1, 0.01], [1.0, 0.1**0.5, 0.01**0.5])
    assert fit.bound(100, width=4) == pytest.approx(lgi_bound(100, fit.c, fit.theta, width=4))


# ---------------------------------------------------------------------------------------------
# The recorder
# ---------------------------------------------------------------------------------------------


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.Tanh(), torch.nn.Dropout(0.5),
                               torch.nn.Linear(16, 3)).double()


def _data(n=37):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 6, generator=g, dtype=torch.float64), torch.randint(0, 3, (n,), generator=g)


def _hand_full_batch(model, x, y):
    """The full-batch loss and gradient norm, written out: one forward in eval mode (no
    dropout), mean cross-entropy, one backward, sqrt of the summed squared gradients."""
    ref = _net()
    ref.load_state_dict(model.state_dict())
    ref.eval()
    loss = F.cross_entropy(ref(x), y)
    loss.backward()
    return loss.item(), math.sqrt(sum(float((p.grad**2).sum()) for p in ref.parameters()))


@pytest.mark.parametrize("batch_size", [None, 10])
def test_full_batch_grad_norm_equals_a_hand_written_autograd_computation(batch_size):
    model = _net()
    model.train()
    x, y = _data()
    loss, norm = full_batch_loss_and_grad_norm(model, (x, y), batch_size=batch_size)
    ref_loss, ref_norm = _hand_full_batch(model, x, y)
    assert loss == pytest.approx(ref_loss, rel=1e-12)
    assert norm == pytest.approx(ref_norm, rel=1e-12)
    assert model.training and model[2].training  # modes restored
    assert all(p.grad is None for p in model.parameters())  # .grad untouched


def test_recorder_full_batch_inside_train_classifier_matches_recomputation():
    """As train_classifier's epoch callback: one point per epoch, the last one equal to the
    hand-written full-batch computation at the final weights."""
    from scalelab.data import ArrayDataset
    from scalelab.train import train_classifier

    x, y = _data(40)
    data = ArrayDataset(x, y, x[:5], y[:5], 3, "toy")
    model = _net()
    rec = LGIRecorder(model, data)
    curve = train_classifier(model, data, steps=12, lr=0.1, batch_size=10, epoch_callback=rec)
    assert rec.epochs == [1, 2, 3] and len(curve.train_loss) == 12 and not curve.stopped_early
    ref_loss, ref_norm = _hand_full_batch(model, x, y)
    assert rec.losses[-1] == pytest.approx(ref_loss, rel=1e-12)
    assert rec.grad_norms[-1] == pytest.approx(ref_norm, rel=1e-12)


def test_recorder_stop_below_stops_train_classifier():
    from scalelab.data import ArrayDataset
    from scalelab.train import train_classifier

    x, y = _data(40)
    data = ArrayDataset(x, y, x[:5], y[:5], 3, "toy")
    rec = LGIRecorder(_net(), data, stop_below=100.0)
    curve = train_classifier(rec.model, data, steps=50, lr=0.1, batch_size=10, epoch_callback=rec)
    assert curve.stopped_early and len(curve.train_loss) == 4 and rec.epochs == [1]


def test_recorder_last_minibatch_mode_reads_the_loops_gradient():
    """The official quantity: the norm of the last minibatch's gradient the loop left in
    .grad, paired with the loss passed in. With one batch per epoch it is the full-batch
    pair at the weights before the step."""
    x, y = _data()
    model = _net()
    model.eval()
    rec = LGIRecorder(model, mode="last_minibatch")
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(3):
        ref_loss, ref_norm = _hand_full_batch(model, x, y)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        got = rec.record(loss.item())
        assert got == (pytest.approx(ref_loss, rel=1e-12), pytest.approx(ref_norm, rel=1e-12))
        opt.step()
    with pytest.raises(ValueError, match="needs record\\(loss"):
        rec.record()
    fresh = LGIRecorder(_net(), mode="last_minibatch")
    with pytest.raises(ValueError, match="after a backward pass"):
        fresh.record(1.0)


def test_recorder_errors_and_save_roundtrip(tmp_path):
    x, y = _data()
    with pytest.raises(ValueError, match="needs data="):
        LGIRecorder(_net())
    with pytest.raises(ValueError, match="mode must be one of"):
        LGIRecorder(_net(), (x, y), mode="epoch")
    rec = LGIRecorder(_net(), (x, y))
    with pytest.raises(ValueError, match="last_minibatch"):
        rec.record(0.5)
    for _ in range(4):
        rec.record()
    for suffix in (".json", ".csv"):
        path = rec.save(tmp_path / f"traj{suffix}")
        losses, grads = read_trajectory(path)
        assert losses.tolist() == rec.losses and grads.tolist() == rec.grad_norms
    (tmp_path / "bad.json").write_text('[{"loss": 1}]')
    with pytest.raises(ValueError, match="'loss' and 'grad_norm'"):
        read_trajectory(tmp_path / "bad.json")
    (tmp_path / "official.json").write_text('{"train_loss": [1, 0.5, 0.2], "gradient_norm": [1, 0.7, 0.4]}')
    assert read_trajectory(tmp_path / "official.json")[1].tolist() == [1, 0.7, 0.4]
    with pytest.raises(FileNotFoundError):
        read_trajectory(tmp_path / "missing.csv")
