"""The ``neuralc`` driver.

    neuralc MODEL.nr [--emit graph-ir] [-O2] [--target T] [-o OUT]   compile
    neuralc check MODEL.nr                                            shape table
    neuralc run MODEL.nr --input x.npy [--weights w.safetensors]      run the reference
    neuralc MODEL.nr --target auto -o model.ncz                       write an artifact
    neuralc run model.ncz --input x.npy [--device D] [-v]             run it, no .nr needed
    neuralc opt FILE.nir --passes=shape-infer                         passes on textual IR
    neuralc layers [--markdown]                                       the layer catalog

Exit status: 0 on success, 1 on errors in the model, its weights or its inputs, 2 on bad usage.
No Python traceback reaches the user for any of those.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from neuralc.diagnostics import CompileError, render_all
from neuralc.ir.types import PRECISIONS

EXIT_OK, EXIT_MODEL, EXIT_USAGE = 0, 1, 2

# Targets the compiler knows of; neuralc.backends.registry says which are built.
ALL_TARGETS = ("auto", "reference", "cpu", "cuda", "tensorrt", "onnx", "pytorch", "keras")


class _Parser(argparse.ArgumentParser):
    """argparse, but exiting with status 2 and a one-line hint, as for any usage error."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"neuralc: error: {message}\n")
        raise SystemExit(EXIT_USAGE)


def _int_at_least(minimum: int, what: str):
    """An argparse type: an integer >= ``minimum``, else a one-line usage error."""

    def convert(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got {v}")
        return v

    return convert


_positive = _int_at_least(1, "a positive integer")
_non_negative = _int_at_least(0, "a non-negative integer")


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--network", metavar="NAME", help="the network to use when the file has several")
    p.add_argument(
        "--hparam",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="set a hyperparameter (e.g. dense.units=128); repeatable",
    )


def _opt_level(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "-O",
        dest="opt",
        type=int,
        default=2,
        choices=range(4),
        metavar="{0,1,2,3}",
        help="optimisation level of the tensor pipeline (default 2); the reference target and "
        "--emit tensor-ir/kernels use it; onnx, pytorch and keras emit from the graph IR",
    )


def _ir_debug(p: argparse.ArgumentParser) -> None:
    p.add_argument("--print-ir-before", metavar="PASS|all", action="append", default=[])
    p.add_argument("--print-ir-after", metavar="PASS|all", action="append", default=[])
    p.add_argument("--time-passes", action="store_true", help="print the time each pass took")
    p.add_argument(
        "--dump-dir", metavar="DIR", type=Path, help="write the IR after every pass here"
    )
    p.add_argument(
        "--passes", metavar="A,B,...", help="run these passes instead of the -O pipeline"
    )


def _backend_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", "-w", metavar="FILE", help="weights (.safetensors) to compile in")
    p.add_argument("--seed", type=_non_negative, default=0, help="seed of the initial weights")
    p.add_argument("--no-cache", action="store_true",
                   help="cpu target: compile afresh, bypassing the native code cache")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17, at most 26)")
    p.add_argument("--precision", default=None, choices=PRECISIONS,
                   help="numeric precision (default: the model's execution { precision }, "
                   "else fp32)")
    p.add_argument("--keep-io-fp32", action="store_true",
                   help="with --precision fp16: keep float32 inputs and outputs")
    p.add_argument("--hpo", action="store_true",
                   help="pytorch target: add an Optuna search over the model's HPO values")


class _Version(argparse.Action):
    """``--version``: the version and where compiled code is cached (printed unwrapped)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        from neuralc import __version__
        from neuralc.backends.cpu.cache import cache_dir

        sys.stdout.write(f"neuralc {__version__}\nnative code cache: {cache_dir()}\n")
        raise SystemExit(EXIT_OK)


def build_parser() -> dict[str, argparse.ArgumentParser]:
    compile_p = _Parser(
        prog="neuralc",
        description="Compile a Neural DSL model.",
        epilog="subcommands: check, run, opt, layers (neuralc SUBCOMMAND -h)",
    )
    compile_p.add_argument("--version", action=_Version, nargs=0,
                           help="print the version and the native code cache's location")
    compile_p.add_argument("model", help="the .nr model file")
    compile_p.add_argument(
        "--emit", choices=("graph-ir", "tensor-ir", "kernels", "loop-ir", "llvm", "asm"),
        default=None,
        help="graph-ir (the default except for --target cpu; shape-checked layers), tensor-ir "
        "(after the -O pipeline), kernels (the fused kernels with their ops and source "
        "lines), loop-ir (the loop nests of each kernel), llvm (the default of --target "
        "cpu: LLVM IR for this CPU), asm (its assembly)")
    compile_p.add_argument("--debug-fusion", action="store_true",
                           help="say why each rejected pair of ops was not fused")
    compile_p.add_argument(
        "--target",
        default="auto",
        choices=ALL_TARGETS,
        help="backend (default auto: the graph IR for the reference; with -o FILE.ncz, an "
        "artifact holding every variant built here)",
    )
    compile_p.add_argument("-o", "--output", metavar="FILE",
                           help="write the result here (FILE.ncz: a compiled artifact)")
    _backend_options(compile_p)
    _opt_level(compile_p)
    _common(compile_p)
    _ir_debug(compile_p)

    check_p = _Parser(prog="neuralc check", description="Check a model and print its shape table.")
    check_p.add_argument("model")
    check_p.add_argument("--report", action="store_true",
                         help="also optimise at the -O level and report kernels, bytes moved "
                         "and peak memory")
    check_p.add_argument("--precision", default=None, choices=PRECISIONS)
    _opt_level(check_p)
    _common(check_p)

    run_p = _Parser(prog="neuralc run",
                    description="Run a model (.nr) or a compiled artifact (.ncz).")
    run_p.add_argument("model", help="the .nr model file, or a .ncz artifact")
    run_p.add_argument(
        "--input",
        "-i",
        metavar="FILE|NAME=FILE",
        action="append",
        default=[],
        help=".npy input; NAME=FILE for named inputs; once per input",
    )
    run_p.add_argument("--random", action="store_true", help="run on a seeded random input")
    run_p.add_argument("--batch", type=_positive, default=2,
                       help="batch size of --random (default 2)")
    run_p.add_argument(
        "--dim",
        metavar="NAME=N",
        action="append",
        default=[],
        help="size of a named symbolic dim for --random",
    )
    run_p.add_argument("--weights", "-w", metavar="FILE", help="weights (.safetensors)")
    run_p.add_argument(
        "--save-weights", metavar="FILE", help="save the weights used (.safetensors)"
    )
    run_p.add_argument("--seed", type=_non_negative, default=0,
                       help="seed of initial weights and --random")
    run_p.add_argument("--target", default=None, choices=ALL_TARGETS,
                       help="where to run: reference (default), onnx (onnxruntime), or auto "
                       "(the best built target this machine runs); for a .ncz artifact, the "
                       "variant to run (default: the best this machine runs)")
    run_p.add_argument("--device", metavar="auto|cpu|cuda|cuda:N", default=None,
                       help="the device to run on (default: the model's execution { device }); "
                       "a warning says when it cannot be honoured")
    run_p.add_argument("-v", "--verbose", action="store_true",
                       help="print the selection report: what runs where, and why")
    run_p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    run_p.add_argument("--precision", default=None, choices=PRECISIONS)
    run_p.add_argument("--keep-io-fp32", action="store_true")
    run_p.add_argument("--no-cache", action="store_true",
                       help="cpu target: compile afresh, bypassing the native code cache")
    run_p.add_argument("-o", "--output", metavar="FILE", help="save the output (.npy)")
    run_p.add_argument("--graph", action="store_true",
                       help="reference target: run the graph IR instead of the optimised tensor IR")
    _opt_level(run_p)
    _common(run_p)

    opt_p = _Parser(prog="neuralc opt", description="Run passes on textual IR (.nir).")
    opt_p.add_argument("file", help="textual IR file, or - for standard input")
    opt_p.add_argument("--verify-each", action="store_true", help="verify the IR after every pass")
    opt_p.add_argument("-o", "--output", metavar="FILE")
    _ir_debug(opt_p)

    layers_p = _Parser(prog="neuralc layers", description="List the layer catalog.")
    layers_p.add_argument("--markdown", action="store_true", help="the language reference table")

    cache_p = _Parser(prog="neuralc cache",
                      description="Where the native code cache is, what it holds; --clear empties "
                      "it.")
    cache_p.add_argument("--clear", action="store_true", help="remove every cached object")
    return {"compile": compile_p, "check": check_p, "run": run_p, "opt": opt_p, "layers": layers_p,
            "cache": cache_p}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parsers = build_parser()
    cmd = argv[0] if argv and argv[0] in parsers and argv[0] != "compile" else "compile"
    if argv and argv[0] == "compile":
        argv = argv[1:]
    args = parsers[cmd].parse_args(argv[1:] if cmd != "compile" else argv)
    from neuralc import commands
    from neuralc.backends.base import BackendError, BackendUnavailable
    from neuralc.driver import UsageError
    from neuralc.runtime.artifact import ArtifactError

    try:
        return getattr(commands, f"cmd_{cmd}")(args)
    except CompileError as e:
        sys.stderr.write(render_all(e.diagnostics) + "\n")
        return EXIT_MODEL
    except commands.DataError as e:
        sys.stderr.write(f"neuralc: error: {e}\n")
        return EXIT_MODEL
    except ArtifactError as e:  # damaged, tampered, foreign, or no variant runs here
        sys.stderr.write(f"neuralc: error: {e}\n")
        return EXIT_MODEL
    except UsageError as e:
        sys.stderr.write(f"neuralc: error: {e}\n")
        return EXIT_USAGE
    except BackendError as e:
        sys.stderr.write(render_all(e.diagnostics) + "\n")
        return EXIT_MODEL
    except BackendUnavailable as e:
        sys.stderr.write(f"neuralc: error: {e}\n")
        return EXIT_USAGE
    except OSError as e:  # a file the user named could not be written or read (e.g. --dump-dir)
        sys.stderr.write(f"neuralc: error: {e}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
