"""Every document the docs point at is in the repository (issue 15): relative markdown links
and backquoted ``.md`` paths in README.md and docs/ resolve inside the checkout."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")
MD_PATH = re.compile(r"`([\w./-]+\.md)`")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_reference_resolves_inside_the_repository(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    refs = [m for m in LINK.findall(text) if "://" not in m] + MD_PATH.findall(text)
    for ref in refs:
        target = (doc.parent / ref).resolve()
        if not target.exists():  # a bare name may be meant from the repository root
            target = (ROOT / ref).resolve()
        assert target.exists(), f"{doc.name} points at {ref}, which is not in the repository"
        assert ROOT in target.parents, f"{doc.name} points outside the repository: {ref}"


def test_docs_cite_no_document_by_section_of_another_repository() -> None:
    for doc in DOCS:
        assert not re.search(r"\bDSL\.md\b|\bDESIGN\.md\b", doc.read_text(encoding="utf-8")), doc
