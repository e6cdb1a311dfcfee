"""The ``reference`` variant: the optimised tensor IR as text, run by the numpy interpreter.

It runs wherever neuralc does, so it is the last choice of every artifact and the oracle the
other variants are compared with. Loading parses the text with neuralc's IR parser and
verifies it: nothing in the artifact is imported or evaluated as Python.
"""

from __future__ import annotations

import numpy as np

from neuralc.ir.core import Module
from neuralc.ir.parser import IRParseError, parse_module
from neuralc.ir.printer import print_module
from neuralc.ir.verifier import verify
from neuralc.runtime.artifact import ArtifactError
from neuralc.runtime.artifact_variants import (
    BuildInput,
    LoadInput,
    Runner,
    Variant,
    VariantEntry,
    register_variant,
)
from neuralc.runtime.interpreter import Interpreter

MEMBER = "variants/reference/model.nir"


def parse_ir(text: bytes, what: str) -> Module:
    """A verified module from IR text in an artifact; an ArtifactError naming ``what`` if the
    text does not parse or verify (a digest-checked member that fails is not neuralc's own)."""
    try:
        module = parse_module(text.decode("utf-8"), what)
    except (IRParseError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{what}: the IR does not parse ({e})") from None
    problems = verify(module)
    if problems:
        raise ArtifactError(f"{what}: the IR is invalid ({problems[0]})")
    return module


class ReferenceRunner(Runner):
    """The interpreter over the tensor IR; the init function ran once, at load."""

    device = "cpu"

    def __init__(self, module: Module, weights: dict[str, np.ndarray]):
        self.interpreter = Interpreter(module).load(weights)

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        return self.interpreter.run(arrays)


@register_variant
class ReferenceVariant(Variant):
    kind = "reference"
    device = "cpu"
    summary = "the optimised tensor IR in neuralc's numpy interpreter"

    def build(self, b: BuildInput) -> list[VariantEntry]:
        text = print_module(b.tensor_module("reference")) + "\n"
        return [VariantEntry("reference", self.kind, self.device, self.summary,
                             requires={}, files={MEMBER: text.encode()},
                             meta={"opt_level": b.opt_level, "precision": b.precision})]

    def load(self, li: LoadInput) -> Runner:
        module = parse_ir(li.files[MEMBER], MEMBER)
        return ReferenceRunner(module, li.weights)
