"""The layer cases every target's parity tests run (layer_cases.py) cover the whole catalog."""

from __future__ import annotations

from layer_cases import CASES, MULTI, net

from neuralc.driver import compile_source
from neuralc.layers import catalog


def test_the_cases_cover_every_catalog_layer() -> None:
    seen: set[str] = set()
    for text in [net(c[1], c[2]) for c in CASES] + [m[1] for m in MULTI]:
        for op in compile_source(text, "case.nr").module.walk():
            seen.add(op.name)
            inner = op.attributes.get("layer")
            if isinstance(inner, dict):
                seen.add(catalog.inner_layer(inner)[0].op_name)
    missing = sorted(s.name for s in catalog.all_specs() if s.op_name not in seen)
    assert missing == []
