"""Variants of a compiled artifact: what one is, how it is built and loaded, and the registry.

A *variant kind* (``reference``, ``onnx``, later ``cpu``, ``cuda``, ``tensorrt``) is a
:class:`Variant` registered by name. Building one gives zero or more :class:`VariantEntry` s (a
``cpu`` kind gives one entry per CPU level, ``cuda`` one per compute capability plus the
Triton source); each entry says, as plain data in the manifest, what the host must have to run
it (``requires``), so device selection (``neuralc.backends.select``) can judge every entry of
an artifact without loading or even knowing the kind. Loading an entry gives a :class:`Runner`.

The preference order of the kinds is fixed here (:data:`VARIANT_ORDER`): an artifact lists its
entries best first, and selection picks the first one the host can run.

Adding a kind: subclass :class:`Variant` in the kind's own package, decorate it with
:func:`register_variant`, and name its module in ``neuralc.api.build.VARIANT_MODULES``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from neuralc.frontend.model import CompiledModel
from neuralc.ir.core import Module

# Best first. tensorrt is built only when asked for (its engines fit one GPU model and one
# TensorRT version); auto builds the others.
VARIANT_ORDER: tuple[str, ...] = ("tensorrt", "cuda", "cpu", "onnx", "reference")
AUTO_KINDS: tuple[str, ...] = ("cuda", "cpu", "onnx", "reference")


class VariantUnavailable(Exception):
    """This variant cannot be built here (a package, a GPU or a layer is missing); the message
    is the reason recorded in the manifest and shown in the selection report."""


@dataclass
class VariantEntry:
    """One buildable, loadable unit of an artifact.

    ``requires`` keys (all optional; selection knows each, see ``neuralc.backends.select``):
    ``modules`` (Python packages), ``arch``, ``cpu_features``, ``compute_capability`` (exact,
    ``"9.0"``), ``min_compute_capability``, ``gpu_name``, ``tensorrt_version``.
    ``files`` maps member names to bytes when built and to SHA-256 digests in the manifest.
    """

    name: str
    kind: str
    device: str  # "cpu" or "cuda"
    summary: str
    requires: dict[str, Any] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The manifest entry without file digests (``runtime.artifact.pack`` adds them)."""
        return {"name": self.name, "kind": self.kind, "device": self.device,
                "summary": self.summary, "requires": self.requires, "meta": self.meta}

    @classmethod
    def from_json(cls, entry: Mapping[str, Any]) -> VariantEntry:
        return cls(str(entry["name"]), str(entry["kind"]), str(entry.get("device", "cpu")),
                   str(entry.get("summary", "")), dict(entry.get("requires", {})),
                   {}, dict(entry.get("meta", {})))


@dataclass
class BuildInput:
    """What a variant is built from.

    ``tensor_module(target)`` runs the model's ``-O`` tensor pipeline with ``target``'s layout
    (each call a fresh copy); ``weights_file`` is the artifact's ``weights.safetensors`` and
    ``weight_offsets`` each weight's ``(offset, length)`` in it, so a variant may point at the
    weights instead of copying them.
    """

    model: CompiledModel
    weights: dict[str, np.ndarray]
    tensor_module: Callable[[str], Module]
    weights_file: bytes
    weight_offsets: dict[str, tuple[int, int]]
    precision: str = "fp32"
    opt_level: int = 2
    opset: int = 17
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class LoadInput:
    """What a variant is loaded from: the model's graph IR (signature and input checks), the
    weights, the entry and its files (digests already checked), and the GPU index for a
    ``cuda`` device."""

    model: CompiledModel
    weights: dict[str, np.ndarray]
    weights_file: bytes
    entry: VariantEntry
    files: dict[str, bytes]
    gpu: int | None = None


class Runner:
    """A loaded variant. ``run`` takes the inputs already checked against the signature and
    converted (numpy, in input order) and returns numpy outputs. A variant that computes on a
    GPU sets ``native_torch`` and implements ``run_torch`` to take torch tensors where they
    are, without a round trip through host memory."""

    device: str = "cpu"
    native_torch: bool = False

    def run(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def run_torch(self, tensors: list[Any]) -> list[Any]:
        raise NotImplementedError(f"{type(self).__name__} takes numpy arrays only")


class Variant:
    """A variant kind: ``build`` makes its entries, ``load`` makes a runner of one entry."""

    kind: ClassVar[str] = ""
    device: ClassVar[str] = "cpu"
    summary: ClassVar[str] = ""

    def build(self, b: BuildInput) -> list[VariantEntry]:
        """The entries for this model; raise VariantUnavailable saying why there are none."""
        raise NotImplementedError

    def load(self, li: LoadInput) -> Runner:
        raise NotImplementedError


_VARIANTS: dict[str, type[Variant]] = {}


def register_variant(cls: type[Variant]) -> type[Variant]:
    """Class decorator: make a variant kind known to the artifact builder and loader."""
    if cls.kind not in VARIANT_ORDER:
        raise ValueError(f"variant kind '{cls.kind}' has no place in VARIANT_ORDER")
    _VARIANTS[cls.kind] = cls
    return cls


def get_variant(kind: str) -> Variant | None:
    cls = _VARIANTS.get(kind)
    return cls() if cls else None


def registered_kinds() -> list[str]:
    """The kinds this neuralc can build and load, in preference order."""
    return [k for k in VARIANT_ORDER if k in _VARIANTS]


__all__ = ["AUTO_KINDS", "VARIANT_ORDER", "BuildInput", "LoadInput", "Runner", "Variant",
           "VariantEntry", "VariantUnavailable", "get_variant", "register_variant",
           "registered_kinds"]
