"""The pruning-method registry: entries, prune_at_init built on it unchanged, a new method in
one registration, and no import circle between the modules."""

import ast
import copy
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from scalelab.prune import (
    METHODS,
    MaskRequest,
    PruneMethod,
    compute_masks,
    get_method,
    list_methods,
    magnitude_scores,
    prune_at_init,
    register_method,
    topk_masks,
    unregister_method,
)

PRUNE = Path(__file__).resolve().parents[2] / "src" / "scalelab" / "prune"


def mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(12, 30), nn.Tanh(), nn.Linear(30, 25), nn.Tanh(),
                         nn.Linear(25, 7))


def batch():
    g = torch.Generator().manual_seed(0)
    return torch.randn(16, 12, generator=g), torch.randint(0, 7, (16,), generator=g)


def test_entries_and_the_design_contract():
    assert METHODS == ("magnitude", "random", "snip", "grasp", "synflow", "sbp-sr")
    assert [m.name for m in list_methods(at_init=True)] == list(METHODS)
    assert [m.name for m in list_methods(at_init=False)] == ["stochastic"]
    needs = {m.name: m.needs_data for m in list_methods()}
    assert needs == {"magnitude": False, "random": False, "snip": True, "grasp": True,
                     "synflow": False, "sbp-sr": True, "stochastic": True}
    assert all(m.scoring and isinstance(m, PruneMethod) for m in list_methods())
    assert get_method("sbp-sr").check is not None and get_method("snip").check is None
    with pytest.raises(ValueError, match="method must be one of 'magnitude'"):
        get_method("l1")


@pytest.mark.parametrize("method", METHODS)
def test_prune_at_init_applies_exactly_the_entry_masks(method):
    model = mlp()
    twin = copy.deepcopy(model)
    masks = compute_masks(twin, 0.8, method, data=batch(), iterations=3, seed=2)
    assert all(not hasattr(m, "weight_mask") for m in twin.modules())  # not touched
    import warnings

    from scalelab import ScalelabWarning
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScalelabWarning)  # sbp-sr on an MLP warns
        prune_at_init(model, 0.8, method, data=batch(), iterations=3, seed=2, rescale=False)
    for name, module in model.named_modules():
        if name in masks:
            assert torch.equal(module.weight_mask.bool(), masks[name])


def test_a_new_method_is_one_registration():
    def smallest(req: MaskRequest):  # keep the smallest weights: a deliberately odd rule
        return topk_masks({k: -v for k, v in magnitude_scores(req.model).items()},
                          req.sparsity, req.scope)

    entry = register_method(PruneMethod(name="test-smallest", needs_data=False,
                                        scoring="-|W|", masks=smallest))
    try:
        with pytest.raises(ValueError, match="registered twice"):
            register_method(PruneMethod(name="test-smallest", needs_data=False, scoring="x",
                                        masks=smallest))
        model = mlp(1)
        w = model[0].weight.detach().abs().clone()
        rep = prune_at_init(model, 0.9, "test-smallest", rescale=False)
        assert rep.kept == round(0.1 * (12 * 30 + 30 * 25 + 25 * 7))
        kept = w[model[0].weight_mask.bool()]
        if kept.numel():
            assert float(kept.max()) <= float(w[~model[0].weight_mask.bool()].max())
    finally:
        assert unregister_method(entry.name) is entry
    assert "test-smallest" not in [m.name for m in list_methods()]


def test_training_methods_are_refused_by_prune_at_init_but_reachable():
    with pytest.raises(ValueError, match="which trains and is not a pruning-at-init method"):
        prune_at_init(mlp(), 0.5, "stochastic", data=batch())
    model = mlp(2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    masks = compute_masks(model, 0.75, "stochastic", data=batch(), iterations=5)
    assert sum(int(m.sum()) for m in masks.values()) == round(0.25 * 1285)
    after = model.state_dict()
    assert set(after) == set(before) and all(torch.equal(after[k], v) for k, v in before.items())
    with pytest.raises(ValueError, match="method='stochastic' needs data"):
        compute_masks(model, 0.75, "stochastic")


def sibling_imports(module: str) -> set[str]:
    """Modules of scalelab.prune imported by prune/<module>.py at module level."""
    tree = ast.parse((PRUNE / f"{module}.py").read_text())
    out = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            out |= {node.module} if node.module else {a.name for a in node.names}
    return out


def test_no_import_circle_between_masks_and_rescale():
    assert sibling_imports("layers") == set()  # the bottom of the package
    assert "rescale" not in sibling_imports("masks")
    src = (PRUNE / "masks.py").read_text()
    assert not re.search(r"from \.rescale\b|import rescale\b", src)  # not even lazily
    # the whole graph of module-level sibling imports has no cycle
    modules = [p.stem for p in PRUNE.glob("*.py") if p.stem != "__init__"]
    graph = {m: {d for d in sibling_imports(m) if d in modules} for m in modules}
    state: dict[str, int] = {}

    def visit(m, path):
        if state.get(m) == 1:
            raise AssertionError(f"import cycle: {' -> '.join(path + [m])}")
        if state.get(m) == 2:
            return
        state[m] = 1
        for d in graph[m]:
            visit(d, path + [m])
        state[m] = 2

    for m in modules:
        visit(m, [])


def test_weight_pruning_never_imports_data_pruning():
    """Data pruning (prune/data.py) is a concept of its own: no weight-pruning module imports
    it, at module level or inside a function (docs/data_pruning.md)."""
    modules = [p.stem for p in PRUNE.glob("*.py") if p.stem not in ("__init__", "data")]
    assert len(modules) > 8
    for m in modules:
        src = (PRUNE / f"{m}.py").read_text()
        assert "data" not in sibling_imports(m), m
        assert not re.search(r"from \.data\b|from \. import data\b", src), m
