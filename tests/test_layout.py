"""The layout shows the architecture: one file style everywhere (docs/design.md, Layout).

Public modules hold what their package re-exports; a module whose name starts with ``_`` is
an internal helper of its package and nothing public comes from it. Package ``__init__``
files are re-export lists only: no sections by issue number, no late imports.
"""

import ast
import importlib
import inspect
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "scalelab"
PACKAGES = sorted(p.parent.name for p in SRC.glob("*/__init__.py"))


def _relative_imports(init: Path) -> list[str]:
    tree = ast.parse(init.read_text())
    return [n.module or "" for n in tree.body if isinstance(n, ast.ImportFrom) and n.level == 1]


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_re_export_only_from_public_modules(package):
    init = SRC / package / "__init__.py"
    private = [m for m in _relative_imports(init) if m.split(".")[0].startswith("_")]
    assert private == [], f"scalelab.{package} re-exports from private modules {private}"


@pytest.mark.parametrize("package", [p for p in PACKAGES if p != "cli"])
def test_public_names_are_defined_in_public_modules(package):
    mod = importlib.import_module(f"scalelab.{package}")
    bad = []
    for name in getattr(mod, "__all__", []):
        obj = getattr(mod, name)
        home = getattr(obj, "__module__", None) if (inspect.isclass(obj) or
                                                   inspect.isfunction(obj)) else None
        if home and home.startswith("scalelab") and any(
                part.startswith("_") for part in home.split(".")):
            bad.append(f"{name} ({home})")
    assert bad == [], f"scalelab.{package} exports names defined in private modules: {bad}"


@pytest.mark.parametrize("init", sorted(SRC.rglob("__init__.py")), ids=lambda p: p.parent.name)
def test_init_files_have_no_issue_sections_or_late_imports(init):
    text = init.read_text()
    assert "noqa: E402" not in text
    assert not re.search(r"\b[Ii]ssue \d+", text)


def test_the_rule_is_not_vacuous():
    """The checks above see real re-exports (a layout with no public modules would pass)."""
    assert len(PACKAGES) >= 12
    assert sum(len(_relative_imports(SRC / p / "__init__.py")) for p in PACKAGES) > 50


def test_no_package_imports_another_packages_private_modules():
    """``from ..other._helper import x`` reaches into another package's internals; the root's
    own helpers (``scalelab._utils``, ``scalelab._progress``) are shared by every package."""
    bad = []
    for path in SRC.rglob("*.py"):
        package = path.relative_to(SRC).parts[0]
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.module:
                continue
            parts = node.module.split(".")
            if node.level == 0 and parts[0] == "scalelab":
                parts = parts[1:]
            elif node.level < 2:
                continue
            if len(parts) >= 2 and parts[0] != package and parts[1].startswith("_"):
                bad.append(f"{path.relative_to(SRC)}: {node.module}")
    assert bad == []


def test_experiments_follow_one_convention():
    """Every reproduction is a public module whose public ``run`` function (``run_<name>``
    where one module holds two) is what it registers (docs/design.md, How to add an
    experiment)."""
    from scalelab.experiments import list_experiments

    experiments = list_experiments()
    assert len(experiments) >= 20
    for exp in experiments:
        fn = exp.run
        assert fn.__name__ == "run" or fn.__name__.startswith("run_"), (exp.name, fn.__name__)
        assert not any(p.startswith("_") for p in fn.__module__.split(".")), (exp.name,
                                                                            fn.__module__)
