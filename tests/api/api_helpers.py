"""Paths the API tests share (a module with a unique name: tests/ is not a package)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.nr"))
MNIST = ROOT / "examples" / "mnist_cnn.nr"
TWO_INPUTS = ROOT / "examples" / "two_inputs.nr"
SEQUENCE = ROOT / "examples" / "sequence_dims.nr"
TEXT = ROOT / "examples" / "text_embedding.nr"
