"""The generated Keras module: header, custom layers, build_model, the weights loader, the
training set-up and a command line, assembled from the emitters' pieces.

The graph IR is walked once in program order; every op becomes one line
``result = <Keras layer>(<inputs>)`` of a functional model, named as neuralc names the layer.
Every layer that cannot be written is collected first and reported together, each at its
``.nr`` line.
"""

from __future__ import annotations

from pathlib import Path

from neuralc.backends import pysource
from neuralc.backends.base import BackendError, BackendOptions
from neuralc.backends.keras.pycode import identifier, literal, wrap
from neuralc.backends.keras.registry import (
    CANNOT_EXPRESS,
    Gen,
    KerasLayer,
    LayerOp,
    Unsupported,
    emitter_for,
)
from neuralc.backends.keras.snippets import SNIPPETS, with_dependencies
from neuralc.backends.keras.training import TrainingError, training_source
from neuralc.diagnostics import Diagnostic
from neuralc.frontend.model import CompiledModel
from neuralc.ir.core import Op, Value, func_body
from neuralc.ir.types import TensorType
from neuralc.layers import catalog
from neuralc.runtime.signature import select_func
from neuralc.runtime.weights import weight_specs

TARGET = "keras"
KERAS_DTYPES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16", "f64": "float64",
                "i64": "int64", "i32": "int32", "i8": "int8"}
# --precision / execution { precision } -> Keras dtype policy (None: float32 throughout).
DTYPE_POLICIES = {"fp32": None, "mixed": "mixed_float16", "fp16": "float16", "bf16": "bfloat16"}


def layer_op(op: Op) -> LayerOp:
    spec = catalog.by_op(op.name)
    assert spec is not None
    name = str(op.attributes.get("name"))
    return LayerOp(spec, op.attributes, [v.type for v in op.operands],
                   [r.type for r in op.results], name, name, "", op.location)


def emit_layer(op: Op, gen: Gen) -> KerasLayer | str:
    """The Keras layer of one graph op, or why it cannot be written (a string)."""
    spec = catalog.by_op(op.name) if op.dialect == "graph" else None
    if spec is None:
        return f"'{op.name}' is not a layer of the catalog"
    if spec.name in CANNOT_EXPRESS:
        return CANNOT_EXPRESS[spec.name]
    fn = emitter_for(spec)
    if fn is None:
        return "the keras target has no emitter for this layer yet"
    try:
        return fn(layer_op(op), gen)
    except Unsupported as e:
        return str(e)


def unsupported_reason(op: Op) -> str | None:
    """Why ``op`` cannot be written for Keras, or None if it can."""
    layer = emit_layer(op, Gen())
    return layer if isinstance(layer, str) else None


def _error(op: Op, reason: str) -> Diagnostic:
    spec = catalog.by_op(op.name)
    kind = spec.name if spec else op.name
    return Diagnostic("error", f"{TARGET} cannot express {kind} '{op.attributes.get('name')}': "
                               f"{reason}", op.location)


def _shape(t: TensorType) -> tuple:
    """A Keras shape (no batch axis): symbolic dims are None."""
    assert t.shape is not None
    return tuple(d if isinstance(d, int) else None for d in t.shape[1:])


class ModuleWriter:
    """Builds the text of one generated module."""

    def __init__(self, model: CompiledModel, options: BackendOptions):
        self.model = model
        self.options = options
        self.func = select_func(model.module, None if len(model.module.funcs) == 1
                                else model.info.name)
        self.gen = Gen()
        self.gen.use("_model_settings", "_read_safetensors", "_set")
        self.names: dict[Value, str] = {}
        self.taken: set[str] = set()
        self.build_lines: list[str] = []
        self.weight_lines: list[str] = []
        self.errors: list[Diagnostic] = []

    # -- build_model ---------------------------------------------------------------------------

    def _inputs(self) -> list[tuple[str, tuple, str]]:
        out = []
        for i, a in enumerate(func_body(self.func).args):
            name = a.name_hint or f"input_{i}"
            out.append((name, _shape(a.type), KERAS_DTYPES[a.type.dtype]))
            var = identifier(name, self.taken)
            self.names[a] = var
            self.build_lines.append(
                f"{var} = keras.Input(shape={literal(_shape(a.type))}, "
                f"dtype={literal(KERAS_DTYPES[a.type.dtype])}, name={literal(name)})")
        return out

    def _op(self, op: Op) -> None:
        name = str(op.attributes.get("name", op.name.split(".")[-1]))
        results = [identifier(name if i == 0 else f"{name}_state{i}", self.taken)
                   for i in range(len(op.results))]
        for r, var in zip(op.results, results):
            self.names[r] = var  # named even if the op fails, so later ops report their own
        layer = emit_layer(op, self.gen)
        if isinstance(layer, str):
            self.errors.append(_error(op, layer))
            return
        self._write_layer(op, layer_op(op), layer, results)

    def _write_layer(self, op: Op, lop: LayerOp, layer: KerasLayer, results: list[str]) -> None:
        ins = [self.names[v] for v in op.operands]
        kw = f", {layer.call_kwargs}" if layer.call_kwargs else ""
        if layer.call == "one":
            expr = f"{layer.ctor}({ins[0]}{kw})"
        elif layer.call == "list":
            expr = f"{layer.ctor}([{', '.join(ins)}]{kw})"
        elif layer.call == "attention":  # query, then the context (or the query itself)
            expr = f"{layer.ctor}({ins[0]}, {ins[-1]}{kw})"
        elif layer.call == "attention_list":  # [query, value(, key)]
            seq = ins if len(ins) > 1 else [ins[0], ins[0]]
            expr = f"{layer.ctor}([{', '.join(seq)}]{kw})"
        else:
            raise AssertionError(layer.call)
        for then in layer.then:
            pre = identifier(f"{lop.name}_pre", self.taken)
            self.build_lines.append(f"{pre} = {expr}")
            expr = f"{then}({pre})"
        self.build_lines.append(f"{', '.join(results)} = {expr}")
        for path, arrays in layer.weights:
            self.weight_lines.append(f"_set(model.get_layer({literal(lop.name)}){path}, {arrays})")

    # -- the whole module ------------------------------------------------------------------------

    def write(self) -> str:
        body = func_body(self.func)
        inputs = self._inputs()
        outputs: list[str] = []
        for op in body.ops:
            if op.name == "func.return":
                outputs = [self.names[v] for v in op.operands]
            else:
                self._op(op)
        cfg = self.model.info.training
        try:
            train_src = training_source(cfg, self.func.location)
        except TrainingError as e:
            self.errors.append(e.diagnostic)
            train_src = ""
        if self.errors:
            raise BackendError(self.errors)
        return self._assemble(inputs, outputs, train_src)

    def _assemble(self, inputs: list[tuple[str, tuple, str]], outputs: list[str],
                  train_src: str) -> str:
        network = self.model.info.name
        source = Path(self.model.filename).name
        precision = self.options.precision if self.options.precision != "fp32" else \
            self.model.info.training.precision
        policy = DTYPE_POLICIES.get(precision)
        in_vars = [self.names[a] for a in func_body(self.func).args]
        ins = in_vars[0] if len(in_vars) == 1 else "[" + ", ".join(in_vars) + "]"
        outs = outputs[0] if len(outputs) == 1 else "[" + ", ".join(outputs) + "]"
        specs = weight_specs(self.model.module, self.func.attributes.get("sym_name"))
        snippets = "\n\n".join(SNIPPETS[n] for n in with_dependencies(self.gen.helpers))
        build = "".join("        " + "\n        ".join(wrap(line, 8)) + "\n"
                        for line in self.build_lines)
        build = ("    with _model_settings():\n" + build
                 + f"        return keras.Model(inputs={ins}, outputs={outs}, name=NETWORK)\n")
        shapes = "".join(f"    {literal(n)}: {literal(tuple(s.shape))},\n"
                         for n, s in specs.items())
        loads = "".join("    " + "\n    ".join(wrap(line, 4)) + "\n" for line in self.weight_lines)
        parts = [
            HEADER.format(network=network, source=pysource.doc(source),
                          file=pysource.doc(Path(source).stem + ".py"),
                          usage=pysource.doc(_usage(inputs))),
            IMPORTS + "\n"
            f"NETWORK = {literal(network)}\n"
            "# Each input: name -> (shape without the batch axis, None where symbolic; dtype).\n"
            "INPUTS = {\n"
            + "".join(f"    {literal(n)}: ({literal(s)}, {literal(d)}),\n" for n, s, d in inputs)
            + "}\n"
            "# The weights neuralc compiled in, written beside this file under its name.\n"
            'WEIGHTS_FILE = Path(__file__).with_suffix(".safetensors")\n'
            f"DTYPE_POLICY = {literal(policy)}\n",
            snippets,
            "def build_model() -> keras.Model:\n"
            '    """The network as a functional keras.Model; layers carry neuralc\'s names."""\n'
            + build,
            "# -- weights: neuralc's names and PyTorch layouts, converted to Keras's "
            + "-" * 26 + "\n\n"
            "WEIGHT_SHAPES = {\n" + shapes + "}\n\n\n"
            "def load_weights_safetensors(model: keras.Model, path: str | Path) -> None:\n"
            '    """Set every layer\'s weights from a neuralc/PyTorch safetensors file.\n\n'
            "    The file must hold exactly WEIGHT_SHAPES (a PyTorch state_dict of the same\n"
            "    network does; BatchNorm's num_batches_tracked may be left out).\n"
            '    """\n'
            "    _assign_weights(model, _read_safetensors(path, WEIGHT_SHAPES))\n\n\n"
            "def _assign_weights(model: keras.Model, t: dict[str, np.ndarray]) -> None:\n"
            '    """Set the layers\' weights from neuralc\'s tensors ``t``, converting each\n'
            '    layout to Keras\'s as its line says."""\n'
            + (loads if loads else "    return None\n"),
            train_src,
            TRAIN_AND_MAIN,
        ]
        text = "\n\n".join(p.rstrip("\n") + "\n" for p in parts if p)
        if "ops." not in snippets:  # only the custom layers use keras.ops
            text = text.replace("from keras import layers, ops\n", "from keras import layers\n")
        return text


def _usage(inputs: list[tuple[str, tuple, str]]) -> str:
    def show(shape: tuple) -> str:
        dims = ["batch", *("?" if d is None else str(d) for d in shape)]
        return "(" + ", ".join(dims) + ")"

    return "\n".join(f"    {n}: {show(s)} {d}" for n, s, d in inputs)


def generate(model: CompiledModel, options: BackendOptions) -> str:
    """The Keras module for ``model``; raises BackendError listing every layer it cannot write."""
    return ModuleWriter(model, options).write()


HEADER = '''"""{network} as a Keras 3 model, generated by neuralc from {source}.

build_model() returns the keras.Model (functional API, layers named as neuralc names them);
load_weights_safetensors(model, path) sets its weights from neuralc's weights file (PyTorch
names and layouts, converted here); train(x, y) compiles and fits it as the model file's loss,
optimizer, metrics and train sections say.

Keras picks its backend from KERAS_BACKEND; this file sets none (it was tested with
KERAS_BACKEND=torch). It needs keras, numpy and safetensors. From the command line:

    python {file} predict -x x.npy [-o y.npy]
    python {file} train -x x.npy -y y.npy [--epochs N] [--save m.keras]
        [--out w.safetensors]

train --out writes neuralc's weights file (run it with neuralc run --weights); predict and
train --weights read either a safetensors file or a .keras file that train --save wrote.

Inputs (one .npy file each, in this order, or NAME=FILE):
{usage}
"""'''

IMPORTS = """from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import keras
import numpy as np
from keras import layers, ops
"""

TRAIN_AND_MAIN = '''def save_weights_safetensors(model: keras.Model, path: str | Path) -> None:
    """Write the model's weights as neuralc's safetensors file (PyTorch names and layouts):
    the inverse of load_weights_safetensors, so neuralc runs a model trained here.

    Each conversion only moves values, so the inverse is found by loading one probe tensor
    at a time (its elements numbered 1, 2, ...) and reading where they land; where two
    tensors land on one Keras weight (an LSTM's two biases, which Keras sums), the first gets
    the value and the others zero, which keeps their sum.
    """
    from safetensors.numpy import save_file

    variables = model.weights
    values = [np.array(keras.ops.convert_to_numpy(v)) for v in variables]
    taken = [np.zeros(v.shape, bool) for v in values]
    names = [n for n in WEIGHT_SHAPES if not n.endswith(".num_batches_tracked")]
    zeros = {n: np.zeros(s, np.float32) for n, s in WEIGHT_SHAPES.items()}
    out: dict[str, np.ndarray] = {}
    try:
        for name in names:
            shape = WEIGHT_SHAPES[name]
            probe = np.arange(1, int(np.prod(shape, dtype=np.int64)) + 1, dtype=np.float32)
            _assign_weights(model, {**zeros, name: probe.reshape(shape)})
            flat = np.zeros(probe.size, np.float32)
            for var, value, used in zip(variables, values, taken):
                where = np.array(keras.ops.convert_to_numpy(var)).astype(np.int64)
                hit = (where > 0) & ~used
                flat[where[hit] - 1] = value[hit]
                used |= where > 0
            out[name] = flat.reshape(shape)
    finally:
        for var, value in zip(variables, values):
            var.assign(value)
    save_file(out, str(path), metadata={"neuralc_layout": "channels_last"})


def _load_any_weights(model: keras.Model, path: str | Path) -> None:
    """A safetensors file (neuralc's names) or a .keras file written by train --save."""
    if str(path).endswith(".keras"):
        model.load_weights(str(path))  # its weights only: no code or config is loaded
    else:
        load_weights_safetensors(model, path)


def compile_model(model: keras.Model, loss=None) -> keras.Model:
    """Compile with the model file's optimizer, loss and metrics."""
    model.compile(optimizer=make_optimizer(), loss=loss if loss is not None else make_loss(),
                  metrics=METRICS)
    return model


def train(x, y, model: keras.Model | None = None, *, epochs: int = EPOCHS,
          batch_size: int = BATCH_SIZE, validation_split: float = VALIDATION_SPLIT,
          loss=None, verbose="auto") -> keras.Model:
    """Compile and fit ``model`` (a new one from build_model() if None) on ``x``, ``y``.

    ``x`` is one array or, for several inputs, a list in INPUTS order or a dict by name.
    Returns the trained model; its ``history`` attribute holds Keras's History.
    """
    if model is None:
        model = build_model()
    compile_model(model, loss)
    model.fit(x, y, epochs=epochs, batch_size=batch_size, validation_split=validation_split,
              verbose=verbose)
    return model


# -- command line ----------------------------------------------------------------------------------


def _load_npy(path: str) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)  # data only: never unpickle
    except (OSError, ValueError) as e:
        raise SystemExit(f"error: cannot read {path}: {e}") from None
    if not isinstance(array, np.ndarray):
        raise SystemExit(f"error: {path} holds several arrays; give one .npy file per input")
    return array


def _model_inputs(specs: list[str]):
    """The arrays of --input FILE (in INPUTS order) or --input NAME=FILE, checked."""
    names = list(INPUTS)
    if any("=" in s for s in specs):
        pairs = dict(s.split("=", 1) for s in specs if "=" in s)
        if len(pairs) != len(specs) or set(pairs) != set(names):
            raise SystemExit(f"error: give every input as NAME=FILE; the inputs are "
                             f"{', '.join(names)}")
        paths = [pairs[n] for n in names]
    else:
        if len(specs) != len(names):
            raise SystemExit(f"error: {NETWORK} takes {len(names)} input(s) "
                             f"({', '.join(names)}), got {len(specs)}")
        paths = specs
    arrays = []
    for name, path in zip(names, paths):
        array = _load_npy(path)
        shape, dtype = INPUTS[name]
        if array.ndim != len(shape) + 1 or any(
                d is not None and d != n for d, n in zip(shape, array.shape[1:])):
            want = ", ".join(["batch", *("?" if d is None else str(d) for d in shape)])
            raise SystemExit(f"error: input '{name}' ({path}) has shape {array.shape}, "
                             f"expected ({want})")
        if dtype.startswith("int") and array.dtype.kind not in "iu":
            raise SystemExit(f"error: input '{name}' takes integer indices, got {array.dtype}")
        arrays.append(array.astype(dtype))
    return arrays[0] if len(arrays) == 1 else arrays


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=f"Run or train {NETWORK} with Keras.")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in ("predict", "train"):
        p = sub.add_parser(command)
        p.add_argument("--input", "-x", action="append", required=True,
                       metavar="[NAME=]FILE.npy", help="an input array; repeat for each input")
        p.add_argument("--weights", "-w", metavar="FILE",
                       help="weights to start from: .safetensors (neuralc's) or .keras (train "
                       f"--save's); default: {WEIGHTS_FILE.name} if present")
        p.add_argument("--no-weights", action="store_true",
                       help="start from Keras's initialisers, not a weights file")
        if command == "predict":
            p.add_argument("--output", "-o", metavar="FILE.npy", help="save the output(s)")
        else:
            p.add_argument("--labels", "-y", action="append", required=True,
                           metavar="FILE.npy", help="the targets; repeat for each output")
            p.add_argument("--epochs", type=int, default=EPOCHS)
            p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
            p.add_argument("--validation-split", type=float, default=VALIDATION_SPLIT)
            p.add_argument("--loss", help="a Keras loss name, instead of the model file's")
            p.add_argument("--save", metavar="FILE.keras", help="save the trained model")
            p.add_argument("--out", metavar="FILE.safetensors",
                           help="save the trained weights as neuralc's safetensors file")
    args = parser.parse_args(argv)
    x = _model_inputs(args.input)
    model = build_model()
    weights = None if args.no_weights else (
        args.weights or (WEIGHTS_FILE if WEIGHTS_FILE.exists() else None))
    if weights is not None:
        _load_any_weights(model, weights)
    else:
        print("note: no weights file; starting from Keras's initialisers", file=sys.stderr)
    if args.command == "predict":
        result = model.predict(x, verbose=0)
        # Saved as float32 whatever DTYPE_POLICY computed in (numpy has no bfloat16).
        outputs = [np.asarray(y, dtype=np.float32)
                   for y in (result if isinstance(result, (list, tuple)) else [result])]
        for i, y in enumerate(outputs):
            print(f"output {i}: shape {tuple(y.shape)} {y.dtype}")
        if args.output:
            if len(outputs) == 1:
                np.save(args.output, outputs[0])
            else:
                np.savez(args.output, *outputs)
            print(f"wrote {args.output}")
        return 0
    labels = [_load_npy(p) for p in args.labels]
    train(x, labels[0] if len(labels) == 1 else labels, model, epochs=args.epochs,
          batch_size=args.batch_size, validation_split=args.validation_split, loss=args.loss)
    if args.save:
        model.save(args.save)
        print(f"wrote {args.save}")
    if args.out:
        save_weights_safetensors(model, args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''
