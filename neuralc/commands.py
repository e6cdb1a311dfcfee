"""What each ``neuralc`` subcommand does; cli.py parses flags and maps errors to exit codes."""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from neuralc.diagnostics import CompileError, Diagnostic, render_all
from neuralc.driver import UsageError, compile_file
from neuralc.frontend.hparams import HParams, parse_override
from neuralc.frontend.model import CompiledModel
from neuralc.passes.manager import PassManager
from neuralc.passes.pipelines import pipeline
from neuralc.passes.registry import parse_pipeline

if TYPE_CHECKING:
    from neuralc.runtime.artifact import ArtifactData

ARTIFACT_SUFFIX = ".ncz"  # -o model.ncz writes an artifact; `run model.ncz` runs one


class DataError(Exception):
    """Bad input arrays or weights: the user's data, reported without a traceback (exit 1)."""


def _hparams(args: argparse.Namespace) -> HParams:
    try:
        return HParams.from_strings(args.hparam)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _pass_manager(args: argparse.Namespace, default: list[str]) -> PassManager:
    from neuralc.diagnostics import did_you_mean
    from neuralc.passes.registry import pass_names

    try:
        passes = parse_pipeline(args.passes) if args.passes else parse_pipeline(",".join(default))
    except KeyError as e:
        raise UsageError(e.args[0]) from None
    known = pass_names()
    for flag, names in (("--print-ir-before", args.print_ir_before),
                        ("--print-ir-after", args.print_ir_after)):
        for n in names:
            if n != "all" and n not in known:  # it would print nothing, silently
                raise UsageError(f"{flag} {n}: no pass is named '{n}'{did_you_mean(n, known)}; "
                                 "give a pass name or 'all'")
    return PassManager(
        passes,
        verify_each=getattr(args, "verify_each", False),
        print_before=set(args.print_ir_before),
        print_after=set(args.print_ir_after),
        time_passes=args.time_passes,
        dump_dir=args.dump_dir,
    )


def _compile(args: argparse.Namespace, pm: PassManager | None = None) -> CompiledModel:
    model = compile_file(
        args.model,
        network=args.network,
        hparams=_hparams(args),
        opt_level=getattr(args, "opt", 2),
        pass_manager=pm,
    )
    if model.warnings:
        sys.stderr.write(render_all(model.warnings) + "\n")
    if getattr(args, "precision", "unset") is None:
        # No --precision: the model's own execution { precision: ... }, fp32 by default.
        args.precision = model.info.training.precision
    return model


def _backend(target: str):
    """The backend for ``target``; a usage error naming the built ones if it is absent."""
    from neuralc.backends.registry import built_targets, get_backend

    backend = get_backend(target)
    if backend is None:
        built = ", ".join(["reference", *built_targets()])
        raise UsageError(f"target '{target}' is not built yet; built targets: {built} "
                         "(see the README's status section)")
    backend.check_available()
    return backend


def _weights_for(model: CompiledModel, args: argparse.Namespace) -> dict[str, np.ndarray]:
    import warnings

    from neuralc.runtime.weights import WeightsError, init_weights, load_weights
    from neuralc.runtime.weights_import import WeightsWarning

    try:
        if getattr(args, "weights", None):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", WeightsWarning)
                out = load_weights(args.weights, model.module,
                                   layout=getattr(args, "weights_layout", "neuralc"))
            for w in caught:
                sys.stderr.write(f"neuralc: warning: {w.message}\n")
            return out
        return init_weights(model.module, seed=getattr(args, "seed", 0))
    except WeightsError as e:
        raise DataError(str(e)) from None


def _options(args: argparse.Namespace):
    from neuralc.backends.base import BackendOptions

    if not 7 <= args.opset <= 26:
        raise UsageError(f"--opset must be between 7 and 26, got {args.opset}")
    return BackendOptions(opset=args.opset, precision=args.precision or "fp32",
                          keep_io_fp32=args.keep_io_fp32, hpo=getattr(args, "hpo", False),
                          opt=getattr(args, "opt", 2),
                          use_cache=not getattr(args, "no_cache", False))


def _write(text: str, output: str | None) -> None:
    if output:
        _write_file(output, text.encode("utf-8", "surrogateescape"))
    else:
        sys.stdout.write(text)


def _write_file(path: str, data: bytes) -> None:
    """Write a file the user named, whole or not at all (neuralc.files): no FIFO, no device;
    a write error is a usage error that says why."""
    from neuralc.files import FileProblem, write_bytes

    try:
        write_bytes(path, data)
    except FileProblem as e:
        raise UsageError(str(e)) from None


def _optimised(args: argparse.Namespace, level: int, target: str = "reference",
               debug_fusion: bool = False,
               model: CompiledModel | None = None) -> tuple[CompiledModel, object]:
    """The model (graph IR, shape-checked) and a copy optimised by the ``-O`` tensor pipeline.

    ``--passes`` replaces the tensor stage (shape inference has run on the graph IR first);
    the IR-printing and timing flags apply to the tensor stage's passes.
    """
    from neuralc.driver import tensor_stage
    from neuralc.passes.pipelines import tensor_pipeline, with_fusion_debug

    if model is None:
        model = _compile(args)  # graph stage: shape inference, at the line of any error
    passes = (args.passes.split(",") if getattr(args, "passes", None)
              else tensor_pipeline(level, args.precision, target)[len(pipeline(level)):])
    if debug_fusion:
        passes = with_fusion_debug(passes)
    pm = _pass_manager(args, []) if hasattr(args, "print_ir_after") else None
    module, warnings = tensor_stage(model, passes, pm)
    if warnings:
        sys.stderr.write(render_all(warnings) + "\n")
    return model, module


def cmd_compile(args: argparse.Namespace) -> int:
    from neuralc.ir.printer import print_module
    from neuralc.report import format_kernels

    if args.target == "cuda":
        return _compile_cuda(args)
    if args.output and str(args.output).endswith(ARTIFACT_SUFFIX):
        return _compile_artifact(args)
    if args.target == "cpu" or args.emit in CPU_EMITS:
        return _compile_cpu(args)
    if args.emit is None:
        args.emit = "graph-ir"
    if args.target in ("auto", "reference"):
        if args.weights:  # IR text holds no weight values: the file would be ignored
            raise UsageError(f"--weights has no effect on --emit {args.emit}: the IR holds no "
                             "weight values; use it with neuralc run, --target onnx|pytorch|"
                             "keras, or an artifact (-o model.ncz)")
        if args.emit == "graph-ir":
            model = _compile(args, _pass_manager(args, pipeline(args.opt)))
            _write(print_module(model.module) + "\n", args.output)
            return 0
        _, module = _optimised(args, args.opt, "reference", args.debug_fusion)
        text = print_module(module) if args.emit == "tensor-ir" else format_kernels(module)
        _write(text + "\n", args.output)
        return 0
    if args.emit != "graph-ir":
        raise UsageError(f"--emit {args.emit} shows the reference pipeline; "
                         f"drop --target {args.target} to see it")
    backend = _backend(args.target)
    _options(args)  # a bad --opset is a usage error before any work
    model = _compile(args, _pass_manager(args, pipeline(args.opt)))
    if not any(op.dialect == "graph" for op in model.module.walk()):
        raise UsageError(f"the {args.target} target reads the graph IR; --passes must not "
                         "lower it (drop lower-to-tensor and what follows)")
    artifact = backend.emit(model, _weights_for(model, args), _options(args))
    if args.output is None and backend.extension == ".py":
        sys.stdout.write(artifact.data.decode())
        return 0
    out = args.output or Path(args.model).with_suffix(backend.extension).name
    try:
        written = artifact.write(out)
    except OSError as e:
        raise UsageError(f"cannot write {out}: {e.strerror}") from None
    for p in written:
        print(f"wrote {p}")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from neuralc.driver import network_names

    if args.network is not None:
        _check_one(args)
        return 0

    names = network_names(args.model)
    problems: list[Diagnostic] = []
    for i, name in enumerate(names):  # a file with several networks: check every one
        args.network = name if len(names) > 1 else None
        if i:
            print()
        try:
            _check_one(args)
        except CompileError as e:
            problems.extend(e.diagnostics)
    if problems:
        raise CompileError(problems)
    return 0


def _check_one(args: argparse.Namespace) -> None:
    """The shape table (and with --report the optimisation report) of one network."""
    from neuralc.driver import tensor_stage
    from neuralc.passes.pipelines import tensor_pipeline
    from neuralc.report import format_optimisation_report, format_table

    model = _compile(args)
    print(format_table(model.module))
    _memory_report(model)
    if args.report:
        graph_len = len(pipeline(args.opt))
        before, _ = tensor_stage(model, tensor_pipeline(0, "fp32")[len(pipeline(0)):])
        after, warnings = tensor_stage(
            model, tensor_pipeline(args.opt, args.precision or "fp32",
                                   getattr(args, "target", "reference"))[graph_len:])
        if warnings:
            sys.stderr.write(render_all(warnings) + "\n")
        print()
        print(format_optimisation_report(before, after, args.opt))


def _memory_report(model: CompiledModel) -> None:
    """``check``: the memory of one run at the nominal sizes; a warning, at the layer that
    needs the most, when it passes the limit (``run`` refuses such a run)."""
    from neuralc.passes.analysis import nominal_sizes
    from neuralc.passes.run_memory import run_memory

    sizes = nominal_sizes(model.module)
    mem = run_memory(model.module.funcs[0], sizes)
    at = ", ".join(f"{k}={v}" for k, v in sizes.items())
    print(f"memory per run{f' ({at})' if at else ''}: {mem.summary()}")
    refusal = mem.over_limit()
    if refusal is not None:
        where = mem.culprit.location if mem.culprit is not None else None
        sys.stderr.write(render_all([Diagnostic("warning", f"{refusal}; 'neuralc run' "
                                                "refuses it", where)]) + "\n")


def _read_ir(path: str) -> tuple[str, str]:
    """(text, name) of an IR file, or of standard input for ``-``; read bounded."""
    from neuralc.driver import read_source
    from neuralc.limits import SOURCE_BYTES
    from neuralc.location import FileLoc

    if path != "-":
        return read_source(Path(path)), path
    data = sys.stdin.buffer.read(SOURCE_BYTES.value + 1)
    if len(data) > SOURCE_BYTES.value:
        raise CompileError([Diagnostic("error", f"standard input holds more than that; "
                                       f"{SOURCE_BYTES.exceeded()}",
                                       FileLoc("<stdin>", 1, 1, 1, 2))])
    try:
        return data.decode("utf-8"), "<stdin>"
    except UnicodeDecodeError:
        raise UsageError("standard input is not UTF-8 text") from None


def cmd_opt(args: argparse.Namespace) -> int:
    from neuralc.diagnostics import SOURCES
    from neuralc.ir.parser import parse_module_or_diagnose
    from neuralc.ir.printer import print_module
    from neuralc.ir.verifier import verify_diagnostics
    from neuralc.layers import graph_dialect  # noqa: F401  (textual IR may hold graph ops)

    pm = _pass_manager(args, [])  # a bad --passes is a usage error, before reading anything
    text, name = _read_ir(args.file)
    SOURCES.add(name, text)
    module = parse_module_or_diagnose(text, name)
    # Passes assume well-formed IR: check the input first, each problem at its line of the
    # IR text (and the .nr line the op stands for).
    problems = verify_diagnostics(module)
    if problems:
        raise CompileError(problems)
    pm.run(module)
    _write(print_module(module) + "\n", args.output)
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    from neuralc.docs import layer_reference, layer_summary

    sys.stdout.write(layer_reference() if args.markdown else layer_summary() + "\n")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``neuralc bench``: see :mod:`neuralc.bench`."""
    from neuralc.bench.command import cmd_bench as bench

    return bench(args, DataError)


# -- run ------------------------------------------------------------------------------------


def _load_npy(path: str) -> np.ndarray:
    """A numeric array from a .npy file, checked before its data is read (runtime/npy.py);
    never unpickled (an input never executes code)."""
    from neuralc.files import FileProblem
    from neuralc.runtime.npy import NpyError, read_npy

    try:
        return read_npy(path)
    except FileProblem as e:
        raise UsageError(str(e)) from None
    except NpyError as e:
        raise DataError(str(e)) from None


def _parse_inputs(
    args: argparse.Namespace, names: list[str]
) -> list[np.ndarray] | dict[str, np.ndarray]:
    named = [s for s in args.input if "=" in s]
    if named and len(named) != len(args.input):
        raise UsageError("give every --input as NAME=FILE, or none of them")
    if named:
        out: dict[str, np.ndarray] = {}
        for s in named:
            k, v = s.split("=", 1)
            if k in out:
                raise UsageError(f"input '{k}' is given twice")
            out[k] = _load_npy(v)
        return out
    return [_load_npy(p) for p in args.input]


def _note_conversions(inputs: list[np.ndarray] | dict[str, np.ndarray],
                      model: CompiledModel) -> None:
    """A float input of another width (float64 from numpy's defaults) runs as the model's
    float32: say so in one line rather than convert silently (integer indices are read as
    int64 without a note: any integer dtype holds them exactly)."""
    from neuralc.ir.core import func_body
    from neuralc.runtime.signature import numpy_dtype

    args = func_body(model.module.funcs[0]).args
    names = model.info.input_names
    given = inputs.items() if isinstance(inputs, dict) else zip(names, inputs)
    types = dict(zip(names, (a.type for a in args)))
    for name, a in given:
        t = types.get(name)
        if t is None or not hasattr(a, "dtype") or a.dtype.kind != "f":
            continue
        want = numpy_dtype(t.dtype)
        if want.kind == "f" and a.dtype != want:
            sys.stderr.write(f"neuralc: note: input '{name}' is {a.dtype}; it runs as {want}\n")


def _random_inputs(model: CompiledModel, args: argparse.Namespace) -> list[np.ndarray]:
    """``--random``: seeded inputs at ``--batch`` and ``--dim`` sizes, each refused when the
    model's ``dims { }`` do not allow it, and the whole run when it passes the memory limit
    (before any array exists)."""
    from neuralc.passes.run_memory import run_memory
    from neuralc.runtime.samples import batch_symbol, input_symbols, random_inputs, symbol_sizes
    from neuralc.runtime.signature import size_problem

    known = input_symbols(model.module)
    facts = model.module.attributes.get("dims") or {}
    given: dict[str, int] = {}
    flag: dict[str, str] = {}  # symbol -> the flag that set it, for messages
    for s in args.dim:
        k, _, v = s.partition("=")
        val = parse_override(v)
        if not k or not isinstance(val, int) or isinstance(val, bool) or val < 1:
            raise UsageError(f"--dim expects NAME=N with a positive N, got '{s}'")
        if k not in known:
            raise UsageError(f"--dim {k}: the model has no symbolic dim '{k}'"
                             + (f"; it has: {', '.join(sorted(known))}" if known else ""))
        given[k], flag[k] = val, f"--dim {k}={val}"
    lead = batch_symbol(model.module)
    if args.batch is not None and lead is not None and lead not in given:
        given[lead], flag[lead] = args.batch, f"--batch {args.batch}"
    for k, val in given.items():
        problem = size_problem(k, val, facts.get(k))
        if problem is not None:
            raise UsageError(f"{flag[k]}: {problem.removeprefix('but ')}")
    sizes = symbol_sizes(model.module, args.batch or 2, 8) | given
    refusal = run_memory(model.module.funcs[0], sizes).over_limit()
    if refusal is not None:
        shown = ", ".join(f"{k}={v:,}" for k, v in sorted(sizes.items()))
        raise DataError(f"--random at {shown}: {refusal}")
    return random_inputs(model.module, sizes, np.random.default_rng(args.seed))


def cmd_cache(args: argparse.Namespace) -> int:
    """``neuralc cache [--clear]``: the native code cache's location and contents."""
    from neuralc.backends.cpu import cache

    if args.clear:
        print(f"removed {cache.clear()} cached objects from {cache.cache_dir()}")
        return 0
    info = cache.info()
    print(f"native code cache: {info['path']}")
    print(f"  {info['entries']} objects, {int(info['bytes']):,} bytes")
    print("  (set NEURALC_CACHE_DIR to move it; XDG_CACHE_HOME is honoured)")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from neuralc.runtime.interpreter import run_module
    from neuralc.runtime.signature import InputError, bind_inputs
    from neuralc.runtime.sizes import check_run
    from neuralc.runtime.weights import WeightsError, save_weights

    if str(args.model).endswith(ARTIFACT_SUFFIX):
        return _run_artifact(args)
    if args.target is None:
        args.target = "reference"
    if args.target == "auto":
        from neuralc.backends.select import select_target

        target = select_target()
        sys.stderr.write(f"neuralc: --target auto runs on '{target}'\n")
    else:
        target = args.target
    backend = None if target == "reference" else _backend(target)
    if backend is not None and not backend.runnable:
        raise UsageError(f"target '{target}' writes source code; run it with its own tools")
    if args.random and args.input:
        raise UsageError("give either --input or --random, not both")
    model = _compile(args)
    _note_device(args, model, target)
    if args.random:
        inputs: list[np.ndarray] | dict[str, np.ndarray] = _random_inputs(model, args)
    elif args.input:
        inputs = _parse_inputs(args, model.info.input_names)
    else:
        raise UsageError("give the model's input with --input FILE.npy (or --random)")
    _note_conversions(inputs, model)
    weights = _weights_for(model, args)
    if args.save_weights:
        try:
            save_weights(args.save_weights, weights)
        except WeightsError as e:
            raise UsageError(str(e)) from None
    try:
        # The inputs against the model as written, whatever target runs it: shapes, dtypes,
        # sizes each layer can take, token indices (neuralc.runtime.sizes).
        arrays, env = bind_inputs(model.module.funcs[0], inputs,
                                  model.module.attributes.get("dims"))
        check_run(model.module.funcs[0], arrays, env,
                  model.module.attributes.get("dim_constraints"))
        if backend is None and args.graph:
            outputs = run_module(model.module, inputs, weights)
        elif backend is None:
            _, optimised = _optimised(args, args.opt, model=model)
            outputs = run_module(optimised, inputs, weights)
        else:
            exe = backend.load(backend.emit(model, weights, _options(args)), model)
            outputs = exe(inputs)
    except InputError as e:
        raise DataError(str(e)) from None
    _print_outputs(list(outputs), args.output)
    return 0


# -- artifacts (.ncz) and device selection ------------------------------------------------------


def _compile_artifact(args: argparse.Namespace) -> int:
    """``neuralc MODEL.nr --target T -o model.ncz``: every variant of T in one artifact."""
    from neuralc.api.build import build_artifact, kinds_for_target

    if args.emit not in (None, "graph-ir") or args.debug_fusion:
        raise UsageError("--emit and --debug-fusion show IR; drop them when writing an "
                         f"artifact (-o *{ARTIFACT_SUFFIX})")
    if args.passes:
        raise UsageError("an artifact is built with the -O pipeline; drop --passes")
    kinds_for_target(args.target)  # a target without variants is a usage error before any work
    _options(args)  # so is a bad --opset
    model = _compile(args, _pass_manager(args, pipeline(args.opt)))
    try:
        text = Path(args.model).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {args.model}: {e}") from None
    stage: list[Diagnostic] = []
    data = build_artifact(model, _weights_for(model, args), source_text=text,
                          target=args.target, opt=args.opt, precision=args.precision or "fp32",
                          opset=args.opset, stage_warnings=stage)
    _write_artifact(data, args.output, stage)
    for kind, why in data.manifest["not_built"].items():
        print(f"  not built: {kind}: {why}")
    return 0


def _write_artifact(data: ArtifactData, output: str, stage: list[Diagnostic]) -> None:
    """Print the build's warnings, write the artifact and say which variants it holds."""
    if stage:
        sys.stderr.write(render_all(stage) + "\n")
    try:
        data.write(output)
    except OSError as e:
        raise UsageError(f"cannot write {output}: {e.strerror}") from None
    names = ", ".join(str(v["name"]) for v in data.manifest["variants"])
    print(f"wrote {output} (variants, best first: {names})")


def _refuse_source_flags(args: argparse.Namespace) -> None:
    """Flags that change how a .nr model is compiled mean nothing for a compiled artifact."""
    flags = (("--weights", args.weights), ("--save-weights", args.save_weights),
             ("--network", args.network), ("--hparam", args.hparam), ("--graph", args.graph),
             ("--precision", args.precision), ("--keep-io-fp32", args.keep_io_fp32),
             ("--weights-layout", args.weights_layout != "neuralc"))
    given = [name for name, value in flags if value]
    if given:
        raise UsageError(f"{given[0]} applies to .nr models; an artifact holds its compiled "
                         "weights and settings (recompile it to change them)")


def _run_artifact(args: argparse.Namespace) -> int:
    """``neuralc run model.ncz``: the variant chosen for this machine, without the .nr file."""
    import warnings

    from neuralc.api.model import NeuralcWarning, open_artifact
    from neuralc.runtime.artifact import read_artifact
    from neuralc.runtime.signature import InputError

    _refuse_source_flags(args)
    if args.random and args.input:
        raise UsageError("give either --input or --random, not both")
    try:
        data = read_artifact(args.model)
    except FileNotFoundError:
        raise UsageError(f"no such file: {args.model}") from None
    only = None if args.target in (None, "auto") else args.target
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NeuralcWarning)
        model = open_artifact(data, device=args.device, variant=only)
    for w in caught:
        sys.stderr.write(f"neuralc: warning: {w.message}\n")
    sys.stderr.write((model.selection_report if args.verbose
                      else "neuralc: " + model.selection_report.splitlines()[0]) + "\n")
    if args.random:
        inputs: list[np.ndarray] | dict[str, np.ndarray] = _random_inputs(
            model.compiled_model, args)
    elif args.input:
        inputs = _parse_inputs(args, model.signature.input_names)
    else:
        raise UsageError("give the model's input with --input FILE.npy (or --random)")
    try:
        result = model(inputs)
    except InputError as e:
        raise DataError(str(e)) from None
    _print_outputs(list(result) if isinstance(result, tuple) else [result], args.output)
    return 0


def _print_outputs(outputs: list[np.ndarray], output: str | None) -> None:
    for i, y in enumerate(outputs):
        label = "output" if len(outputs) == 1 else f"output {i}"
        flat = y.reshape(-1)
        head = np.array2string(flat[:6], precision=5, separator=", ")
        more = " ..." if flat.size > 6 else ""
        print(f"{label}: shape {tuple(y.shape)} {y.dtype}  {head}{more}")
    if output:
        if len(outputs) != 1:
            raise UsageError("-o takes one output; this model has several")
        buf = io.BytesIO()
        np.save(buf, outputs[0], allow_pickle=False)
        _write_file(output, buf.getvalue())  # exactly where the user said: no suffix added
        print(f"wrote {output}")


def _note_device(args: argparse.Namespace, model: CompiledModel, target: str) -> None:
    """``run MODEL.nr`` on ``target``: a device it cannot honour (``--device``, the model's
    ``execution { device }``) is a warning, and ``-v`` prints the selection report."""
    from neuralc.backends.select import select_variant
    from neuralc.runtime.artifact_variants import VariantEntry

    device = "cuda" if target == "tensorrt" else "cpu"
    entry = VariantEntry(target, target, device, f"neuralc run --target {target}")
    selection = select_variant([entry], device=args.device,
                               model_device=model.info.training.device,
                               model_name=model.info.name, origin=f"--target {target}")
    for w in selection.warnings:
        sys.stderr.write(f"neuralc: warning: {w}\n")
    if args.verbose:
        sys.stderr.write(selection.report + "\n")


# -- the cpu target -------------------------------------------------------------------------

CPU_EMITS = ("loop-ir", "llvm", "asm", "exe", "lib", "obj")
EDGE_EMITS = ("exe", "lib", "obj")
_X86_CPUS = ("x86-64", "x86-64-v3")
_ARM_CPUS = ("generic", "cortex-a76", "neoverse-n1")
_TRIPLE_ARCH = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


def _compile_cpu(args: argparse.Namespace) -> int:
    """``--target cpu``: the optimised tensor IR, its loop IR, LLVM IR (the default) or
    assembly for this CPU or the one ``--triple``/``--cpu`` name; ``--emit exe|lib|obj``
    builds a standalone binary (neuralc.backends.cpu.edge)."""
    from neuralc.backends.cpu.compile import compile_for_cpu
    from neuralc.ir.printer import print_module
    from neuralc.report import format_kernels

    _backend("cpu")
    options = _options(args)
    emit = args.emit or "llvm"
    if emit not in EDGE_EMITS:
        given = [f for f, v in (("--static", args.static),
                                ("--external-weights", args.external_weights),
                                ("--prefix", args.prefix)) if v]
        if given:
            raise UsageError(f"{given[0]} applies to --emit exe, lib or obj")
    spec, static = _cpu_spec(args)
    if emit in EDGE_EMITS:
        _edge_checks(args, spec, static, emit)
    model = _compile(args)
    comp = compile_for_cpu(model, options.opt, args.precision or "fp32", spec)
    if emit in EDGE_EMITS:
        return _compile_edge(args, model, comp, static, emit)
    if emit == "graph-ir":
        text = print_module(model.module)
    elif emit == "tensor-ir":
        text = print_module(comp.tensor)
    elif emit == "kernels":
        text = format_kernels(comp.tensor)
    elif emit == "loop-ir":
        text = print_module(comp.loops)
    elif emit == "llvm":
        text = comp.program.llvm_ir
    else:
        from neuralc.backends.cpu.host import emit_assembly

        text = emit_assembly(comp.program.llvm_ir, comp.spec)
    _write(text if text.endswith("\n") else text + "\n", args.output)
    return 0


def _cpu_spec(args: argparse.Namespace):
    """The machine of ``--triple``/``--cpu`` (default: this one) and whether the triple asks
    for a static C library (``-musl``)."""
    from neuralc.backends.cpu.host import TargetSpec, has_target

    host = TargetSpec.host()
    static = bool(args.static)
    arch = None
    if args.triple:
        parts = args.triple.lower().split("-")
        arch = _TRIPLE_ARCH.get(parts[0])
        env = parts[-1] if len(parts) > 2 else "gnu"
        if arch is None or "linux" not in parts[1:] or env not in ("gnu", "musl", "linux"):
            raise UsageError(f"--triple {args.triple}: neuralc builds for Linux on x86_64 or "
                             "aarch64 (x86_64-linux-gnu, aarch64-linux-gnu, or -musl for a "
                             "static binary)")
        static = static or env == "musl"
    cpu = args.cpu
    if cpu == "host" or (cpu is None and arch is None):
        if arch is not None and arch != host.arch:
            raise UsageError(f"--cpu host: this machine is {host.arch}, the triple is {arch}")
        spec = host
    elif cpu is None:
        spec = TargetSpec.x86_64() if arch == "x86_64" else TargetSpec.aarch64()
    elif cpu in _X86_CPUS and arch in (None, "x86_64"):
        spec = TargetSpec.named(cpu)
    elif cpu in _ARM_CPUS and arch in (None, "aarch64"):
        spec = TargetSpec.aarch64(cpu)
    else:
        known = (f"host, {', '.join(_X86_CPUS)} (x86_64); {', '.join(_ARM_CPUS)} (aarch64)")
        raise UsageError(f"--cpu {cpu}" + (f" is not a cpu of {arch}" if arch else " is unknown")
                         + f"; known: {known}")
    if not has_target(spec.triple):
        raise UsageError(f"this llvmlite's LLVM cannot generate code for {spec.triple}")
    return spec, static


def _edge_checks(args: argparse.Namespace, spec, static: bool, emit: str) -> None:
    """Usage errors of an edge build, before any compile work: the toolchain, the prefix."""
    import re

    from neuralc.backends.cpu.edge.toolchain import EdgeTarget, find_toolchain

    if args.prefix is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,63}",
                                                    args.prefix):
        raise UsageError(f"--prefix must be a C identifier, got '{args.prefix}'")
    find_toolchain(EdgeTarget(spec, static), emit)


def _compile_edge(args: argparse.Namespace, model: CompiledModel, comp, static: bool,
                  emit: str) -> int:
    """``--emit exe|lib|obj``: write the binary (and header, and weights), say what it is."""
    from neuralc.backends.cpu.edge.build import EdgeModelError, EdgeRequest, build_edge
    from neuralc.backends.cpu.edge.toolchain import GLIBC

    stem = Path(args.model).stem
    out = Path(args.output or {"exe": stem, "lib": f"lib{stem}.so", "obj": f"{stem}.o"}[emit])
    if not out.parent.is_dir():
        raise UsageError(f"cannot write {out}: no folder {out.parent}")
    weights = _weights_for(model, args)
    req = EdgeRequest(emit, out, comp.spec, static=static,
                      external_weights=args.external_weights, prefix=args.prefix,
                      use_cache=not args.no_cache, opt_level=args.opt,
                      precision=args.precision or "fp32")
    try:
        built = build_edge(comp, model, weights, req)
    except EdgeModelError as e:
        raise DataError(f"{args.model}: cannot build a standalone binary: {e}") from None
    except OSError as e:
        raise UsageError(f"cannot write {out}: {e.strerror or e}") from None
    what = {"exe": "executable", "lib": "shared library", "obj": "relocatable object"}[emit]
    libc = ("" if emit == "obj" else
            ", static" if static else f", needs glibc {GLIBC} or newer")
    print(f"wrote {out}: {what} for {comp.spec.triple} ({comp.spec.cpu}, "
          f"{comp.spec.vector_bits}-bit vectors){libc}; {built.file_bytes:,} bytes (code "
          f"{built.code_bytes:,}, weights {built.weights_bytes:,}); {built.toolchain}")
    if built.header is not None:
        print(f"wrote {built.header}: its C header (functions {built.prefix}_*)")
    if built.weights_file is not None:
        print(f"wrote {built.weights_file}: the weights (sha256 {built.weights_sha256}), "
              "read at start")
    return 0


# -- the cuda target ------------------------------------------------------------------------

CUBINS_SUFFIX = ".cubins"


def _cuda_settings(args: argparse.Namespace) -> dict:
    """The cuda flags as backend/variant options; misplaced ones are usage errors."""
    out = str(args.output or "")
    if getattr(args, "arch", None) and not out.endswith((CUBINS_SUFFIX, ARTIFACT_SUFFIX)):
        raise UsageError(f"--arch compiles kernels ahead of time: write -o FILE{CUBINS_SUFFIX} "
                         f"or -o FILE{ARTIFACT_SUFFIX}")
    if getattr(args, "cuda_graphs", None) is not None and not out.endswith(ARTIFACT_SUFFIX):
        raise UsageError("--cuda-graphs applies to an artifact (-o FILE.ncz); neuralc run "
                         "--target cuda replays graphs wherever there is a GPU")
    if out.endswith(CUBINS_SUFFIX) and getattr(args, "autotune", False):
        raise UsageError("--autotune needs a GPU and applies to -o FILE.py or FILE.ncz")
    return {"allow_tf32": bool(getattr(args, "allow_tf32", False)),
            "arch": getattr(args, "arch", None), "autotune": bool(getattr(args, "autotune", False)),
            "cuda_graphs": getattr(args, "cuda_graphs", None)}


def _compile_cuda(args: argparse.Namespace) -> int:
    """``--target cuda``: the Triton module (default, ``-o model_cuda.py``), ``--emit``
    tensor-ir/kernels/loop-ir, ``-o FILE.cubins`` (ahead-of-time cubins for ``--arch``) or
    ``-o FILE.ncz`` (an artifact with the cuda entries)."""
    from neuralc.backends.base import BackendOptions
    from neuralc.ir.printer import print_module
    from neuralc.report import format_kernels

    settings = _cuda_settings(args)
    if args.emit in ("llvm", "asm", "exe", "lib", "obj"):
        raise UsageError(f"--emit {args.emit} is for the cpu target; --target cuda writes a "
                         "Triton module (or --emit tensor-ir, kernels, loop-ir)")
    if args.debug_fusion or args.passes:
        raise UsageError("--target cuda compiles the -O pipeline; drop --debug-fusion and "
                         "--passes (use --emit tensor-ir or kernels to look at it)")
    out = str(args.output or "")
    if out.endswith(ARTIFACT_SUFFIX):
        return _compile_cuda_artifact(args, settings)
    backend = _backend("cuda")
    _options(args)
    model = _compile(args)
    if args.emit == "graph-ir":
        _write(print_module(model.module) + "\n", args.output)
        return 0
    options = BackendOptions(precision=args.precision or "fp32", opt=args.opt,
                             extra={"allow_tf32": settings["allow_tf32"]})
    comp = backend.compile(model, options)
    if args.emit in ("tensor-ir", "kernels", "loop-ir"):
        text = {"tensor-ir": lambda: print_module(comp.tensor),
                "kernels": lambda: format_kernels(comp.tensor),
                "loop-ir": lambda: print_module(comp.loops)}[args.emit]()
        _write(text + "\n", args.output)
        return 0
    if out.endswith(CUBINS_SUFFIX):
        return _write_cubins(comp, settings, out)
    text = comp.program.text
    if settings["autotune"]:
        text = _autotuned_module(comp, model, _weights_for(model, args))
    _write(text, args.output)
    if args.output:
        print(f"wrote {args.output} ({len(comp.program.kernels)} kernels)")
    return 0


def _write_cubins(comp, settings: dict, out: str) -> int:
    """``-o FILE.cubins``: every kernel compiled for each ``--arch`` (no GPU needed)."""
    from neuralc.backends.cuda.aot import AotError, bundle, compile_program, parse_arch

    try:
        archs = parse_arch(settings["arch"] or "sm_80,sm_90")
    except ValueError as e:
        raise UsageError(f"--arch: {e}") from None
    try:
        compiled = compile_program(comp.program, archs)
    except AotError as e:
        raise DataError(f"ahead-of-time compilation failed: {e}") from None
    try:
        Path(out).write_bytes(bundle(comp.program, compiled))
    except OSError as e:
        raise UsageError(f"cannot write {out}: {e.strerror}") from None
    for cc, kernels in compiled.items():
        shared = max((k.shared for k in kernels.values()), default=0)
        print(f"sm_{cc}: {len(kernels)} kernels, largest shared memory {shared} bytes")
    print(f"wrote {out}")
    return 0


def _autotuned_module(comp, model: CompiledModel, weights: dict[str, np.ndarray]) -> str:
    """The module with CONFIG replaced by the launch configurations tuned on this GPU, at the
    model's nominal sizes with batch 32."""
    import json

    from neuralc.backends.cuda.runtime import CudaExecutable
    from neuralc.runtime.samples import random_inputs, symbol_sizes

    exe = CudaExecutable(comp, model, weights, cuda_graphs=False, autotune=True)
    sizes = symbol_sizes(model.module, 32, 64)
    exe(random_inputs(model.module, sizes, np.random.default_rng(0)))
    text = comp.program.text
    start = text.index("CONFIG = {")
    end = text.index("}\n", start) + 2
    lines = ["CONFIG = {  # tuned with --autotune on this GPU"]
    lines += [f"    {name!r}: {json.dumps(cfg)}," for name, cfg in exe.program.config.items()]
    return text[:start] + "\n".join(lines) + "\n}\n" + text[end:]


def _compile_cuda_artifact(args: argparse.Namespace, settings: dict) -> int:
    """``--target cuda -o model.ncz``: an artifact with the cuda entries (per ``--arch``)."""
    from neuralc.api.build import build_artifact

    if args.emit not in (None, "graph-ir"):
        raise UsageError("--emit shows IR; drop it when writing an artifact (-o *.ncz)")
    _backend("cuda")
    _options(args)
    model = _compile(args, _pass_manager(args, pipeline(args.opt)))
    try:
        text = Path(args.model).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read {args.model}: {e}") from None
    weights = _weights_for(model, args)
    if settings["autotune"]:
        from neuralc.backends.cuda.compile import compile_for_cuda

        comp = compile_for_cuda(model, args.opt, args.precision or "fp32",
                                settings["allow_tf32"])
        _autotuned_module(comp, model, weights)  # fills the autotune cache the entries carry
    stage: list[Diagnostic] = []
    data = build_artifact(model, weights, source_text=text, target="cuda", opt=args.opt,
                          precision=args.precision or "fp32", opset=args.opset,
                          options=settings, stage_warnings=stage)
    _write_artifact(data, args.output, stage)
    return 0
