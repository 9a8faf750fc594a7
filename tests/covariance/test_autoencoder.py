"""The denoising-autoencoder cleaner: valid outputs, learning, exact save/load, lazy torch."""

import subprocess
import sys

import numpy as np
import pytest

from scalelab.covariance import (
    DenoisingAutoencoderCleaner,
    is_correlation_matrix,
    sample_correlation,
    simulate_factor_model,
)

N, T = 30, 60


@pytest.fixture(scope="module")
def cleaner():
    return DenoisingAutoencoderCleaner(N, hidden=64, latent=16).fit(
        [T, 2 * T], n_matrices=400, epochs=60, seed=0)


def test_import_of_the_package_does_not_import_torch():
    code = ("import sys, scalelab.covariance as c; assert 'torch' not in sys.modules, 'torch';"
            "c.clean_correlation([[1.0, 0.2], [0.2, 1.0]], 10);"
            "assert 'torch' not in sys.modules; c.DenoisingAutoencoderCleaner;"
            "assert 'torch' in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_outputs_are_valid_correlation_matrices(cleaner):
    rng = np.random.default_rng(1)
    for t in (T, 2 * T, 25):  # 25 < N: singular input, unseen q
        _, x = simulate_factor_model(N, t, seed=rng)
        out = cleaner.transform(sample_correlation(x), t)
        assert out.shape == (N, N) and out.dtype == np.float64
        assert is_correlation_matrix(out, atol=1e-10)
        assert np.array_equal(out, out.T)
        assert np.all(np.diag(out) == 1.0)


def test_training_lowers_the_loss_and_beats_the_sample_matrix(cleaner):
    assert cleaner.train_loss[-1] < 0.5 * cleaner.train_loss[0]
    # Fresh draws of the training family (seeded): the untrained network returns the sample
    # spectrum; the trained one must cut the Frobenius error by >= 10% (observed ~35%).
    rng = np.random.default_rng(2)
    err_s, err_a = [], []
    for _ in range(8):
        c, x = simulate_factor_model(N, T, seed=rng)
        s = sample_correlation(x)
        err_s.append(np.linalg.norm(s - c))
        err_a.append(np.linalg.norm(cleaner.transform(s, T) - c))
    assert np.mean(err_a) < 0.9 * np.mean(err_s)


def test_untrained_network_is_the_identity_on_the_spectrum():
    ae = DenoisingAutoencoderCleaner(N)
    _, x = simulate_factor_model(N, T, seed=3)
    lam = np.linalg.eigvalsh(sample_correlation(x))
    np.testing.assert_allclose(ae.clean_eigenvalues(lam, T), lam, rtol=1e-5)


def test_save_load_round_trips_exactly(cleaner, tmp_path):
    cleaner.save(tmp_path / "dae")
    assert (tmp_path / "dae" / "model.safetensors").is_file()
    back = DenoisingAutoencoderCleaner.load(tmp_path / "dae")
    assert back.config == cleaner.config and back.train_loss == cleaner.train_loss
    _, x = simulate_factor_model(N, T, seed=4)
    s = sample_correlation(x)
    assert np.array_equal(back.transform(s, T), cleaner.transform(s, T))
    for k, v in cleaner.model.state_dict().items():
        assert np.array_equal(back.model.state_dict()[k].numpy(), v.numpy()), k


def test_same_seed_same_model():
    a = DenoisingAutoencoderCleaner(10, hidden=16, latent=4).fit(20, n_matrices=30, epochs=3, seed=5)
    b = DenoisingAutoencoderCleaner(10, hidden=16, latent=4).fit(20, n_matrices=30, epochs=3, seed=5)
    assert a.train_loss == b.train_loss


def test_errors(cleaner, tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        DenoisingAutoencoderCleaner.load(tmp_path / "nowhere")
    with pytest.raises(RuntimeError, match="not fitted"):
        DenoisingAutoencoderCleaner(N).transform(np.eye(N), T)
    with pytest.raises(ValueError, match=r"C must be 30 x 30 \(n_assets\), got \(5, 5\)"):
        cleaner.transform(np.eye(5), T)
    with pytest.raises(ValueError, match="C must be symmetric"):
        cleaner.transform(np.eye(N) + np.triu(np.full((N, N), 0.1), 1), T)
    with pytest.raises(ValueError, match="T must be an integer >= 2"):
        cleaner.transform(np.eye(N), 1)
    with pytest.raises(ValueError, match="target must be one of"):
        DenoisingAutoencoderCleaner(N, target="eigen")
    with pytest.raises(ValueError, match="n_assets must be an integer >= 2"):
        DenoisingAutoencoderCleaner(1)
