"""The project carries its own notes: docstrings cite docs/ pages that exist (never the
external DESIGN.md / METHODS.md), cited sections exist, and every public name listed in the
contract of docs/design.md is importable from where the page says."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SOURCES = sorted((ROOT / "src").rglob("*.py"))
# A citation of the old notes that lived outside the repository.
EXTERNAL = re.compile(r"\b(DESIGN|METHODS)(\.md|\s+§|\s+section\b)")
CITED_PAGE = re.compile(r"docs/([A-Za-z0-9_\-]+)\.md")
CITED_SECTION = re.compile(r"docs/(design|methods)\.md, ([^\n]*)")
NAME = re.compile(r"`(scalelab(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")


def _headings(page: str) -> list[str]:
    text = (DOCS / f"{page}.md").read_text()
    return [m.group(1).strip() for m in re.finditer(r"^#{2,3} (.+)$", text, flags=re.M)]


def test_no_source_cites_the_external_notes():
    bad = [f"{p.relative_to(ROOT)}:{i}" for p in SOURCES
           for i, line in enumerate(p.read_text().splitlines(), 1) if EXTERNAL.search(line)]
    bad += [f"{p.relative_to(ROOT)}:{i}" for p in [*DOCS.glob("*.md"), ROOT / "README.md"]
            for i, line in enumerate(p.read_text().splitlines(), 1) if EXTERNAL.search(line)]
    assert not bad, f"citations of DESIGN.md/METHODS.md (cite docs/design.md or docs/methods.md): {bad}"


def test_every_cited_docs_page_exists():
    cited = {(m.group(1), str(p.relative_to(ROOT))) for p in SOURCES
             for m in CITED_PAGE.finditer(p.read_text())}
    assert cited, "no source cites a docs page: the check below would be empty"
    missing = sorted((page, where) for page, where in cited if not (DOCS / f"{page}.md").is_file())
    assert not missing, f"docstrings cite docs pages that do not exist: {missing}"


def test_every_cited_section_exists():
    found = 0
    for p in SOURCES:
        text = " ".join(p.read_text().split())  # a citation may wrap across lines
        for m in CITED_SECTION.finditer(text.replace(" docs/", "\ndocs/")):
            found += 1
            heads = _headings(m.group(1))
            assert any(m.group(2).startswith(h) for h in heads), (
                f"{p.relative_to(ROOT)} cites docs/{m.group(1)}.md, {m.group(2)[:40]!r}...: "
                f"no such section (sections: {heads})")
    assert found >= 5


def test_headings_parser_sees_the_method_sections():
    heads = _headings("methods")
    for name in ("LoRA+", "Edge of Chaos", "Depth-µP", "Covariance cleaning"):
        assert name in heads


def _contract_names() -> list[str]:
    text = (DOCS / "design.md").read_text()
    start = text.index("## Public API contract")
    end = text.index("\n## ", start + 1)
    return sorted(set(NAME.findall(text[start:end])))


def test_contract_section_lists_names():
    names = _contract_names()
    assert len(names) > 60
    assert "scalelab.lora.loraplus_param_groups" in names
    assert "scalelab.theory.edge_of_chaos" in names


def _resolve(dotted: str):
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


@pytest.mark.parametrize("dotted", _contract_names())
def test_contract_name_is_importable(dotted):
    try:
        _resolve(dotted)
    except (ImportError, AttributeError) as e:
        pytest.fail(f"docs/design.md lists {dotted}, which does not import: {e}")


def test_resolver_fails_on_a_missing_name():
    with pytest.raises(AttributeError):
        _resolve("scalelab.theory.no_such_function")
