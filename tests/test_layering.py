"""Imports read top-down: no module of neuralc imports a layer above its own.

The order is the one docs/ARCHITECTURE.md draws. Every import counts, including those inside
functions and under ``TYPE_CHECKING``: a lazy import upward is still a dependency upward.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "neuralc"

# Lowest first. Modules on one rank may import each other only within their own package.
RANKS: list[tuple[str, ...]] = [
    ("limits", "files"),
    ("location",),
    ("diagnostics",),
    ("ir",),
    ("layers",),
    ("frontend", "passes"),
    ("runtime", "report", "docs"),
    ("driver",),
    ("backends",),
    ("api",),
    ("bench",),
    ("commands",),
    ("cli",),
    ("__init__",),
]
RANK = {part: i for i, parts in enumerate(RANKS) for part in parts}


def _part(module: str) -> str:
    """The layer of a dotted ``neuralc...`` module name: its first component below neuralc."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "neuralc":
                out += [(node.lineno, f"neuralc.{a.name}") for a in node.names]
            elif node.module.startswith("neuralc."):
                out.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names if a.name.startswith("neuralc.")]
    return out


def _modules() -> list[Path]:
    return sorted(ROOT.rglob("*.py"))


def test_every_layer_is_ranked() -> None:
    parts = {_part(".".join(p.relative_to(ROOT.parent).with_suffix("").parts)) for p in _modules()}
    assert parts <= set(RANK), f"unranked parts of neuralc: {sorted(parts - set(RANK))}"


@pytest.mark.parametrize("path", _modules(), ids=lambda p: str(p.relative_to(ROOT.parent)))
def test_no_upward_import(path: Path) -> None:
    here = _part(".".join(path.relative_to(ROOT.parent).with_suffix("").parts))
    upward = []
    for line, target in _imports(path):
        there = _part(target)
        if there != here and RANK[there] >= RANK[here]:
            upward.append(f"{path.name}:{line} imports {target} ({there} is not below {here})")
    assert not upward, "\n".join(upward)


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The checker itself: a lazy import of passes from ir is found."""
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from neuralc.passes.cse import CSEPass\n")
    assert _imports(f) == [(2, "neuralc.passes.cse")]
    assert RANK[_part("neuralc.passes.cse")] > RANK["ir"]
