"""A denoising autoencoder that cleans a sample correlation matrix, trained on simulations.

Following the Bloomberg technical report "Cleaning the Correlation Matrix with a Denoising
AutoEncoder" (2017), the network works on the spectrum: it reads the sorted sample
eigenvalues (and q = N/T), encodes them through a bottleneck, and decodes cleaned
eigenvalues, which are put back on the sample eigenvectors. It learns from pairs
(noisy sample correlation, true correlation) drawn from random factor models.

Interpretation (ours, stated in the docs): the default training target is the oracle
``u_k^T C u_k`` (the best eigenvalues in the sample eigenbasis, so the loss is the
Frobenius error of the reconstructed matrix); ``target="population"`` uses the sorted
true eigenvalues as in the report. The cleaned eigenvalues are positive (exp of a
residual in log space) and rescaled to sum to N; the reconstruction is then projected to
a correlation matrix (:func:`~scalelab.covariance.project_to_correlation`), so outputs are
always symmetric, unit-diagonal and PSD.

This module imports torch at load; :mod:`scalelab.covariance` exposes it lazily.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .._progress import track
from ..errors import check_choice, check_int, check_positive
from .matrix import check_correlation_input, project_to_correlation
from .simulate import simulate_factor_model

TARGETS = ("oracle", "population")
_EIG_FLOOR = 1e-4  # log-features floor: zero eigenvalues appear when T <= N
_CONFIG_FILE = "config.json"
_WEIGHTS_FILE = "model.safetensors"


@dataclass(frozen=True)
class AutoencoderConfig:
    """Shape of the spectral denoising autoencoder (N eigenvalues + q -> bottleneck -> N)."""

    n_assets: int
    hidden: int = 128
    latent: int = 32
    target: str = "oracle"

    def __post_init__(self) -> None:
        check_int("n_assets", self.n_assets, minimum=2)
        check_int("hidden", self.hidden)
        check_int("latent", self.latent)
        check_choice("target", self.target, TARGETS)


class SpectralDAE(nn.Module):
    """Encoder-bottleneck-decoder on log sample eigenvalues; output = cleaned eigenvalues.

    ``log xi = log lambda + decoder(encoder(standardised [log lambda, q]))``; the last layer
    starts at zero so the untrained network returns the sample spectrum. The output is
    rescaled to sum to N (the trace of a correlation matrix).
    """

    def __init__(self, n_assets: int, hidden: int, latent: int) -> None:
        super().__init__()
        self.n_assets = n_assets
        self.encoder = nn.Sequential(nn.Linear(n_assets + 1, hidden), nn.GELU(),
                                     nn.Linear(hidden, latent), nn.GELU())
        self.decoder = nn.Sequential(nn.Linear(latent, hidden), nn.GELU(),
                                     nn.Linear(hidden, n_assets))
        nn.init.zeros_(self.decoder[-1].weight)
        nn.init.zeros_(self.decoder[-1].bias)
        self.register_buffer("in_mean", torch.zeros(n_assets + 1))
        self.register_buffer("in_std", torch.ones(n_assets + 1))

    def forward(self, log_eigenvalues: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        x = torch.cat([log_eigenvalues, q[:, None]], dim=1)  # (B, N + 1)
        h = self.encoder((x - self.in_mean) / self.in_std)  # (B, latent)
        xi = torch.exp(log_eigenvalues + self.decoder(h))  # (B, N)
        return xi * (self.n_assets / xi.sum(dim=1, keepdim=True))


def _spectrum(noisy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    lam, vec = np.linalg.eigh(noisy)
    return np.log(np.maximum(lam, _EIG_FLOOR)), vec


def _training_row(noisy, clean, n_samples: int, n: int, target: str):
    s = check_correlation_input(noisy, "noisy")
    c = check_correlation_input(clean, "clean")
    if s.shape != (n, n) or c.shape != (n, n):
        raise ValueError(f"training matrices must be {n} x {n}, got {s.shape} and {c.shape}")
    t = check_int("n_samples", n_samples, minimum=2)
    log_lam, vec = _spectrum(s)
    if target == "oracle":
        y = np.einsum("ik,ij,jk->k", vec, c, vec)  # u_k^T C u_k
    else:
        y = np.linalg.eigvalsh(c)
    return log_lam, n / t, y


class DenoisingAutoencoderCleaner:
    """Clean correlation matrices with a spectral denoising autoencoder (fit, transform, save, load).

    Example::

        cleaner = DenoisingAutoencoderCleaner(n_assets=50).fit([100, 200], n_matrices=500)
        cleaned = cleaner.transform(sample_corr, T=100)   # (50, 50) correlation matrix
        cleaner.save("dae_n50"); cleaner = DenoisingAutoencoderCleaner.load("dae_n50")

    Reference: "Cleaning the Correlation Matrix with a Denoising AutoEncoder" (Bloomberg
    technical report, 2017; arXiv 1708.02985).
    """

    def __init__(self, n_assets: int, *, hidden: int = 128, latent: int = 32,
                 target: str = "oracle") -> None:
        self.config = AutoencoderConfig(n_assets=n_assets, hidden=hidden, latent=latent,
                                        target=target)
        self.model = SpectralDAE(self.config.n_assets, self.config.hidden, self.config.latent)
        self.fitted = False
        self.train_loss: list[float] = []

    def __repr__(self) -> str:
        c = self.config
        return (f"DenoisingAutoencoderCleaner(n_assets={c.n_assets}, hidden={c.hidden}, "
                f"latent={c.latent}, target={c.target!r}, fitted={self.fitted})")

    def fit(self, n_samples: int | Sequence[int], *, n_matrices: int = 2000,
            n_factors: tuple[int, int] = (1, 8), epochs: int = 200, lr: float = 3e-3,
            batch_size: int = 128, seed: int = 0) -> DenoisingAutoencoderCleaner:
        """Train on ``n_matrices`` simulated factor models (see :func:`simulate_factor_model`).

        Args:
            n_samples: T, or several T values drawn uniformly per matrix (sets q = N/T).
            n_matrices: number of (noisy, true) training pairs.
            n_factors: inclusive range of the number of factors per simulated matrix.
            epochs, lr, batch_size: Adam training schedule.
            seed: seeds the simulations, the initialisation and the batch order.
        """
        ts = [n_samples] if isinstance(n_samples, (int, np.integer)) else list(n_samples)
        if not ts:
            raise ValueError("n_samples must be an integer >= 2 or a non-empty list of them, got []")
        ts = [check_int("n_samples", t, minimum=2) for t in ts]
        m = check_int("n_matrices", n_matrices)
        k_lo, k_hi = (check_int("n_factors", k) for k in n_factors)
        if k_lo > k_hi:
            raise ValueError(f"n_factors must be a range (low, high) with low <= high, got {n_factors}")
        rng = np.random.default_rng(seed)

        def pairs():
            for _ in range(m):
                t = int(rng.choice(ts))
                c, x = simulate_factor_model(self.config.n_assets, t,
                                             n_factors=int(rng.integers(k_lo, k_hi + 1)), seed=rng)
                yield np.corrcoef(x, rowvar=False), c, t

        return self.fit_pairs(track(pairs(), "simulating", total=m), epochs=epochs, lr=lr,
                              batch_size=batch_size, seed=seed)

    def fit_pairs(self, pairs: Iterable[tuple[np.ndarray, np.ndarray, int]], *,
                  epochs: int = 200, lr: float = 3e-3, batch_size: int = 128,
                  seed: int = 0) -> DenoisingAutoencoderCleaner:
        """Train on your own ``(noisy sample correlation, true correlation, T)`` triples."""
        n = self.config.n_assets
        rows = [_training_row(s, c, t, n, self.config.target) for s, c, t in pairs]
        if not rows:
            raise ValueError("pairs must hold at least one (noisy, clean, T) triple, got none")
        epochs = check_int("epochs", epochs)
        batch_size = check_int("batch_size", batch_size)
        lr = check_positive("lr", lr)
        x = torch.tensor(np.stack([r[0] for r in rows]), dtype=torch.float32)  # (M, N)
        q = torch.tensor([r[1] for r in rows], dtype=torch.float32)  # (M,)
        y = torch.tensor(np.stack([r[2] for r in rows]), dtype=torch.float32)  # (M, N)
        feats = torch.cat([x, q[:, None]], dim=1)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.model = SpectralDAE(n, self.config.hidden, self.config.latent)
            self.model.in_mean.copy_(feats.mean(dim=0))
            self.model.in_std.copy_(feats.std(dim=0).clamp_min(1e-3) if len(rows) > 1
                                    else torch.ones(n + 1))
            opt = torch.optim.Adam(self.model.parameters(), lr=lr)
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
            self.train_loss = []
            self.model.train()
            for _ in track(range(epochs), "training autoencoder"):
                perm = torch.randperm(len(rows))
                total = 0.0
                for i in range(0, len(rows), batch_size):
                    idx = perm[i:i + batch_size]
                    loss = torch.mean((self.model(x[idx], q[idx]) - y[idx]) ** 2)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    total += float(loss.detach()) * len(idx)
                sched.step()
                self.train_loss.append(total / len(rows))
        self.model.eval()
        self.fitted = True
        return self

    def clean_eigenvalues(self, eigenvalues, T: int) -> np.ndarray:
        """Cleaned eigenvalues (ascending order in, same order out) for ``N / T``."""
        lam = np.asarray(eigenvalues, dtype=np.float64)
        if lam.shape[-1] != self.config.n_assets:
            raise ValueError(f"eigenvalues must have {self.config.n_assets} entries, got {lam.shape}")
        t = check_int("T", T, minimum=2)
        log_lam = torch.tensor(np.log(np.maximum(np.atleast_2d(lam), _EIG_FLOOR)),
                               dtype=torch.float32)
        q = torch.full((log_lam.shape[0],), self.config.n_assets / t, dtype=torch.float32)
        with torch.no_grad():
            xi = self.model(log_lam, q).double().numpy()
        return xi.reshape(lam.shape)

    def transform(self, C, T: int) -> np.ndarray:
        """Clean one sample correlation matrix ``C`` (N x N) estimated from ``T`` samples.

        Returns a valid correlation matrix: symmetric, unit diagonal, PSD.
        """
        if not self.fitted:
            raise RuntimeError("DenoisingAutoencoderCleaner is not fitted: call fit() or load()")
        c = check_correlation_input(C, "C")
        n = self.config.n_assets
        if c.shape != (n, n):
            raise ValueError(f"C must be {n} x {n} (n_assets), got {c.shape}")
        lam, vec = np.linalg.eigh(c)
        xi = self.clean_eigenvalues(lam, T)
        return project_to_correlation((vec * xi) @ vec.T)

    def save(self, path: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into the folder ``path``."""
        from safetensors.torch import save_file

        if not self.fitted:
            raise RuntimeError("DenoisingAutoencoderCleaner is not fitted: nothing to save")
        folder = Path(path)
        if folder.exists() and not folder.is_dir():
            raise ValueError(f"path must be a folder, got a file: {str(folder)!r}")
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"config": asdict(self.config), "train_loss": self.train_loss,
                "format": "scalelab.covariance.DenoisingAutoencoderCleaner/1"}
        (folder / _CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        state = {k: v.detach().contiguous() for k, v in self.model.state_dict().items()}
        save_file(state, str(folder / _WEIGHTS_FILE))
        return folder

    @classmethod
    def load(cls, path: str | Path) -> DenoisingAutoencoderCleaner:
        """Rebuild a cleaner saved with :meth:`save` (safetensors: no pickled code runs)."""
        from safetensors.torch import load_file

        folder = Path(path)
        for name in (_CONFIG_FILE, _WEIGHTS_FILE):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"no {name} in {str(folder)!r} (expected a folder "
                                        "written by DenoisingAutoencoderCleaner.save)")
        meta = json.loads((folder / _CONFIG_FILE).read_text())
        cfg = AutoencoderConfig(**meta["config"])
        obj = cls(cfg.n_assets, hidden=cfg.hidden, latent=cfg.latent, target=cfg.target)
        obj.model.load_state_dict(load_file(str(folder / _WEIGHTS_FILE)))
        obj.model.eval()
        obj.train_loss = list(meta.get("train_loss", []))
        obj.fitted = True
        return obj
