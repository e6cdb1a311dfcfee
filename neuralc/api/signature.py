"""A compiled model's signature: its inputs and outputs with symbolic dims, ranges and dtypes.

Read from the shape-checked graph IR, written into the artifact's manifest, and shown as
``model.signature``. Every variant of an artifact shares it: float inputs and outputs are
float32 whatever the precision inside (the onnx variant keeps its I/O in float32).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from neuralc.ir.core import Module, func_return, network_inputs
from neuralc.ir.dims import dim_facts, symbols
from neuralc.runtime.signature import input_names, select_func

DTYPE_NAMES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "f64": "float64",
               "i64": "int64", "i32": "int32", "i8": "int8", "i1": "bool"}


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: its name, shape (ints, and symbols or expressions as text)."""

    name: str
    shape: tuple[int | str, ...]
    dtype: str

    def __str__(self) -> str:
        return f"{self.name}: ({', '.join(str(d) for d in self.shape)}) {self.dtype}"


@dataclass(frozen=True)
class DimSpec:
    """A symbolic dim: its allowed range (None: open), step, and nominal size."""

    name: str
    min: int | None = None
    max: int | None = None
    step: int = 1
    nominal: int | None = None

    def __str__(self) -> str:
        if self.min is None and self.max is None:
            text = f"{self.name}: any size"
        else:
            lo = "1" if self.min is None else str(self.min)
            hi = "" if self.max is None else str(self.max)
            text = f"{self.name}: {lo}..{hi}"
        text += f" step {self.step}" if self.step > 1 else ""
        return text + ("" if self.nominal is None else f" (nominal {self.nominal})")


@dataclass(frozen=True)
class Signature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dims: tuple[DimSpec, ...]

    @property
    def input_names(self) -> list[str]:
        return [t.name for t in self.inputs]

    def __str__(self) -> str:
        lines = ["inputs:"] + [f"  {t}" for t in self.inputs]
        lines += ["outputs:"] + [f"  {t}" for t in self.outputs]
        if self.dims:
            lines += ["dims:"] + [f"  {d}" for d in self.dims]
        return "\n".join(lines)

    @classmethod
    def from_module(cls, module: Module) -> Signature:
        """The signature of the module's network (graph or tensor IR)."""
        func = select_func(module)
        args = network_inputs(func)
        inputs = tuple(_spec(n, a.type) for n, a in zip(input_names(func), args))
        returned = list(func_return(func).operands)
        outputs = tuple(_spec(_output_name(v, i, len(returned)), v.type)
                        for i, v in enumerate(returned))
        ranges = module.attributes.get("dims") or {}
        nominal = module.attributes.get("dim_nominal") or {}
        names: list[str] = []
        for t in (*args, *returned):
            for d in t.type.shape or ():
                names += [s for s in sorted(symbols(d)) if s not in names]
        dims = []
        for s in names:
            lo, hi, step = dim_facts(ranges.get(s))
            dims.append(DimSpec(s, lo, hi, step, nominal.get(s)))
        return cls(inputs, outputs, tuple(dims))

    def to_json(self) -> dict[str, Any]:
        def t(x: TensorSpec) -> dict[str, Any]:
            return {"name": x.name, "shape": list(x.shape), "dtype": x.dtype}

        return {"inputs": [t(x) for x in self.inputs], "outputs": [t(x) for x in self.outputs],
                "dims": [{"name": d.name, "min": d.min, "max": d.max, "step": d.step,
                          "nominal": d.nominal} for d in self.dims]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Signature:
        def t(x: Mapping[str, Any]) -> TensorSpec:
            return TensorSpec(str(x["name"]), tuple(x["shape"]), str(x["dtype"]))

        return cls(tuple(t(x) for x in data["inputs"]), tuple(t(x) for x in data["outputs"]),
                   tuple(DimSpec(str(d["name"]), d.get("min"), d.get("max"),
                                 int(d.get("step") or 1), d.get("nominal"))
                         for d in data.get("dims", [])))


def _spec(name: str, t: Any) -> TensorSpec:
    shape = tuple(d if isinstance(d, int) else str(d) for d in (t.shape or ()))
    return TensorSpec(name, shape, DTYPE_NAMES.get(t.dtype, t.dtype))


def _output_name(v: Any, i: int, n: int) -> str:
    """The layer that produces an output names it (``output``); else ``output<i>``."""
    op = getattr(v, "op", None)
    name = op.attributes.get("name") if op is not None else None
    if isinstance(name, str):
        return name
    return "output" if n == 1 else f"output{i}"
