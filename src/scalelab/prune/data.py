"""Data pruning: per-example difficulty scores and the subset a budget keeps.

Scores (one number per training example, in dataset order; for all but ``margin`` a higher
score marks a harder, "more important" example):

- ``el2n``: ``||softmax(f(x)) - onehot(y)||_2`` early in training (Paul et al. 2021).
- ``grand``: the norm of the per-example gradient of the cross-entropy with respect to all
  trainable parameters, ``||grad_theta l(f(x), y)||_2`` (Paul et al. 2021).
- ``forgetting``: how often an example goes from correctly to wrongly classified between two
  presentations during training (Toneva et al. 2019); examples never classified correctly
  get the number of presentations (``epochs``), more than any learnable example can reach.
- ``loss``: the per-example cross-entropy.
- ``margin``: true-class logit minus the largest other logit (LOW is hard: keep the hardest
  with ``method="bottom"``).
- ``lipschitz``: LiPrune's per-example Lipschitz constant of the loss (Ayed & Hayou, NeurIPS
  2022 ICBINB workshop): for a linear / logistic model the norm of the per-example gradient,
  for a deep net the last-layer bound (Katharopoulos & Fleuret 2018); see
  :func:`lipschitz_scores` for the exact rule and which parts are interpretation.

:func:`select_subset` keeps the top-, bottom- or randomly-scored examples, optionally
calibrated by random exploration (arXiv 2302.06960, Ayed & Hayou, TMLR 2023; the exact rule
is an interpretation, see its docstring), or draws them with probability proportional to
the score (``method="importance"``, the importance-sampling distribution LiPrune starts from).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from .._progress import track
from ..errors import check_choice, check_fraction, check_int, check_positive

SCORES = ("el2n", "grand", "forgetting", "loss", "margin", "lipschitz")
METHODS = ("top", "bottom", "random", "importance")
CALIBRATIONS = ("random-exploration",)
LIPSCHITZ_BOUNDS = ("last-layer", "logits", "global")


# ---------------------------------------------------------------------------------------------
# Selecting a subset
# ---------------------------------------------------------------------------------------------

def keep_count(n: int, keep: float | int) -> int:
    """How many of ``n`` examples ``keep`` means: an int count in [1, n] or a fraction in (0, 1].

    A fraction keeps ``round(keep * n)`` examples (halves round up).
    """
    n = check_int("n", n)
    if isinstance(keep, (bool, np.bool_)):
        raise ValueError(f"keep must be a fraction in (0, 1] or an integer count, got {keep!r}")
    if isinstance(keep, (int, np.integer)):
        k = int(keep)
        if not 1 <= k <= n:
            raise ValueError(f"keep must be a count in [1, {n}] (the number of examples), got {k}")
        return k
    try:
        frac = check_fraction("keep", keep, low_open=True)
    except ValueError:
        raise ValueError(f"keep must be a fraction in (0, 1] or an integer count, got {keep!r}"
                         ) from None
    k = int(math.floor(frac * n + 0.5))
    if k < 1:
        raise ValueError(f"keep={keep!r} keeps no example of {n}; use a larger fraction or a count")
    return k


def select_subset(scores: Sequence[float] | np.ndarray, keep: float | int, method: str = "top",
                  calibration: str | None = None, *, alpha: float = 0.5,
                  seed: int = 0) -> np.ndarray:
    """Indices of the examples to keep (sorted, int64), exactly ``keep_count(len(scores), keep)``.

    Args:
        scores: one finite score per example.
        keep: a fraction in (0, 1] of the examples or an integer count.
        method: ``"top"`` keeps the highest scores, ``"bottom"`` the lowest, ``"random"`` a
            uniformly random subset (scores then only give the size), ``"importance"`` a
            random subset drawn with probability proportional to the score (k successive
            draws without replacement, each proportional to the scores of the examples not
            yet drawn — numpy's ``Generator.choice(replace=False, p=...)``); it needs scores
            >= 0 with at least k of them > 0.
        calibration: ``None`` (pure score-based) or ``"random-exploration"``: a fraction
            ``alpha`` of the budget is drawn uniformly at random, the rest by score.
        alpha: share of the budget drawn at random under ``"random-exploration"``, in [0, 1];
            ``alpha = 0`` is pure score-based selection, ``alpha = 1`` is random pruning.
        seed: seed of the random draws; same seed, same subset.

    Interpretation (docs/methods.md, Data pruning and LiPrune; the paper, arXiv 2302.06960,
    does not spell it out): with budget k, ``round(alpha k)`` examples are random and
    ``k - round(alpha k)`` by score. The score part is taken first (the best-scored
    ``k - round(alpha k)``), then the
    random part is drawn uniformly from all the examples left. The draw depends only on the
    set left, so ``alpha = 1`` gives exactly ``method="random"`` with the same seed. Ties in
    score are broken by index (lower first).
    """
    s = np.asarray(scores, dtype=float)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"scores must be a non-empty 1-D sequence, got shape {s.shape}")
    bad = np.flatnonzero(~np.isfinite(s))
    if bad.size:
        raise ValueError(f"scores must be finite; score {s[bad[0]]!r} at index {bad[0]}")
    check_choice("method", method, METHODS)
    if calibration is not None:
        check_choice("calibration", calibration, CALIBRATIONS)
        if method in ("random", "importance"):
            raise ValueError(f"calibration applies to score-based selection: use method 'top' "
                             f"or 'bottom' with calibration, got method {method!r}")
    alpha = check_fraction("alpha", alpha)
    n = s.size
    k = keep_count(n, keep)
    rng = np.random.default_rng(seed)
    if method == "random":
        chosen = rng.choice(n, size=k, replace=False)
    elif method == "importance":
        if np.any(s < 0):
            i = int(np.flatnonzero(s < 0)[0])
            raise ValueError(f"method 'importance' needs scores >= 0 (probabilities proportional "
                             f"to them); score {s[i]!r} at index {i}")
        positive = int(np.count_nonzero(s))
        if positive < k:
            raise ValueError(f"method 'importance' draws {k} distinct examples but only "
                             f"{positive} have a score > 0")
        chosen = rng.choice(n, size=k, replace=False, p=s / s.sum())
    else:
        order = np.argsort(-s if method == "top" else s, kind="stable")
        n_random = int(math.floor(alpha * k + 0.5)) if calibration else 0
        by_score = order[: k - n_random]
        rest = np.sort(order[k - n_random:])
        chosen = np.concatenate([by_score, rng.choice(rest, size=n_random, replace=False)])
    return np.sort(chosen).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Scores from logits, gradients and training histories (pure functions)
# ---------------------------------------------------------------------------------------------

def forgetting_counts(correct: np.ndarray) -> np.ndarray:
    """Forgetting events per example from a ``(presentations, N)`` boolean history.

    A forgetting event is a presentation where the example is misclassified after being
    classified correctly at its previous presentation (Toneva et al., arXiv 1812.05159).
    Examples never classified correctly get the number of presentations.
    """
    c = np.asarray(correct, dtype=bool)
    if c.ndim != 2 or c.shape[0] == 0:
        raise ValueError(f"correct must be a (presentations, N) array with at least one "
                         f"presentation, got shape {c.shape}")
    events = (c[:-1] & ~c[1:]).sum(axis=0).astype(float)
    events[~c.any(axis=0)] = c.shape[0]
    return events


def logit_scores(logits, y) -> dict[str, np.ndarray]:
    """``el2n``, ``loss`` and ``margin`` of each row of ``logits`` (N, C) for labels ``y`` (N,)."""
    import torch
    import torch.nn.functional as F

    logits = logits.detach().double()
    onehot = F.one_hot(y, logits.shape[1]).double()
    el2n = torch.linalg.vector_norm(torch.softmax(logits, 1) - onehot, dim=1)
    loss = F.cross_entropy(logits, y, reduction="none")
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.masked_fill(onehot.bool(), -math.inf).max(1).values
    return {"el2n": el2n.cpu().numpy(), "loss": loss.cpu().numpy(),
            "margin": (true - other).cpu().numpy()}


def grand_scores(model, x, y) -> np.ndarray:
    """Per-example gradient norms ``||grad_theta CE(model(x_i), y_i)||_2`` (all trainable params).

    Uses ``torch.func`` (vmap of grad); falls back to one backward pass per example for models
    vmap cannot batch.
    """
    import torch
    import torch.nn.functional as F
    from torch.func import functional_call, grad, vmap

    params = {k: v.detach() for k, v in model.named_parameters() if v.requires_grad}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def one(p, xi, yi):
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(out, yi.unsqueeze(0))

    try:
        g = vmap(grad(one), in_dims=(None, 0, 0))(params, x, y)
        sq = sum(v.reshape(v.shape[0], -1).double().pow(2).sum(1) for v in g.values())
        return sq.sqrt().cpu().numpy()
    except (RuntimeError, NotImplementedError):
        leaves = list(params.values())
        for t in leaves:
            t.requires_grad_(True)
        out = []
        for xi, yi in zip(x, y, strict=True):
            gi = torch.autograd.grad(one(params, xi, yi), leaves)
            out.append(math.sqrt(sum(float(t.double().pow(2).sum()) for t in gi)))
        return np.array(out)


def lipschitz_scores(model, x, y, *, bound: str = "last-layer") -> np.ndarray:
    """LiPrune's per-example Lipschitz score of the cross-entropy loss (one float per row).

    With ``p = softmax(f(x))`` the model's output probabilities, ``e_y`` the one-hot label and
    ``h(x)`` the input of the model's last ``nn.Linear`` layer (whose output must be the
    model's output, the logits), the gradient of ``CE`` with respect to that layer's weight is
    ``(p - e_y) h^T`` and with respect to its bias ``p - e_y``, so

    - ``"last-layer"`` (default): ``||p - e_y||_2 sqrt(||h||^2 + 1)`` — the exact norm of the
      per-example gradient with respect to the last layer's parameters (the ``+ 1`` is the
      bias; dropped when there is none or it is frozen, and ``||h||^2`` dropped when the
      weight is frozen). For a linear / logistic model (``h = x``) this is the whole
      per-example gradient norm, i.e. the Lipschitz constant of the loss at the current
      weights; with two classes it is ``sqrt(2) |sigma(w.x + b) - y| sqrt(||x||^2 + 1)``
      (``w, b`` the differences of the two rows). For a deep net it is the last-layer part
      of the gradient, a lower bound on GraNd.
    - ``"logits"``: ``||p - e_y||_2``, the norm of the gradient with respect to the logits —
      the quantity behind Katharopoulos & Fleuret's (arXiv 1803.00942) upper bound on the
      full gradient norm (up to a constant of the network). For softmax cross-entropy it
      equals EL2N at the same weights.
    - ``"global"``: ``sqrt(2) sqrt(||h||^2 + 1)``, the supremum of the ``"last-layer"``
      score over the last layer's parameters (``||p - e_y||_2 <= sqrt(2)``): for a linear
      model, the global Lipschitz constant of the loss in the weights, which depends on the
      input only (the constants of Needell, Srebro & Ward 2014, arXiv 1310.5715, are of
      this kind).

    Interpretation (docs/data_pruning.md): the public text of LiPrune does not give the
    exact score; ``"last-layer"`` is this library's reading of "the per-example Lipschitz
    constant" (local, at the trained weights), and ``bound`` switches to the other two.

    Args:
        model: an ``nn.Module`` whose output is the output of its last ``nn.Linear`` (called
            on 2-D inputs ``(B, in)``); run as it is (the caller sets eval mode).
        x, y: a batch of inputs and integer labels.
        bound: ``"last-layer"``, ``"logits"`` or ``"global"``.
    """
    import torch
    from torch import nn

    check_choice("bound", bound, LIPSCHITZ_BOUNDS)
    seen: list = []

    def hook(module, inp, out):
        seen.append((module, inp[0], out))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, nn.Linear)]
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    if not seen:
        raise ValueError("score 'lipschitz' needs a model with an nn.Linear output layer; "
                         "this model has none")
    last, h_in, z = seen[-1]
    if not isinstance(out, torch.Tensor) or not (out is z or (
            out.shape == z.shape and torch.equal(out, z))):
        raise ValueError("score 'lipschitz' needs the model's output to be the output of its "
                         "last nn.Linear layer (the logits); this model transforms it further")
    if h_in.dim() != 2:
        raise ValueError(f"score 'lipschitz' needs the last nn.Linear to take 2-D inputs "
                         f"(batch, features), got shape {tuple(h_in.shape)}")
    logits = z.detach().double()
    onehot = torch.nn.functional.one_hot(y, logits.shape[1]).double()
    resid = torch.linalg.vector_norm(torch.softmax(logits, 1) - onehot, dim=1)
    sq = torch.zeros_like(resid)
    if last.weight.requires_grad:
        sq = sq + h_in.detach().double().pow(2).sum(1)
    if last.bias is not None and last.bias.requires_grad:
        sq = sq + 1.0
    if bound == "logits":
        score = resid
    elif bound == "global":
        score = math.sqrt(2.0) * sq.sqrt()
    else:
        score = resid * sq.sqrt()
    return score.cpu().numpy()


# ---------------------------------------------------------------------------------------------
# Scoring a dataset with a short training run
# ---------------------------------------------------------------------------------------------

def _as_dataset(data) -> tuple[Any, int | None]:
    """A torch ``Dataset`` of ``(x, y)`` and, when cheap to know, the number of classes."""
    import torch
    from torch.utils.data import Dataset, TensorDataset

    from ..nn import xy_tensors

    xy = xy_tensors(data)
    if xy is not None and hasattr(data, "x_train"):
        return TensorDataset(*xy), getattr(data, "num_classes", None)
    if xy is not None:
        x, y = xy
        if y.ndim != 1 or x.shape[0] != y.shape[0]:
            raise ValueError(f"data must be (X, y) with y 1-D and one label per row of X; "
                             f"got X {tuple(x.shape)}, y {tuple(y.shape)}")
        if y.is_floating_point():
            if not torch.equal(y, y.round()):
                raise ValueError("y must hold integer class labels, got non-integer values")
            y = y.long()
        if x.shape[0] == 0:
            raise ValueError("data is empty (0 examples)")
        if int(y.min()) < 0:
            raise ValueError(f"class labels must be >= 0, got {int(y.min())}")
        x = x if x.is_floating_point() else x.float()
        return TensorDataset(x, y.long()), int(y.max()) + 1
    if isinstance(data, Dataset):
        return data, None
    raise ValueError(f"data must be an (X, y) pair, an ArrayDataset or a torch Dataset, "
                     f"got {type(data).__name__}")


def _batches(ds, order, batch_size: int, device):
    """``(x, y, indices)`` batches of ``ds`` in ``order`` (a tensor of example indices), the
    inputs and labels moved to ``device`` (the model's)."""
    import torch
    from torch.utils.data import TensorDataset, default_collate

    for start in range(0, len(order), batch_size):
        ib = order[start:start + batch_size]
        if isinstance(ds, TensorDataset):
            xb, yb = ds.tensors[0][ib], ds.tensors[1][ib]
        else:
            xb, yb = default_collate([tuple(ds[int(i)][:2]) for i in ib])
        yield xb.to(device), torch.as_tensor(yb).long().to(device), ib


def _default_model(input_dim: int, num_classes: int, hidden: int):
    from torch import nn

    return nn.Sequential(nn.Flatten(), nn.Linear(input_dim, hidden), nn.ReLU(),
                         nn.Linear(hidden, num_classes))


def _one_run(model, ds, *, epochs: int, lr: float, batch_size: int, seed: int,
             wanted: set[str], progress: str | None,
             lipschitz: str = "last-layer") -> dict[str, np.ndarray]:
    import torch
    import torch.nn.functional as F

    from ..nn import model_device
    n = len(ds)
    g = torch.Generator().manual_seed(seed)
    device = model_device(model)
    history = np.zeros((epochs, n), dtype=bool)
    if epochs:
        opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
        model.train()
        for epoch in track(range(epochs), progress or "", disable=None if progress else True):
            for xb, yb, ib in _batches(ds, torch.randperm(n, generator=g), batch_size, device):
                logits = model(xb)
                # Correctness at presentation time, before this step's update (Toneva et al.).
                history[epoch, ib.numpy()] = (logits.argmax(1) == yb).cpu().numpy()
                loss = F.cross_entropy(logits, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    model.eval()
    out: dict[str, list] = {k: [] for k in wanted - {"forgetting"}}
    for xb, yb, _ in _batches(ds, torch.arange(n), max(batch_size, 256), device):
        if wanted & {"el2n", "loss", "margin"}:
            with torch.no_grad():
                ls = logit_scores(model(xb), yb)
            for k in wanted & set(ls):
                out[k].append(ls[k])
        if "grand" in wanted:
            out["grand"].append(grand_scores(model, xb, yb))
        if "lipschitz" in wanted:
            out["lipschitz"].append(lipschitz_scores(model, xb, yb, bound=lipschitz))
    res = {k: np.concatenate(v) for k, v in out.items()}
    if "forgetting" in wanted:
        res["forgetting"] = forgetting_counts(history)
    return res


def score_examples(data, scores: str | Sequence[str] = ("el2n",), *,
                   model=None, epochs: int = 10, lr: float = 3e-3, batch_size: int = 64,
                   runs: int = 1, hidden: int = 256, num_classes: int | None = None,
                   seed: int = 0, progress: bool = False,
                   lipschitz: str = "last-layer") -> dict[str, np.ndarray]:
    """Per-example data-pruning scores from a short training run (averaged over ``runs`` inits).

    Args:
        data: ``(X, y)`` arrays/tensors (``y`` integer labels), an
            :class:`~scalelab.data.ArrayDataset` (its training split), or any torch
            ``Dataset`` whose items start with ``(x, y)``.
        scores: names among ``el2n``, ``grand``, ``forgetting``, ``loss``, ``margin``,
            ``lipschitz``.
        model: ``None`` for a one-hidden-layer ReLU MLP of width ``hidden``; an ``nn.Module``
            (a copy is trained, the caller's module is left untouched; ``epochs=0`` scores it
            as given, e.g. a pretrained model); or a zero-argument factory returning a fresh
            module, called once per run.
        epochs: passes of Adam (``lr``, ``batch_size``) before scoring; 0 scores at init.
            ``forgetting`` needs at least 2.
        runs: independent initialisations to average over (the papers average EL2N/GraNd over
            several); needs ``model`` to be ``None`` or a factory when > 1.
        num_classes: classes of the default model (read from the labels when not given).
        seed: run ``r`` uses seed ``seed + r`` for its init and data order.
        progress: show a progress bar on stderr (when it is a terminal).
        lipschitz: the bound behind the ``lipschitz`` score: ``"last-layer"``, ``"logits"``
            or ``"global"`` (see :func:`lipschitz_scores`).

    Returns:
        ``{name: float array of length N}`` in dataset order. Paper: arXiv 2302.06960 (scores
        from Paul et al. 2021, arXiv 2107.07075, and Toneva et al. 2019, arXiv 1812.05159).
    """
    import torch
    from torch import nn

    names = [scores] if isinstance(scores, str) else list(scores)
    if not names:
        raise ValueError(f"scores must name at least one of {', '.join(SCORES)}")
    for s in names:
        check_choice("score", s, SCORES)
    check_choice("lipschitz", lipschitz, LIPSCHITZ_BOUNDS)
    epochs = check_int("epochs", epochs, minimum=0)
    runs = check_int("runs", runs)
    batch_size = check_int("batch_size", batch_size)
    lr = check_positive("lr", lr)
    if "forgetting" in names and epochs < 2:
        raise ValueError(f"score 'forgetting' needs epochs >= 2 (two presentations), got {epochs}")
    if isinstance(model, nn.Module) and runs > 1:
        raise ValueError(f"runs={runs} needs a fresh model per run: pass model=None or a "
                         "factory (a zero-argument callable), not a module")
    if model is not None and not isinstance(model, nn.Module) and not callable(model):
        raise ValueError(f"model must be None, an nn.Module or a factory, got {model!r}")
    ds, k = _as_dataset(data)
    if len(ds) == 0:
        raise ValueError("data is empty (0 examples)")
    if model is None:
        x0 = ds[0][0]
        if num_classes is None:
            num_classes = k if k is not None else 1 + max(int(ds[i][1]) for i in range(len(ds)))
        num_classes = check_int("num_classes", num_classes, minimum=2)
        hidden = check_int("hidden", hidden)

    def build(r: int):
        torch.manual_seed(seed + r)
        if model is None:
            x = torch.as_tensor(x0)
            net = _default_model(int(x.numel()), num_classes, hidden)
            return net.to(x.dtype) if x.is_floating_point() else net
        if isinstance(model, nn.Module):
            return copy.deepcopy(model)
        return model()

    total: dict[str, np.ndarray] = {}
    for r in range(runs):
        res = _one_run(build(r), ds, epochs=epochs, lr=lr, batch_size=batch_size,
                       seed=seed + r, wanted=set(names),
                       progress=f"scoring run {r + 1}/{runs}" if progress else None,
                       lipschitz=lipschitz)
        for key, v in res.items():
            total[key] = total.get(key, 0.0) + v / runs
    return {s: total[s] for s in names}


def prune_dataset(data, keep: float | int, score: str = "el2n", method: str = "top",
                  calibration: str | None = None, *, alpha: float = 0.5, seed: int = 0,
                  **score_kw) -> np.ndarray:
    """Score ``data`` with :func:`score_examples` and return :func:`select_subset`'s indices.

    ``method="random"`` skips the scoring run. Keyword arguments go to ``score_examples``.
    """
    if method == "random":
        ds, _ = _as_dataset(data)
        return select_subset(np.zeros(len(ds)), keep, "random", calibration, alpha=alpha,
                             seed=seed)
    s = score_examples(data, score, seed=seed, **score_kw)[score]
    return select_subset(s, keep, method, calibration, alpha=alpha, seed=seed)


__all__: list[str] = ["CALIBRATIONS", "METHODS", "SCORES", "forgetting_counts", "grand_scores",
                      "keep_count", "logit_scores", "prune_dataset", "score_examples",
                      "select_subset"]
__all__ += ["LIPSCHITZ_BOUNDS", "lipschitz_scores"]
