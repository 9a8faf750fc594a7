"""The uniform Lojasiewicz gradient inequality (LGI) along a training path, and its bound.

Liu, Yang, Hayou & Li (arXiv 2202.10670, TMLR 2022) bound the generalisation gap by the
constants of ``||grad L(w)|| >= c (L(w) - L*)^theta`` holding along the optimisation path.
Three pieces:

- :func:`lojasiewicz_fit` fits ``theta`` and ``c`` to a recorded trajectory of
  ``(loss, gradient norm)`` pairs as the official code (mathematicallfs/Uniform-LGI,
  ``linear_fit``) does: least squares of ``log ||grad||`` on ``log(L - L*)`` gives the slope
  ``theta``; the intercept moved down by the smallest residual gives ``log c``, so that
  ``c (L - L*)^theta`` is the lower envelope of the points.
- :func:`lgi_bound` is the official code's bound for a two-layer ReLU net, constants dropped.
- :class:`LGIRecorder` records the trajectory from any training loop (full-batch loss and
  full-batch gradient norm by default; the official last-minibatch norm behind an option);
  :func:`full_batch_loss_and_grad_norm` is the computation it calls.

Method notes, each rule and which parts are interpretations: docs/generalisation.md.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import check_choice, check_int, check_positive

MODES = ("full_batch", "last_minibatch")


@dataclass(frozen=True)
class LGIFit:
    """The fitted inequality ``||grad L|| >= c (L - L*)^theta`` over a trajectory.

    ``theta``: least-squares slope of ``log ||grad||`` on ``log(L - L*)``. ``c``: the lower
    envelope, ``exp(intercept + min(residuals))`` = ``min_i ||grad_i|| / (L_i - L*)^theta``.
    ``intercept``: the least-squares intercept. ``l_star``: the L* used. ``indices``: which
    points of the input were used (positions in the given arrays); ``losses`` and
    ``grad_norms`` are those points; ``residuals`` are ``log ||grad_i|| - (theta log(L_i - L*)
    + intercept)`` at them (so ``min(residuals)`` is the envelope's shift). ``r2``: the
    coefficient of determination of the log-log fit.
    """

    theta: float
    c: float
    intercept: float
    l_star: float
    residuals: np.ndarray
    indices: np.ndarray
    losses: np.ndarray
    grad_norms: np.ndarray
    r2: float

    @property
    def in_lgi_range(self) -> bool:
        """Whether ``theta`` lies in [1/2, 1), the range the paper's theorem assumes (the lower
        end allowing 1e-9 of rounding: an exact quadratic fits to 0.4999999999999999)."""
        return 0.5 - 1e-9 <= self.theta < 1.0

    @property
    def n_points(self) -> int:
        return int(self.indices.size)

    def bound(self, n: int, *, width: int | None = None) -> float:
        """:func:`lgi_bound` at this fit's ``c`` and ``theta``."""
        return lgi_bound(n, self.c, self.theta, width=width)

    def as_dict(self) -> dict[str, Any]:
        """JSON-able summary (no per-point arrays but the count)."""
        return {"theta": self.theta, "c": self.c, "intercept": self.intercept,
                "l_star": self.l_star, "n_points": self.n_points, "r2": self.r2,
                "in_lgi_range": self.in_lgi_range}


def _as_1d(name: str, values) -> np.ndarray:
    try:
        a = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a 1-D sequence of numbers, got {type(values).__name__}"
                         ) from None
    if a.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per recorded epoch), got shape {a.shape}")
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        raise ValueError(f"{name} must be finite; got {a[bad[0]]!r} at index {int(bad[0])}")
    return a


def lojasiewicz_fit(losses: Sequence[float] | np.ndarray, grad_norms: Sequence[float] | np.ndarray,
                    *, l_star: float | str = 0.0) -> LGIFit:
    """Fit ``theta`` and ``c`` of ``||grad L|| >= c (L - L*)^theta`` to a trajectory.

    Args:
        losses: the training loss at each recorded point (e.g. each epoch), finite.
        grad_norms: the gradient norm at the same points, finite and > 0.
        l_star: the optimal loss L*: a number (default 0.0, the official code's choice for
            its toy losses and linear regression), or ``"min"``, the smallest recorded loss
            (its choice for the networks: label corruption, varying n, ResNets).
    Returns:
        An :class:`LGIFit`.

    The rule, as the official ``linear_fit`` (np.polyfit of degree 1):
    ``x_i = log(L_i - L*)``, ``y_i = log ||grad_i||``; ``theta, b`` = least squares of
    ``y = theta x + b``; ``log c = b + min_i (y_i - theta x_i - b)``. With ``l_star="min"``
    the point(s) at the minimum are dropped (``log 0``); the official code deletes the one
    ``argmin`` point, and dropping every tie as well is this function's choice
    (interpretation: ties at the minimum would otherwise give ``log 0``). With a number,
    every loss must lie strictly above it.

    Raises ``ValueError`` (one line) for non-finite values, gradient norms <= 0, a numeric
    ``l_star`` with some loss at or below it, mismatched lengths, fewer than 3 usable
    points, or losses that are all equal (no slope to fit). arXiv 2202.10670.
    """
    L = _as_1d("losses", losses)
    g = _as_1d("grad_norms", grad_norms)
    if L.size != g.size:
        raise ValueError(f"losses and grad_norms must have the same length, got {L.size} and "
                         f"{g.size}")
    if L.size and np.any(g <= 0):
        i = int(np.flatnonzero(g <= 0)[0])
        raise ValueError(f"grad_norms must be > 0 (their log is fitted); got {g[i]!r} at index {i}")
    if isinstance(l_star, str):
        check_choice("l_star", l_star, ("min",))
        if L.size == 0:
            raise ValueError("losses is empty: lojasiewicz_fit needs at least 3 points")
        ls = float(L.min())
        keep = np.flatnonzero(L > ls)
    else:
        if isinstance(l_star, bool):
            raise ValueError(f"l_star must be a number or 'min', got {l_star!r}")
        try:
            ls = float(l_star)
        except (TypeError, ValueError):
            raise ValueError(f"l_star must be a number or 'min', got {l_star!r}") from None
        if not math.isfinite(ls):
            raise ValueError(f"l_star must be a finite number or 'min', got {l_star!r}")
        low = np.flatnonzero(L <= ls)
        if low.size:
            i = int(low[0])
            raise ValueError(f"losses must lie above l_star={ls!r}; loss {L[i]!r} at index {i} "
                             f"is at or below it (use l_star='min' or a smaller L*)")
        keep = np.arange(L.size)
    if keep.size < 3:
        raise ValueError(f"lojasiewicz_fit needs at least 3 usable points (losses above L*), "
                         f"got {keep.size}")
    x = np.log(L[keep] - ls)
    y = np.log(g[keep])
    if np.ptp(x) == 0:
        raise ValueError("losses are all equal above L*: no slope theta to fit")
    theta, b = np.polyfit(x, y, 1)
    res = y - (theta * x + b)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(res**2)) / ss_tot if ss_tot > 0 else math.nan
    return LGIFit(theta=float(theta), c=float(np.exp(b + res.min())), intercept=float(b),
                  l_star=ls, residuals=res, indices=keep, losses=L[keep], grad_norms=g[keep],
                  r2=r2)


def lgi_bound(n: int, c: float, theta: float, *, width: int | None = None) -> float:
    """The uniform-LGI generalisation bound, constants dropped as in the official code.

    ``1 / (sqrt(n) c^2 (1 - theta)^2)``, plus ``sqrt(width / n)`` when ``width`` (the hidden
    width ``m`` of the two-layer ReLU net) is given — the expression the official
    ``plot_vary_size.py`` evaluates. Only its trend in ``n`` and across runs means anything:
    the theorem's constants (and its log(1/delta) factor) are dropped, so the number is not a
    bound on the gap's value.

    Args:
        n: number of training examples, >= 1.
        c: the LGI constant, > 0 (e.g. :attr:`LGIFit.c`).
        theta: the LGI exponent, finite and < 1 (the bound blows up as theta -> 1). The theorem
            assumes theta in [1/2, 1); smaller values are evaluated as the formula stands (see
            :attr:`LGIFit.in_lgi_range`).
        width: hidden width ``m``; None leaves the ``sqrt(m / n)`` term out.

    arXiv 2202.10670.
    """
    n = check_int("n", n)
    c = check_positive("c", c)
    try:
        th = float(theta)
    except (TypeError, ValueError):
        raise ValueError(f"theta must be a number < 1, got {theta!r}") from None
    if not math.isfinite(th) or th >= 1.0:
        raise ValueError(f"theta must be a finite number < 1 (the bound diverges at 1), got "
                         f"{theta!r}")
    value = 1.0 / (math.sqrt(n) * c**2 * (1.0 - th) ** 2)
    if width is not None:
        value += math.sqrt(check_int("width", width) / n)
    return value


# ---------------------------------------------------------------------------------------------
# Recording a trajectory
# ---------------------------------------------------------------------------------------------

def _xy(data):
    """``(x, y)`` tensors from an ``(x, y)`` pair or an ArrayDataset's training split."""
    from ..nn import xy_tensors

    xy = xy_tensors(data)
    if xy is None:
        raise ValueError(f"data must be an (x, y) pair or an ArrayDataset, got "
                         f"{type(data).__name__}")
    x, y = xy
    if not hasattr(data, "x_train") and (x.shape[0] != y.shape[0] or x.shape[0] == 0):
        raise ValueError(f"data must be (x, y) with the same number (>= 1) of rows, got "
                         f"{tuple(x.shape)} and {tuple(y.shape)}")
    return x, y


def _params(model, params) -> list:
    ps = [p for p in (model.parameters() if params is None else params) if p.requires_grad]
    if not ps:
        raise ValueError("no trainable parameters to take the gradient norm over")
    return ps


def full_batch_loss_and_grad_norm(model, data, *, loss_fn: Callable | None = None,
                                  batch_size: int | None = None,
                                  params: Iterable | None = None) -> tuple[float, float]:
    """The training loss over the whole of ``data`` and the norm of its gradient.

    Args:
        model: an ``nn.Module``, evaluated in eval mode (each submodule's mode is restored).
        data: ``(x, y)`` tensors/arrays or an :class:`~scalelab.data.ArrayDataset` (its
            training split).
        loss_fn: ``loss_fn(output, y) -> the mean loss over the batch`` (default
            cross-entropy). The full-batch loss is the mean over all examples, computed in
            chunks of ``batch_size`` (default: all at once) weighted by chunk size — exact
            for any loss that is a mean over examples.
        params: the parameters to take the gradient over (default every trainable one).
    Returns:
        ``(L(w), ||grad_w L(w)||_2)``; the chunks' losses and gradients are computed in the
        model's dtype and summed in float64. Parameter ``.grad`` is not touched (``torch.autograd.grad``), so it may run
        inside any training loop.
    """
    import torch
    import torch.nn.functional as F

    from ._utils import eval_mode

    x, y = _xy(data)
    n = int(x.shape[0])
    bs = n if batch_size is None else check_int("batch_size", batch_size)
    ps = _params(model, params)
    fn = loss_fn or F.cross_entropy
    total = 0.0
    grads = [torch.zeros_like(p, dtype=torch.float64) for p in ps]
    dev = ps[0].device
    with eval_mode(model), torch.enable_grad():
        for s in range(0, n, bs):
            xb, yb = x[s:s + bs].to(dev), y[s:s + bs].to(dev)
            if xb.is_floating_point():
                xb = xb.to(ps[0].dtype)
            w = xb.shape[0] / n
            loss = fn(model(xb), yb) * w
            gs = torch.autograd.grad(loss, ps, allow_unused=True)
            for acc, gi in zip(grads, gs, strict=True):
                if gi is not None:
                    acc += gi.detach().double()
            total += float(loss.detach().double())
    norm = math.sqrt(sum(float(gacc.pow(2).sum()) for gacc in grads))
    return total, norm


class LGIRecorder:
    """Record ``(loss, gradient norm)`` once per epoch from any training loop.

    Call :meth:`record` at the end of each epoch (or pass the recorder as
    ``train_classifier(..., epoch_callback=recorder)``), then :meth:`fit`.

    Args:
        model: the ``nn.Module`` being trained.
        data: the training set, ``(x, y)`` or an ArrayDataset (needed in ``"full_batch"``
            mode; unused in ``"last_minibatch"`` mode).
        mode: ``"full_batch"`` (default): the full-batch loss and the norm of the full-batch
            gradient at the current weights, by :func:`full_batch_loss_and_grad_norm`.
            ``"last_minibatch"``: the official code's quantity — the norm of the gradient the
            loop left in the parameters' ``.grad`` (its last minibatch's, taken at the weights
            before the last step) with the loss the loop passes (the official code passes the
            mean of that epoch's minibatch losses). With one batch per epoch (full-batch
            gradient descent) it is the full-batch pair at the weights before the step.
        loss_fn, batch_size, params: as :func:`full_batch_loss_and_grad_norm`.
        stop_below: when given, calling the recorder as an epoch callback returns True once
            the recorded loss falls below it (the official runs stop at 1e-3).

    Interpretation (docs/generalisation.md): the paper's inequality is about the full
    gradient of the training loss, so full batch is the default; the official code's
    last-minibatch norm is kept for comparison.
    """

    def __init__(self, model, data=None, *, mode: str = "full_batch",
                 loss_fn: Callable | None = None, batch_size: int | None = None,
                 params: Iterable | None = None, stop_below: float | None = None) -> None:
        self.mode = check_choice("mode", mode, MODES)
        if mode == "full_batch" and data is None:
            raise ValueError("mode='full_batch' needs data= (the training set) to evaluate the "
                             "full-batch loss and gradient")
        self.model = model
        self.data = _xy(data) if data is not None else None
        self.loss_fn = loss_fn
        self.batch_size = batch_size
        self.params = _params(model, params)
        self.stop_below = None if stop_below is None else check_positive("stop_below",
                                                                         stop_below)
        self.epochs: list[int] = []
        self.losses: list[float] = []
        self.grad_norms: list[float] = []

    def record(self, loss: float | None = None, *, epoch: int | None = None) -> tuple[float, float]:
        """Append one point and return it as ``(loss, grad_norm)``.

        ``loss``: in ``"last_minibatch"`` mode the loss to pair with the gradient norm
        (required); in ``"full_batch"`` mode it must be None (the loss is computed). ``epoch``: a label
        (default: the number of points recorded so far + 1).
        """
        if self.mode == "full_batch":
            if loss is not None:
                raise ValueError("record(loss=...) is for mode='last_minibatch'; in "
                                 "'full_batch' mode the loss is computed from data")
            value, norm = full_batch_loss_and_grad_norm(
                self.model, self.data, loss_fn=self.loss_fn, batch_size=self.batch_size,
                params=self.params)
        else:
            missing = [i for i, p in enumerate(self.params) if p.grad is None]
            if missing:
                raise ValueError("mode='last_minibatch' reads the parameters' .grad, but "
                                 f"{len(missing)} parameter(s) have none: call record() after "
                                 "a backward pass (and before zero_grad)")
            norm = math.sqrt(sum(float(p.grad.detach().double().pow(2).sum())
                                 for p in self.params))
            if loss is None:
                raise ValueError("mode='last_minibatch' needs record(loss=...), e.g. the "
                                 "epoch's mean minibatch loss as the official code pairs it")
            value = float(loss)
        self.epochs.append(len(self.epochs) + 1 if epoch is None else int(epoch))
        self.losses.append(float(value))
        self.grad_norms.append(float(norm))
        return self.losses[-1], self.grad_norms[-1]

    def __call__(self, epoch: int, epoch_losses: Sequence[float]) -> bool:
        """The epoch-callback protocol of :func:`scalelab.train.train_classifier`.

        Records one point (``last_minibatch`` mode pairs the norm with the mean of
        ``epoch_losses``, as the official code does) and returns True (stop) when
        ``stop_below`` is set and the recorded loss is below it.
        """
        loss = float(np.mean(epoch_losses)) if self.mode == "last_minibatch" else None
        value, _ = self.record(loss, epoch=epoch)
        return self.stop_below is not None and value < self.stop_below

    def fit(self, *, l_star: float | str = 0.0) -> LGIFit:
        """:func:`lojasiewicz_fit` of the points recorded so far."""
        return lojasiewicz_fit(self.losses, self.grad_norms, l_star=l_star)

    def rows(self) -> list[dict[str, float]]:
        """One ``{"epoch", "loss", "grad_norm"}`` dict per recorded point."""
        return [{"epoch": e, "loss": v, "grad_norm": g}
                for e, v, g in zip(self.epochs, self.losses, self.grad_norms, strict=True)]

    def save(self, path: str | Path) -> Path:
        """Write the rows as JSON (a list of objects) or, for a ``.csv`` path, CSV with the
        header ``epoch,loss,grad_norm``; :func:`read_trajectory` and ``scalelab lgi`` read both."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix.lower() == ".csv":
            with open(path, "w", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, fieldnames=["epoch", "loss", "grad_norm"])
                w.writeheader()
                for r in self.rows():
                    w.writerow({k: repr(v) for k, v in r.items()})
        else:
            path.write_text(json.dumps(self.rows(), indent=1))
        return path


def read_trajectory(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``(losses, grad_norms)`` from a JSON or CSV file of recorded rows.

    JSON: a list of objects with ``loss`` and ``grad_norm`` keys (what
    :meth:`LGIRecorder.save` writes), or one object with lists ``losses`` and
    ``grad_norms`` (``train_loss`` / ``gradient_norm`` — the official code's keys — also
    work). CSV: a header with ``loss`` and ``grad_norm`` columns (others are ignored).
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"trajectory file not found: {str(path)!r}")
    if path.is_dir() or path.suffix.lower() not in (".json", ".csv"):
        raise ValueError(f"trajectory must be a .json or .csv file, got {str(path)!r}")
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            cols = [c.strip() for c in reader.fieldnames or []]
            rows = [{k.strip(): v for k, v in r.items() if k is not None} for r in reader]
        for col in ("loss", "grad_norm"):
            if col not in cols:
                raise ValueError(f"{str(path)!r} needs columns 'loss' and 'grad_norm'; columns: "
                                 f"{', '.join(cols) or '(none)'}")
        return _numbers(path, [r["loss"] for r in rows], "loss"), \
            _numbers(path, [r["grad_norm"] for r in rows], "grad_norm")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{str(path)!r} is not valid JSON: {e.msg} (line {e.lineno})") from None
    if isinstance(doc, list):
        if not all(isinstance(r, dict) and "loss" in r and "grad_norm" in r for r in doc):
            raise ValueError(f"{str(path)!r}: a JSON list must hold objects with 'loss' and "
                             "'grad_norm'")
        return (_numbers(path, [r["loss"] for r in doc], "loss"),
                _numbers(path, [r["grad_norm"] for r in doc], "grad_norm"))
    if isinstance(doc, dict):
        for lk, gk in (("losses", "grad_norms"), ("train_loss", "gradient_norm")):
            if lk in doc and gk in doc:
                return _numbers(path, doc[lk], lk), _numbers(path, doc[gk], gk)
    raise ValueError(f"{str(path)!r}: expected a list of {{'loss', 'grad_norm'}} objects or an "
                     "object with lists 'losses' and 'grad_norms'")


def _numbers(path: Path, values, name: str) -> np.ndarray:
    if not isinstance(values, list):
        raise ValueError(f"{str(path)!r}: {name!r} must be a list of numbers")
    out = np.empty(len(values))
    for i, v in enumerate(values):
        try:
            if isinstance(v, bool) or v is None:
                raise TypeError
            out[i] = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"{str(path)!r}: {name} row {i}: not a number: {v!r}") from None
    return out
