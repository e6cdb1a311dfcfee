"""What each ``neuralc`` subcommand does; cli.py parses flags and maps errors to exit codes."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from neuralc.diagnostics import Diagnostic, render_all
from neuralc.driver import UsageError, compile_file
from neuralc.frontend.hparams import HParams, parse_override
from neuralc.frontend.model import CompiledModel
from neuralc.passes.manager import PassManager
from neuralc.passes.pipelines import pipeline
from neuralc.passes.registry import parse_pipeline

ARTIFACT_SUFFIX = ".ncz"  # -o model.ncz writes an artifact; `run model.ncz` runs one


class DataError(Exception):
    """Bad input arrays or weights: the user's data, reported without a traceback (exit 1)."""


def _hparams(args: argparse.Namespace) -> HParams:
    try:
        return HParams.from_strings(args.hparam)
    except ValueError as e:
        raise UsageError(str(e)) from None


def _pass_manager(args: argparse.Namespace, default: list[str]) -> PassManager:
    try:
        passes = parse_pipeline(args.passes) if args.passes else parse_pipeline(",".join(default))
    except KeyError as e:
        raise UsageError(e.args[0]) from None
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
    from neuralc.runtime.weights import WeightsError, init_weights, load_weights

    try:
        if getattr(args, "weights", None):
            return load_weights(args.weights, model.module)
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
        try:
            Path(output).write_text(text)
        except OSError as e:
            raise UsageError(f"cannot write {output}: {e.strerror}") from None
    else:
        sys.stdout.write(text)


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

    if args.output and str(args.output).endswith(ARTIFACT_SUFFIX):
        return _compile_artifact(args)
    if args.target == "cpu" or args.emit in CPU_EMITS:
        return _compile_cpu(args)
    if args.emit is None:
        args.emit = "graph-ir"
    if args.target in ("auto", "reference"):
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
    from neuralc.driver import tensor_stage
    from neuralc.passes.pipelines import tensor_pipeline
    from neuralc.report import format_optimisation_report, format_table

    model = _compile(args)
    print(format_table(model.module))
    if args.report:
        graph_len = len(pipeline(args.opt))
        before, _ = tensor_stage(model, tensor_pipeline(0, "fp32")[len(pipeline(0)):])
        after, warnings = tensor_stage(
            model, tensor_pipeline(args.opt, args.precision)[graph_len:])
        if warnings:
            sys.stderr.write(render_all(warnings) + "\n")
        print()
        print(format_optimisation_report(before, after, args.opt))
    return 0


def cmd_opt(args: argparse.Namespace) -> int:
    from neuralc.diagnostics import SOURCES, CompileError, Diagnostic
    from neuralc.ir.parser import parse_module_or_diagnose
    from neuralc.ir.printer import print_module
    from neuralc.ir.verifier import verify
    from neuralc.layers import graph_dialect  # noqa: F401  (textual IR may hold graph ops)

    pm = _pass_manager(args, [])  # a bad --passes is a usage error, before reading anything
    if args.file == "-":
        text, name = sys.stdin.read(), "<stdin>"
    else:
        try:
            text, name = Path(args.file).read_text(encoding="utf-8"), args.file
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"cannot read {args.file}: {e}") from None
    SOURCES.add(name, text)
    module = parse_module_or_diagnose(text, name)
    # Passes assume well-formed IR: check the input first, as any located error.
    problems = verify(module)
    if problems:
        raise CompileError([Diagnostic("error", f"{name}: invalid IR: {q}") for q in problems])
    pm.run(module)
    _write(print_module(module) + "\n", args.output)
    return 0


def cmd_layers(args: argparse.Namespace) -> int:
    from neuralc.docs import layer_reference, layer_summary

    sys.stdout.write(layer_reference() if args.markdown else layer_summary() + "\n")
    return 0


# -- run ------------------------------------------------------------------------------------


def _load_npy(path: str) -> np.ndarray:
    """A numeric array from a .npy file; never unpickles (an input never executes code)."""
    try:
        with open(path, "rb") as f:
            magic = f.read(6)
    except FileNotFoundError:
        raise UsageError(f"no such input file: {path}") from None
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    if magic != b"\x93NUMPY":
        raise DataError(f"{path} is not a .npy file (save inputs with numpy.save)")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e):
            raise DataError(f"{path} holds Python objects, not numbers; neuralc reads only "
                            "numeric .npy arrays") from None
        raise DataError(f"{path} is not a readable .npy array ({e})") from None
    except (OSError, EOFError) as e:
        raise DataError(f"{path} is not a readable .npy array ({e})") from None
    return arr


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


def _random_inputs(model: CompiledModel, args: argparse.Namespace) -> list[np.ndarray]:
    from neuralc.runtime.samples import input_symbols, random_inputs, symbol_sizes

    known = input_symbols(model.module)
    given: dict[str, int] = {}
    for s in args.dim:
        k, _, v = s.partition("=")
        val = parse_override(v)
        if not k or not isinstance(val, int) or isinstance(val, bool) or val < 1:
            raise UsageError(f"--dim expects NAME=N with a positive N, got '{s}'")
        if k not in known:
            raise UsageError(f"--dim {k}: the model has no symbolic dim '{k}'"
                             + (f"; it has: {', '.join(sorted(known))}" if known else ""))
        given[k] = val
    sizes = symbol_sizes(model.module, args.batch, 8) | given
    return random_inputs(model.module, sizes, np.random.default_rng(args.seed))


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
    weights = _weights_for(model, args)
    if args.save_weights:
        try:
            save_weights(args.save_weights, weights)
        except (WeightsError, OSError) as e:
            raise UsageError(f"cannot write {args.save_weights}: {e}") from None
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
    for i, y in enumerate(outputs):
        label = "output" if len(outputs) == 1 else f"output {i}"
        flat = y.reshape(-1)
        head = np.array2string(flat[:6], precision=5, separator=", ")
        more = " ..." if flat.size > 6 else ""
        print(f"{label}: shape {tuple(y.shape)} {y.dtype}  {head}{more}")
    if args.output:
        if len(outputs) != 1:
            raise UsageError("-o takes one output; this model has several")
        path = args.output if str(args.output).endswith(".npy") else f"{args.output}.npy"
        try:
            np.save(path, outputs[0])
        except OSError as e:
            raise UsageError(f"cannot write {path}: {e.strerror}") from None
        print(f"wrote {path}")
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
    if stage:
        sys.stderr.write(render_all(stage) + "\n")
    try:
        data.write(args.output)
    except OSError as e:
        raise UsageError(f"cannot write {args.output}: {e.strerror}") from None
    names = ", ".join(str(v["name"]) for v in data.manifest["variants"])
    print(f"wrote {args.output} (variants, best first: {names})")
    for kind, why in data.manifest["not_built"].items():
        print(f"  not built: {kind}: {why}")
    return 0


def _refuse_source_flags(args: argparse.Namespace) -> None:
    """Flags that change how a .nr model is compiled mean nothing for a compiled artifact."""
    flags = (("--weights", args.weights), ("--save-weights", args.save_weights),
             ("--network", args.network), ("--hparam", args.hparam), ("--graph", args.graph),
             ("--precision", args.precision), ("--keep-io-fp32", args.keep_io_fp32))
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
        path = output if str(output).endswith(".npy") else f"{output}.npy"
        try:
            np.save(path, outputs[0])
        except OSError as e:
            raise UsageError(f"cannot write {path}: {e.strerror}") from None
        print(f"wrote {path}")


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

CPU_EMITS = ("loop-ir", "llvm", "asm")


def _compile_cpu(args: argparse.Namespace) -> int:
    """``--target cpu``: the optimised tensor IR, its loop IR, LLVM IR (the default) or
    assembly for this CPU."""
    from neuralc.ir.printer import print_module
    from neuralc.report import format_kernels

    backend = _backend("cpu")
    _options(args)
    model = _compile(args)
    comp = backend.compile(model, _options(args))
    emit = args.emit or "llvm"
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
