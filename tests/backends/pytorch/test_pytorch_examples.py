"""Every bundled example through the pytorch target: the generated module, imported from a
temporary file, loads neuralc's weights (its seeded initial weights, then the same with the
constant-initialised tensors varied) through safetensors with strict=True and computes what the
reference interpreter computes, at two batch sizes and two values of every other symbolic dim
(tolerance: float32, rtol 1e-4, atol 1e-5; see pytorch_target_helpers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from pytorch_target_helpers import check_parity, generate

from neuralc.driver import compile_file
from neuralc.runtime.weights import init_weights, weight_specs

EXAMPLES = sorted(Path(__file__).resolve().parents[3].joinpath("examples").glob("*.nr"))


def test_examples_exist() -> None:
    assert len(EXAMPLES) >= 9


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_matches_reference(path: Path, tmp_path: Path) -> None:
    model = compile_file(path)
    module, _ = generate(model, tmp_path)
    net = module.build_model()
    specs = weight_specs(model.module)
    state = net.state_dict()
    assert list(state) == list(specs)  # the same names, in neuralc's program order
    for name, spec in specs.items():
        assert tuple(state[name].shape) == spec.shape, name
    check_parity(model, module, tmp_path, weights=init_weights(model.module, seed=0))
    check_parity(model, module, tmp_path)  # BatchNorm statistics etc. away from their init


def test_generated_examples_pass_ruff(tmp_path: Path) -> None:
    """The generated files are ordinary, lint-clean Python (the project's ruff rules)."""
    files = []
    for path in EXAMPLES:
        out = tmp_path / path.stem
        out.mkdir()
        files.append(str(generate(compile_file(path), out)[1]))
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "--isolated", "--line-length",
         "100", "--target-version", "py310", "--select", "E,F,W,I,B,UP,SIM",
         "--ignore", "UP007,SIM102,B905", *files],
        capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
