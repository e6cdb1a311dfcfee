"""Pass registry: names to pass classes, so pipelines and ``--passes=a,b`` can name them."""

from __future__ import annotations

import importlib

from neuralc.diagnostics import did_you_mean
from neuralc.passes.base import Pass

_PASSES: dict[str, type[Pass]] = {}

# Each module registers its pass on import.
_PASS_MODULES = (
    "neuralc.passes.shape_infer",
    "neuralc.passes.verify",
    "neuralc.passes.lower_to_tensor",
    "neuralc.passes.dce",
    "neuralc.passes.cse",
    "neuralc.passes.canonicalize",
    "neuralc.passes.simplify_inference",
    "neuralc.passes.fold_batchnorm",
    "neuralc.passes.layout",
    "neuralc.passes.fusion",
    "neuralc.passes.precision",
    "neuralc.passes.memory_plan",
)
_loaded = False


def register_pass(cls: type[Pass]) -> type[Pass]:
    if not cls.name or cls.name in _PASSES:
        raise ValueError(f"pass name {cls.name!r} missing or registered twice")
    _PASSES[cls.name] = cls
    return cls


def _load() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for m in _PASS_MODULES:
            importlib.import_module(m)


def pass_names() -> list[str]:
    _load()
    return sorted(_PASSES)


def get_pass(name: str) -> type[Pass]:
    _load()
    if name not in _PASSES:
        raise KeyError(
            f"unknown pass '{name}'{did_you_mean(name, _PASSES)}; "
            f"known passes: {', '.join(sorted(_PASSES))}"
        )
    return _PASSES[name]


def parse_pipeline(text: str) -> list[Pass]:
    """``"shape-infer,verify"`` -> pass instances (KeyError with a suggestion on a bad name)."""
    return [get_pass(n.strip())() for n in text.split(",") if n.strip()]
