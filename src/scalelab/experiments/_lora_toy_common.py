"""The toy LoRA teacher-student shared by the ``loraplus-toy`` and ``lora-init`` reproductions.

The model is the linear layer both papers analyse (LoRA+ arXiv 2402.12354, Section 3; LoRA
initialisation arXiv 2406.08447, Section 3), with a frozen "pretrained" weight and a rank-r
adapter:

    f(x) = (W* + B A) x,   W* in R^(m x n),  B in R^(m x r),  A in R^(r x n).

The teacher is the same layer with a fixed adapter, y = (W* + B* A*) x, so W* cancels in
every residual and only B A has to learn B* A*. Training is full batch on the half mean
squared error (mean over samples and output coordinates), with plain gradient descent
(``"sgd"``) or Adam (``"adam"``, torch.optim.Adam's update without weight decay).

Interpretation (the papers leave the toy's data open):
- inputs x = U z with z ~ N(0, I_d), d = 8, and a frozen U ~ N(0, 1/d): every coordinate of
  x is N(0, 1) and all inputs lie in a d-dimensional subspace. The training set has a fixed
  size whatever the width: the papers' regime (finitely many inputs, width n -> infinity),
  where an update of A moves A x by Theta(n * eta_A);
- the teacher adapter B* ~ N(0, 1), A* ~ N(0, 1/n) makes every target coordinate Theta(1);
- the reproductions use a square layer (m = n), LoRA's usual case; m = 1 is the papers'
  f(x) = (W* + b a^T) x with a scalar output.

Many independent copies ("cells", one per learning-rate pair) train at once: parameters carry
a leading cell dimension, every cell has its own two learning rates, and the residual
B A X^T - Y (C x m x N) is never formed — the gradients are expanded into r x r products —
so a whole (eta_A, eta_B) grid costs a few matrix products per step. All cells start from
the same random draw and differ only by their learning rates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..errors import check_choice, check_int, check_positive
from ._common import loglog_slope as loglog_slope  # its home is _common

INITS = ("A", "B")
LOSS_FLOOR = 1e-6  # relative losses below this count as converged in trajectory averages
OPTIMIZERS = ("adam", "sgd")


@dataclass(frozen=True)
class ToyTask:
    """Data for one width plus the student's random factors.

    ``x_*`` hold one input per row (N x n); ``y_*`` (m x N) are the teacher's outputs minus
    the frozen part W* x, which cancels in every residual and is never materialised.
    """

    width: int
    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any
    a_init: Any  # (r, n): Init[A]'s random A, N(0, 1/n) (variance 1/fan_in)
    b_init: Any  # (m, r): Init[B]'s random B, N(0, 1/r) (variance 1/fan_in)


def make_toy_task(width: int, *, out_dim: int | None = None, rank: int = 1, n_train: int = 64,
                  n_test: int = 256, input_dim: int = 8, seed: int = 0,
                  dtype: Any = None) -> ToyTask:
    """Draw inputs, teacher adapter and the student's random factors (``out_dim`` defaults to
    ``width``: a square layer). Deterministic given ``seed``."""
    import torch

    width = check_int("width", width, minimum=1)
    out_dim = width if out_dim is None else check_int("out_dim", out_dim, minimum=1)
    rank = check_int("rank", rank, minimum=1)
    n_train = check_int("n_train", n_train, minimum=1)
    n_test = check_int("n_test", n_test, minimum=1)
    input_dim = check_int("input_dim", input_dim, minimum=1)
    dtype = dtype or torch.float32
    g = torch.Generator().manual_seed(int(seed))

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g, dtype=torch.float64)

    u = randn(width, input_dim) / math.sqrt(input_dim)  # frozen embedding (n, d)
    b_star, a_star = randn(out_dim, rank), randn(rank, width) / math.sqrt(width)
    a_init = randn(rank, width) / math.sqrt(width)
    b_init = randn(out_dim, rank) / math.sqrt(rank)

    def sample(n_points: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = randn(n_points, input_dim) @ u.T  # (N, n)
        return x.to(dtype), (b_star @ (a_star @ x.T)).to(dtype)  # (N, n), (m, N)

    x_train, y_train = sample(n_train)
    x_test, y_test = sample(n_test)
    return ToyTask(width, x_train, y_train, x_test, y_test, a_init.to(dtype), b_init.to(dtype))


def toy_loss(x, y, a, b):
    """Half mean squared error of every cell, in float64: (C,).

    x (N, n), y (m, N), a (C, r, n), b (C, m, r); uses
    ||B S - Y||^2 = <B^T B, S S^T> - 2 <B^T Y, S> + ||Y||^2 with S = A X^T (C, r, N).
    """
    x, y, a, b = (t.double() for t in (x, y, a, b))
    s = a @ x.T  # (C, r, N)
    quad = ((b.transpose(1, 2) @ b @ s) * s).sum(dim=(1, 2))
    cross = ((b.transpose(1, 2) @ y) * s).sum(dim=(1, 2))
    return 0.5 * (quad - 2 * cross + (y * y).sum()).clamp_min(0.0) / y.numel()


def train_lora_toy(task: ToyTask, lr_a, lr_b, *, steps: int, init: str = "A",
                   optimizer: str = "sgd", betas: tuple[float, float] = (0.9, 0.999),
                   eps: float = 1e-8) -> dict[str, Any]:
    """Train one copy of the toy LoRA layer per learning-rate pair, all at once.

    Args:
        task: data and random factors from :func:`make_toy_task`.
        lr_a, lr_b: equal-length 1-D sequences (C cells): the learning rates of A and B.
        steps: full-batch steps.
        init: ``"A"`` (A random, B = 0) or ``"B"`` (A = 0, B random), arXiv 2406.08447.
        optimizer: ``"sgd"`` (plain gradient descent) or ``"adam"``.

    Returns:
        ``{"train_loss", "test_loss", "init_loss", "mean_log10_loss", "a", "b"}``: final
        losses per cell (C,), float64, ``inf`` where a cell diverged (non-finite loss or
        parameters); the train loss at initialisation (B A = 0 for both inits); per cell, the
        mean over the steps of log10(train loss before the step / initial loss), floored at
        ``LOSS_FLOOR`` (a training-speed score: the area under the log-loss curve); the final
        a (C, r, n) and b (C, m, r).
    """
    import torch

    steps = check_int("steps", steps, minimum=1)
    check_choice("init", init, INITS)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    dt = task.x_train.dtype
    lr_a = torch.as_tensor(lr_a, dtype=torch.float64).reshape(-1)
    lr_b = torch.as_tensor(lr_b, dtype=torch.float64).reshape(-1)
    if lr_a.shape != lr_b.shape:
        raise ValueError(f"lr_a and lr_b must have the same length, got {len(lr_a)} and "
                         f"{len(lr_b)}")
    for name, lr in (("lr_a", lr_a), ("lr_b", lr_b)):
        for v in lr.tolist():
            check_positive(name, v)
    cells, (r, n), m = lr_a.numel(), task.a_init.shape, task.b_init.shape[0]
    x, y = task.x_train, task.y_train  # (N, n), (m, N)
    a = (task.a_init.expand(cells, r, n).clone() if init == "A"
         else torch.zeros(cells, r, n, dtype=dt))
    b = (torch.zeros(cells, m, r, dtype=dt) if init == "A"
         else task.b_init.expand(cells, m, r).clone())
    la, lb = lr_a.to(dt).view(-1, 1, 1), lr_b.to(dt).view(-1, 1, 1)
    ma, va, mb, vb = (torch.zeros_like(p) for p in (a, a, b, b))
    beta1, beta2 = betas
    scale = 1.0 / y.numel()  # d loss / d residual = residual / (m N)
    ysq = float((y.double() ** 2).sum())
    init_loss = 0.5 * ysq * scale
    log_sum = torch.zeros(cells, dtype=torch.float64)
    with torch.no_grad():
        for t in range(1, steps + 1):
            s = a @ x.T  # (C, r, N)
            st, bt = s.transpose(1, 2), b.transpose(1, 2)  # (C, N, r), (C, r, m)
            sst, yst, btb = s @ st, y @ st, bt @ b  # (C, r, r), (C, m, r), (C, r, r)
            grad_b = (b @ sst - yst) * scale  # (C, m, r)
            grad_a = (btb @ s - bt @ y) @ x * scale  # (C, r, n)
            # the loss before this step, from the same products (float32: ~1e-6 rel. floor)
            cur = 0.5 * scale * ((btb * sst).sum((1, 2)) - 2 * (b * yst).sum((1, 2)) + ysq)
            log_sum += torch.log10((cur.double() / init_loss).clamp_min(LOSS_FLOOR))
            if optimizer == "sgd":
                a -= la * grad_a
                b -= lb * grad_b
                continue
            bc1, bc2 = 1 - beta1**t, math.sqrt(1 - beta2**t)
            for p, grad, m1, m2, lr in ((a, grad_a, ma, va, la), (b, grad_b, mb, vb, lb)):
                m1.mul_(beta1).add_(grad, alpha=1 - beta1)
                m2.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
                p.sub_(lr / bc1 * m1 / (m2.sqrt() / bc2 + eps))
        train = toy_loss(x, y, a, b)
        test = toy_loss(task.x_test, task.y_test, a, b)
    bad = ~(torch.isfinite(train) & torch.isfinite(test))
    bad |= ~(torch.isfinite(a).flatten(1).all(1) & torch.isfinite(b).flatten(1).all(1))
    train[bad], test[bad] = math.inf, math.inf
    mean_log = log_sum / steps
    mean_log[bad | torch.isnan(mean_log)] = math.inf
    return {"train_loss": train, "test_loss": test, "init_loss": init_loss,
            "mean_log10_loss": mean_log, "a": a, "b": b}


def feature_rms(x, a):
    """Root mean square of the LoRA features A x over the inputs ``x`` (N, n) and the rank,
    per cell: (C,) float64 (``a`` is (C, r, n); non-finite where a cell diverged)."""
    s = a.double() @ x.double().T  # (C, r, N)
    return s.pow(2).mean(dim=(1, 2)).sqrt()


def seed_mean_log_loss(width: int, lr_a, lr_b, *, seeds, steps: int, init: str = "A",
                       optimizer: str = "sgd", **task_kw) -> dict[str, Any]:
    """Per-cell losses as log10(loss / initial loss), averaged over ``seeds`` (geometric means).

    Returns ``{"train", "test", "avg", "feature", "per_seed"}``: final train and test losses,
    the train loss averaged (in log10) over the run's steps, which ranks cells by training
    speed, and log10 of the final rms of the features A x on the training inputs
    (:func:`feature_rms`). A cell that diverged for any seed is ``inf``. ``per_seed`` holds
    the same four lists for each seed, in the order of ``seeds``.
    """
    import torch

    keys = ("train", "test", "avg", "feature")
    sums: dict[str, Any] = dict.fromkeys(keys, 0.0)
    per_seed = []
    for seed in seeds:
        task = make_toy_task(width, seed=seed, **task_kw)
        out = train_lora_toy(task, lr_a, lr_b, steps=steps, init=init, optimizer=optimizer)
        init_test = float(0.5 * (task.y_test.double() ** 2).mean())
        one = {}
        for key, ref in (("train", out["init_loss"]), ("test", init_test)):
            one[key] = torch.log10((out[f"{key}_loss"] / ref).clamp_min(1e-30))
        one["avg"] = out["mean_log10_loss"].clone()
        feat = torch.log10(feature_rms(task.x_train, out["a"]).clamp_min(1e-30))
        feat[~torch.isfinite(out["train_loss"])] = math.inf
        one["feature"] = feat
        for key in keys:
            sums[key] = sums[key] + one[key]
        per_seed.append({k: v.tolist() for k, v in one.items()})
    res: dict[str, Any] = {k: (v / len(seeds)).tolist() for k, v in sums.items()}
    res["per_seed"] = per_seed
    return res


def log_grid(lo: float, hi: float, per_decade: int) -> list[float]:
    """Learning rates 10^lo ... 10^hi, ``per_decade`` points per decade, both ends included."""
    k = round((hi - lo) * per_decade)
    return [10 ** (lo + i / per_decade) for i in range(k + 1)]
