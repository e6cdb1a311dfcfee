"""FLOPs per kernel, in the figures ``neuralc check`` prints.

``neuralc check`` counts FLOPs per layer (each catalog entry's rule, per sample). A kernel
holds ops of one or more layers, and a layer's ops may spread over several kernels (Dense with
a softmax: the matmul in one, the softmax in the next). Each layer's FLOPs (times the batch)
are split over the kernels that hold its ops, in proportion to the arithmetic of those ops
(a matmul's multiply-adds, one operation per element of an elementwise op, none for a reshape
or a transpose), with whole numbers that add up exactly. So the kernels' FLOPs add up to
``check``'s total, less the layers that no kernel runs per inference (BatchNorm folded into
the weights at load time, Dropout removed), which are reported apart.

Ops find their layer by source location: the lowering gives every tensor op the location of
its layer (a macro use site's too), and passes keep it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from neuralc.ir.core import Module, Op, func_body
from neuralc.ir.dims import product
from neuralc.location import FusedLoc
from neuralc.passes.analysis import eval_dim, kernel_ops

# Ops that move data without arithmetic.
_MOVES = {"tensor.reshape", "tensor.transpose", "tensor.broadcast", "tensor.slice",
          "tensor.concat", "tensor.gather", "tensor.reverse", "tensor.pad", "tensor.constant",
          "tensor.cast", "tensor.iota", "kernel.yield", "tensor.scan_yield"}


@dataclass
class LayerFlops:
    name: str
    flops: int


def _elems(t, sizes: dict[str, int]) -> int:
    return int(eval_dim(product(t.shape), sizes)) if t.shape is not None else 0


def op_work(op: Op, sizes: dict[str, int]) -> int:
    """The arithmetic of one tensor op (multiply-adds count two), for splitting a layer."""
    if op.name in _MOVES:
        return 0
    out = sum(_elems(r.type, sizes) for r in op.results)
    if op.name == "tensor.matmul":
        k = op.operands[0].type.shape[-1]
        return 2 * out * int(eval_dim(k, sizes))
    if op.name == "tensor.conv":
        w = op.operands[1].type.shape
        cout = w[-1] if op.attributes.get("weight_layout") == "hwio" else w[0]
        return 2 * out * _elems(op.operands[1].type, sizes) // max(int(eval_dim(cout, sizes)), 1)
    if op.name == "tensor.conv_transpose":
        ins = _elems(op.operands[0].type, sizes)
        chans = int(eval_dim(op.operands[0].type.shape[-1], sizes)) or 1
        return 2 * ins * _elems(op.operands[1].type, sizes) // chans
    if op.name == "tensor.attention":
        keys = int(eval_dim(op.operands[1].type.shape[-2], sizes))
        return 4 * out * keys
    if op.name == "tensor.reduce":
        return _elems(op.operands[0].type, sizes)
    if op.name == "tensor.pool":
        window = 1
        for w in op.attributes.get("window", []):
            window *= int(w)
        return out * window
    if op.regions:  # a scan: its body's work for every step (an estimate: one step per row)
        body = sum(op_work(o, sizes) for r in op.regions for b in r.blocks for o in b.ops)
        steps = op.operands[0].type.shape[1] if len(op.operands[0].type.shape or ()) > 1 else 1
        return body * int(eval_dim(steps, sizes))
    return out


def _keys(loc: object) -> list[object]:
    """The locations an op may share with its layer (a fused location: each of its parts)."""
    return list(loc.locs) if isinstance(loc, FusedLoc) else [loc]


def layer_flops(graph: Module, sizes: dict[str, int], batch: int) -> dict[object, list[LayerFlops]]:
    """The layers of the graph IR by location, with their FLOPs per inference at ``sizes``."""
    from neuralc.layers import catalog

    out: dict[object, list[LayerFlops]] = defaultdict(list)
    for op in func_body(graph.funcs[0]).ops:
        spec = catalog.by_op(op.name)
        if spec is None:
            continue
        ins = [v.type for v in op.operands]
        outs = [r.type for r in op.results]
        per_sample = int(eval_dim(spec.flops(op.attributes, ins, outs), sizes))
        out[op.location].append(LayerFlops(str(op.attributes.get("name")), per_sample * batch))
    return out


def _body(op: Op) -> Iterable[Op]:
    if op.name == "kernel.fused":
        return [o for o in op.regions[0].blocks[0].ops if o.name != "kernel.yield"]
    return [op]


def _split(total: int, shares: list[tuple[str, int]]) -> dict[str, int]:
    """``total`` split in proportion to the shares, in whole numbers that add up to it."""
    weight = sum(w for _, w in shares)
    exact = [(k, total * w / weight) for k, w in shares]
    out = {k: int(v) for k, v in exact}
    rest = total - sum(out.values())
    for k, _ in sorted(exact, key=lambda kv: kv[1] - int(kv[1]), reverse=True)[:rest]:
        out[k] += 1
    return out


@dataclass
class KernelFlops:
    per_kernel: dict[str, int]  # kernel name -> FLOPs per inference
    outside: list[LayerFlops]  # layers no kernel runs per inference (folded, removed)


def kernel_flops(tensor: Module, graph: Module, sizes: dict[str, int],
                 batch: int) -> KernelFlops:
    """Each kernel's share of the layers' FLOPs (see the module docstring)."""
    layers = layer_flops(graph, sizes, batch)
    # location -> [(kernel, work of its ops of that location)]
    work: dict[object, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    elems: dict[object, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    names: list[str] = []
    for func in tensor.networks:
        for k in kernel_ops(func):
            name = str(k.attributes.get("name")) if k.name == "kernel.fused" else k.name
            names.append(name)
            for op in _body(k):
                key = next((c for c in _keys(op.location) if c in layers), None)
                if key is None:
                    continue
                work[key][name] += op_work(op, sizes)
                elems[key][name] += sum(_elems(r.type, sizes) for r in op.results)
    per_kernel = dict.fromkeys(names, 0)
    outside: list[LayerFlops] = []
    for key, group in layers.items():
        total = sum(layer.flops for layer in group)
        shares = [(n, w) for n, w in work.get(key, {}).items() if w > 0]
        if not shares:  # only data movement left: split by the elements written
            shares = [(n, w) for n, w in elems.get(key, {}).items() if w > 0]
        if not shares:
            outside += [layer for layer in group if layer.flops]
            continue
        for name, f in _split(total, shares).items():
            per_kernel[name] += f
    return KernelFlops(per_kernel, outside)
