"""docs/layers.md is generated from the catalog; this fails when it drifts (run `make docs`)."""

from pathlib import Path

from neuralc.docs import layer_reference
from neuralc.layers import catalog

ROOT = Path(__file__).resolve().parents[2]


def test_layer_reference_is_up_to_date():
    assert (ROOT / "docs" / "layers.md").read_text() == layer_reference(), (
        "docs/layers.md is stale: run `make docs`"
    )


def test_every_layer_is_documented():
    text = layer_reference()
    for spec in catalog.all_specs():
        assert spec.doc, f"{spec.name} has no doc line"
        assert spec.example, f"{spec.name} has no example"
        assert f"| {spec.name}" in text
